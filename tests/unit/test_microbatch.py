"""The micro-batcher against a real blocking engine function running in its thread pool."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest

from gateway.microbatch import (
    BatcherClosedError,
    DeadlineExceededError,
    MicroBatcher,
    MicroBatchError,
    QueueFullError,
)


class Engine:
    """A blocking batch function that records what it was given.

    ``gate`` holds every batch until it is set, so a test can keep the engine busy; items named
    ``bad...`` come back as a per-item error, and a batch holding ``boom`` raises as a whole.
    """

    def __init__(self, *, delay_s: float = 0.0, slow: dict[str, float] | None = None) -> None:
        self.delay_s = delay_s
        self.slow = slow or {}
        self.batches: list[list[Any]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.active = 0
        self.most_active = 0
        self._lock = threading.Lock()

    def __call__(self, items: list[Any]) -> Sequence[Any]:
        with self._lock:
            self.batches.append(list(items))
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            # Bounded, so a broken test cannot leave a thread behind forever.
            self.gate.wait(timeout=5)
            time.sleep(self.delay_s + sum(self.slow.get(str(x), 0.0) for x in items))
            if "boom" in items:
                raise RuntimeError("engine exploded")
            return [
                ValueError(f"cannot summarize {x}") if str(x).startswith("bad") else f"r:{x}" for x in items
            ]
        finally:
            with self._lock:
                self.active -= 1

    def seen(self) -> list[Any]:
        return [item for batch in self.batches for item in batch]


Make = Callable[..., Awaitable[MicroBatcher[Any, Any]]]


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    started: list[tuple[MicroBatcher[Any, Any], Engine]] = []

    async def factory(engine: Engine, **overrides: Any) -> MicroBatcher[Any, Any]:
        options: dict[str, Any] = {
            "cost": lambda item: 1,
            "max_batch": 8,
            "max_batch_tokens": 10_000,
            "max_wait_ms": 5.0,
            "max_queue": 256,
        }
        options.update(overrides)
        batcher: MicroBatcher[Any, Any] = MicroBatcher(run_batch=engine, **options)
        await batcher.start()
        started.append((batcher, engine))
        return batcher

    yield factory
    for batcher, engine in started:
        engine.gate.set()
        await batcher.stop(timeout_s=5)


async def until(condition: Callable[[], bool], timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.002)


async def occupy(batcher: MicroBatcher[Any, Any], engine: Engine, item: Any = "first") -> asyncio.Task[Any]:
    """Put ``item`` in the engine and hold it there until ``engine.gate`` is set."""
    engine.gate.clear()
    task = asyncio.create_task(batcher.submit(item, timeout_s=10))
    await until(lambda: engine.active == 1)
    return task


async def test_concurrent_submits_get_their_own_results_in_full_batches(make: Make) -> None:
    engine = Engine(delay_s=0.003)
    batcher = await make(engine, max_batch=8)

    results = await asyncio.gather(*(batcher.submit(i, timeout_s=10) for i in range(200)))

    assert results == [f"r:{i}" for i in range(200)]
    # Every item ran exactly once, in arrival order.
    assert engine.seen() == list(range(200))
    sizes = [len(batch) for batch in engine.batches]
    assert max(sizes) == 8
    # Concurrent callers share batches rather than running one by one.
    assert sum(sizes) / len(sizes) > 4
    assert batcher.queue_depth == 0


async def test_arrivals_during_a_running_batch_form_the_next_batch(make: Make) -> None:
    engine = Engine()
    batcher = await make(engine, max_batch=8, max_wait_ms=0)
    first = await occupy(batcher, engine)

    later = [asyncio.create_task(batcher.submit(i, timeout_s=10)) for i in range(5)]
    await until(lambda: batcher.queue_depth == 5)
    engine.gate.set()

    assert await first == "r:first"
    assert await asyncio.gather(*later) == [f"r:{i}" for i in range(5)]
    # No waiting for company was allowed, yet the five queued while the engine was busy ran together.
    assert engine.batches == [["first"], [0, 1, 2, 3, 4]]


async def test_a_lone_request_waits_for_company_up_to_max_wait(make: Make) -> None:
    engine = Engine()
    batcher = await make(engine, max_batch=8, max_wait_ms=300)

    first = asyncio.create_task(batcher.submit("a", timeout_s=10))
    await asyncio.sleep(0.02)
    second = asyncio.create_task(batcher.submit("b", timeout_s=10))

    assert await asyncio.gather(first, second) == ["r:a", "r:b"]
    assert engine.batches == [["a", "b"]]


async def test_batches_respect_the_token_budget(make: Make) -> None:
    engine = Engine()
    batcher = await make(engine, max_batch=10, max_batch_tokens=10, cost=lambda item: item)
    items = [3, 3, 3, 3, 25, 2, 2, 6, 4, 1]

    results = await asyncio.gather(*(batcher.submit(i, timeout_s=10) for i in items))

    assert results == [f"r:{i}" for i in items]
    assert engine.seen() == items
    for batch in engine.batches:
        assert sum(batch) <= 10 or len(batch) == 1
    # Over the budget on its own: it still runs, alone.
    assert [25] in engine.batches
    assert engine.batches == [[3, 3, 3], [3], [25], [2, 2, 6], [4, 1]]


async def test_queue_full_is_raised_at_once_with_a_retry_estimate(make: Make) -> None:
    engine = Engine()
    batcher = await make(engine, max_batch=1, max_queue=2)
    first = await occupy(batcher, engine)
    waiting = [asyncio.create_task(batcher.submit(i, timeout_s=10)) for i in ("a", "b")]
    await until(lambda: batcher.queue_depth == 2)

    with pytest.raises(QueueFullError) as caught:
        await batcher.submit("c", timeout_s=10)

    error = caught.value
    assert error.retryable and error.code == "overloaded"
    assert error.retry_after_s > 0
    engine.gate.set()
    assert await first == "r:first"
    assert await asyncio.gather(*waiting) == ["r:a", "r:b"]
    assert "c" not in engine.seen()
    # Room again once the queue drained.
    assert await batcher.submit("d", timeout_s=10) == "r:d"


async def test_a_waiting_request_past_its_deadline_never_runs_and_frees_its_slot(make: Make) -> None:
    engine = Engine()
    batcher = await make(engine, max_batch=1, max_queue=1)
    first = await occupy(batcher, engine)

    with pytest.raises(DeadlineExceededError) as caught:
        await batcher.submit("late", timeout_s=0.05)

    assert caught.value.code == "deadline_exceeded" and caught.value.retryable
    assert batcher.queue_depth == 0
    # The freed slot is usable while the engine is still busy (max_queue is 1).
    queued = asyncio.create_task(batcher.submit("next", timeout_s=10))
    await until(lambda: batcher.queue_depth == 1)
    engine.gate.set()
    assert await first == "r:first"
    assert await queued == "r:next"
    assert "late" not in engine.seen()
    assert batcher.queue_depth == 0


async def test_a_request_expiring_while_its_batch_waits_for_company_never_runs(make: Make) -> None:
    engine = Engine()
    batcher = await make(engine, max_batch=8, max_wait_ms=150)

    with pytest.raises(DeadlineExceededError):
        await batcher.submit("late", timeout_s=0.03)
    assert batcher.queue_depth == 0

    assert await batcher.submit("next", timeout_s=10) == "r:next"
    assert engine.seen() == ["next"]


async def test_a_request_whose_batch_runs_too_long_is_released_at_once(make: Make) -> None:
    engine = Engine(slow={"slow": 0.5})
    batcher = await make(engine)

    began = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        await batcher.submit("slow", timeout_s=0.05)
    waited = time.monotonic() - began

    # Released at its deadline, not when the engine finished.
    assert waited < 0.4
    assert engine.active == 1
    # The next batch runs once the engine is free; the late result was dropped, not delivered.
    assert await batcher.submit("after", timeout_s=10) == "r:after"
    assert engine.batches == [["slow"], ["after"]]
    assert batcher.queue_depth == 0


async def test_a_bad_item_fails_alone(make: Make) -> None:
    engine = Engine()
    batcher = await make(engine, max_batch=8)

    outcomes = await asyncio.gather(
        *(batcher.submit(i, timeout_s=10) for i in ["a", "b", "bad-c", "d"]), return_exceptions=True
    )

    assert engine.batches == [["a", "b", "bad-c", "d"]]
    assert outcomes[0] == "r:a" and outcomes[1] == "r:b" and outcomes[3] == "r:d"
    assert isinstance(outcomes[2], ValueError) and "bad-c" in str(outcomes[2])


async def test_an_engine_failure_fails_its_batch_only(make: Make) -> None:
    engine = Engine()
    batcher = await make(engine, max_batch=3)
    first = await occupy(batcher, engine)
    doomed = [asyncio.create_task(batcher.submit(i, timeout_s=10)) for i in ("a", "boom", "b")]
    spared = [asyncio.create_task(batcher.submit(i, timeout_s=10)) for i in ("c", "d")]
    await until(lambda: batcher.queue_depth == 5)
    engine.gate.set()

    outcomes = await asyncio.gather(*doomed, return_exceptions=True)

    assert all(isinstance(o, RuntimeError) and str(o) == "engine exploded" for o in outcomes)
    assert await first == "r:first"
    assert await asyncio.gather(*spared) == ["r:c", "r:d"]
    assert engine.batches == [["first"], ["a", "boom", "b"], ["c", "d"]]
    assert await batcher.submit("e", timeout_s=10) == "r:e"


async def test_an_engine_returning_the_wrong_count_fails_the_batch() -> None:
    batcher: MicroBatcher[str, str] = MicroBatcher(
        run_batch=lambda items: ["only one"],
        cost=len,
        max_batch=4,
        max_batch_tokens=100,
        max_wait_ms=5,
        max_queue=10,
    )
    await batcher.start()
    try:
        outcomes = await asyncio.gather(
            *(batcher.submit(i, timeout_s=10) for i in ("a", "b")), return_exceptions=True
        )
        assert all(isinstance(o, MicroBatchError) and "2" in str(o) for o in outcomes)
    finally:
        await batcher.stop()


async def test_a_cancelled_caller_leaves_the_queue(make: Make) -> None:
    engine = Engine()
    batcher = await make(engine, max_batch=1)
    first = await occupy(batcher, engine)
    gone = asyncio.create_task(batcher.submit("gone", timeout_s=10))
    stays = asyncio.create_task(batcher.submit("stays", timeout_s=10))
    await until(lambda: batcher.queue_depth == 2)

    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone

    assert batcher.queue_depth == 1
    engine.gate.set()
    assert await first == "r:first"
    assert await stays == "r:stays"
    assert "gone" not in engine.seen()


async def test_a_cancelled_caller_of_a_running_batch_does_not_hurt_the_others(make: Make) -> None:
    engine = Engine()
    batcher = await make(engine, max_batch=4)
    engine.gate.clear()
    gone = asyncio.create_task(batcher.submit("gone", timeout_s=10))
    stays = asyncio.create_task(batcher.submit("stays", timeout_s=10))
    await until(lambda: engine.active == 1)

    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    engine.gate.set()

    assert await stays == "r:stays"
    assert engine.batches == [["gone", "stays"]]


async def test_stop_drains_waiting_requests_and_leaves_no_tasks() -> None:
    engine = Engine()
    batcher: MicroBatcher[Any, Any] = MicroBatcher(
        run_batch=engine, cost=lambda item: 1, max_batch=1, max_batch_tokens=10, max_wait_ms=1, max_queue=10
    )
    await batcher.start()
    first = await occupy(batcher, engine)
    waiting = [asyncio.create_task(batcher.submit(i, timeout_s=10)) for i in ("a", "b")]
    await until(lambda: batcher.queue_depth == 2)

    stopping = asyncio.create_task(batcher.stop())
    await asyncio.sleep(0.01)
    with pytest.raises(BatcherClosedError):
        await batcher.submit("refused", timeout_s=10)
    engine.gate.set()
    await stopping

    assert await first == "r:first"
    assert await asyncio.gather(*waiting) == ["r:a", "r:b"]
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert not batcher.running
    with pytest.raises(BatcherClosedError):
        await batcher.submit("after", timeout_s=10)


async def test_stop_without_drain_fails_waiting_requests_clearly() -> None:
    engine = Engine()
    batcher: MicroBatcher[Any, Any] = MicroBatcher(
        run_batch=engine, cost=lambda item: 1, max_batch=1, max_batch_tokens=10, max_wait_ms=1, max_queue=10
    )
    await batcher.start()
    first = await occupy(batcher, engine)
    waiting = asyncio.create_task(batcher.submit("a", timeout_s=10))
    await until(lambda: batcher.queue_depth == 1)

    stopping = asyncio.create_task(batcher.stop(drain=False))
    with pytest.raises(BatcherClosedError, match="shutting down") as caught:
        await waiting
    engine.gate.set()
    await stopping

    assert caught.value.code == "unavailable" and caught.value.retryable
    assert await first == "r:first"
    assert engine.seen() == ["first"]
    assert batcher.queue_depth == 0
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_stop_with_a_timeout_gives_up_on_a_stuck_engine() -> None:
    engine = Engine()
    batcher: MicroBatcher[Any, Any] = MicroBatcher(
        run_batch=engine, cost=lambda item: 1, max_batch=1, max_batch_tokens=10, max_wait_ms=1, max_queue=10
    )
    await batcher.start()
    try:
        stuck = await occupy(batcher, engine)
        waiting = asyncio.create_task(batcher.submit("a", timeout_s=10))
        await until(lambda: batcher.queue_depth == 1)

        await batcher.stop(timeout_s=0.05)

        with pytest.raises(BatcherClosedError):
            await stuck
        with pytest.raises(BatcherClosedError):
            await waiting
        assert asyncio.all_tasks() == {asyncio.current_task()}
    finally:
        engine.gate.set()


async def test_on_batch_reports_every_batch(make: Make) -> None:
    reports: list[tuple[int, int, float]] = []
    engine = Engine(delay_s=0.002)
    batcher = await make(engine, max_batch=4, cost=len, on_batch=lambda *report: reports.append(report))

    await asyncio.gather(*(batcher.submit(w, timeout_s=10) for w in ["ab", "cde", "f", "ghij", "k"]))

    assert [size for size, _, _ in reports] == [len(batch) for batch in engine.batches]
    assert [tokens for _, tokens, _ in reports] == [sum(map(len, b)) for b in engine.batches]
    assert all(seconds >= 0.002 for _, _, seconds in reports)
    assert sum(size for size, _, _ in reports) == 5


async def test_a_failing_on_batch_callback_does_not_break_requests(make: Make) -> None:
    def broken(size: int, tokens: int, seconds: float) -> None:
        raise RuntimeError("metrics down")

    batcher = await make(Engine(), on_batch=broken)
    assert await batcher.submit("a", timeout_s=10) == "r:a"
    assert await batcher.submit("b", timeout_s=10) == "r:b"


async def test_several_workers_run_batches_side_by_side(make: Make) -> None:
    engine = Engine()
    batcher = await make(engine, max_batch=1, workers=2)
    engine.gate.clear()
    tasks = [asyncio.create_task(batcher.submit(i, timeout_s=10)) for i in ("a", "b", "c")]
    await until(lambda: engine.active == 2)

    # Two threads are busy, so the third request waits in the queue rather than in the pool.
    assert batcher.queue_depth == 1
    engine.gate.set()
    assert await asyncio.gather(*tasks) == ["r:a", "r:b", "r:c"]
    assert engine.most_active == 2


async def test_lifecycle_and_argument_checks() -> None:
    batcher: MicroBatcher[str, str] = MicroBatcher(
        run_batch=lambda items: [s.upper() for s in items],
        cost=len,
        max_batch=3,
        max_batch_tokens=50,
        max_wait_ms=2,
        max_queue=7,
    )

    with pytest.raises(BatcherClosedError):
        await batcher.submit("early", timeout_s=1)
    await batcher.start()
    try:
        with pytest.raises(RuntimeError):
            await batcher.start()
        with pytest.raises(ValueError, match="timeout_s"):
            await batcher.submit("x", timeout_s=0)
        assert await batcher.submit("x", timeout_s=1) == "X"
    finally:
        await batcher.stop()
    await batcher.stop()  # a second stop is harmless

    for bad in ({"max_batch": 0}, {"max_batch_tokens": 0}, {"max_wait_ms": -1}, {"max_queue": 0}):
        options: dict[str, Any] = {"max_batch": 1, "max_batch_tokens": 1, "max_wait_ms": 0, "max_queue": 1}
        options.update(bad)
        with pytest.raises(ValueError):
            MicroBatcher(run_batch=lambda items: items, cost=len, **options)
