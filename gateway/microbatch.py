"""Dynamic micro-batching in front of the summarization engine.

Short texts are answered within the HTTP request, but the engine is far more efficient on a batch
than on one text at a time. :class:`MicroBatcher` groups concurrent requests the way inference
servers do: the first waiting request opens a batch, which then waits at most ``max_wait_ms`` for
company and closes early once it holds ``max_batch`` items or the next item would push its token
sum past ``max_batch_tokens``. While a batch runs, new arrivals queue up, so under load the next
batch is already full when the engine frees up and nobody waits for company.

The engine call is blocking, so it runs in a dedicated thread pool (one thread by default: the
engine holds one model and concurrent calls would only fight over it). Every request carries a
deadline; a request that reaches it, or whose caller goes away, gives its place up at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from common.errors import CondenseError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

BatchObserver = Callable[[int, int, float], None]

# Before the first batch has been timed, QueueFullError still has to suggest some wait.
_DEFAULT_BATCH_LATENCY_S = 1.0
_LATENCY_SMOOTHING = 0.2
_RETRY_AFTER_MIN_S = 0.1
_RETRY_AFTER_MAX_S = 60.0


class MicroBatchError(CondenseError):
    """Base of the micro-batcher's own errors."""


class QueueFullError(MicroBatchError):
    """Too many requests are already waiting; the client should come back after ``retry_after_s``."""

    code = "overloaded"
    retryable = True

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceededError(MicroBatchError):
    """The request's deadline passed before its result was ready."""

    code = "deadline_exceeded"
    retryable = True


class BatcherClosedError(MicroBatchError):
    """The batcher is not running (not started yet, or shutting down); another replica may serve."""

    code = "unavailable"
    retryable = True


class _State(enum.Enum):
    QUEUED = "queued"  # in the deque
    FORMING = "forming"  # taken by the batching loop, batch not dispatched yet
    RUNNING = "running"  # its batch is in the engine
    DONE = "done"  # resolved, expired or abandoned: no longer counted anywhere


@dataclass(eq=False)
class _Waiter(Generic[T, R]):
    item: T
    cost: int
    deadline: float
    future: asyncio.Future[R]
    state: _State = _State.QUEUED


@dataclass
class _Batch(Generic[T, R]):
    waiters: list[_Waiter[T, R]] = field(default_factory=list)
    tokens: int = 0


class MicroBatcher(Generic[T, R]):
    """Groups concurrent :meth:`submit` calls into batches for a blocking ``run_batch``.

    ``run_batch`` receives the items of one batch, in arrival order, and returns one entry per item:
    the result, or an exception instance that fails only that item. An exception raised by
    ``run_batch`` itself fails every item of the batch, and the batcher goes on with the next one.
    The exception is passed through unwrapped, so a :class:`CondenseError` keeps its code and
    retryable flag; every caller of the failed batch receives the same instance.
    ``cost`` gives an item's size in tokens for the ``max_batch_tokens`` budget. ``on_batch`` is
    called on the event loop after every batch with its size, token sum and run time in seconds.
    A batcher is started once and stopped once.
    """

    def __init__(
        self,
        *,
        run_batch: Callable[[list[T]], Sequence[R | BaseException]],
        cost: Callable[[T], int],
        max_batch: int,
        max_batch_tokens: int,
        max_wait_ms: float,
        max_queue: int,
        workers: int = 1,
        on_batch: BatchObserver | None = None,
        name: str = "microbatch",
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        if max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be at least 1, not {max_batch_tokens}")
        if not max_wait_ms >= 0:
            raise ValueError(f"max_wait_ms must be zero or more, not {max_wait_ms}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, not {max_queue}")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self._run_batch = run_batch
        self._cost = cost
        self.max_batch = max_batch
        self.max_batch_tokens = max_batch_tokens
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.workers = workers
        self._on_batch = on_batch
        self._name = name

        self._queue: deque[_Waiter[T, R]] = deque()
        # Items waiting for the engine, whether still in the deque or in the batch being formed.
        self._pending = 0
        # Smoothed run time of a batch, for the Retry-After estimate; None until one has run.
        self._latency_s: float | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._forming: _Batch[T, R] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._accepting = False
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._accepting

    async def start(self) -> None:
        """Start the batching loop and its threads; must run on the loop that will call submit."""
        if self._loop_task is not None:
            raise RuntimeError("the micro-batcher was already started")
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=self._name)
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(self.workers)
        self._accepting = True
        self._loop_task = asyncio.create_task(self._batch_loop(), name=f"{self._name}-loop")

    async def stop(self, *, drain: bool = True, timeout_s: float | None = None) -> None:
        """Stop accepting work, then finish or fail what is left, and shut the threads down.

        With ``drain`` the waiting requests still run (each within its own deadline); without it
        they fail at once with :class:`BatcherClosedError`. Batches already in the engine are
        awaited. After ``timeout_s`` whatever is still waiting or running fails with
        :class:`BatcherClosedError`; a thread stuck in the engine cannot be interrupted, so it is
        left to finish on its own.
        """
        if self._loop_task is None or self._stopping:
            return
        self._stopping = True
        self._accepting = False
        if not drain:
            self._fail_waiting(BatcherClosedError("the micro-batcher is shutting down"))
        assert self._wakeup is not None  # noqa: S101 - set by start()
        self._wakeup.set()
        loop_task = self._loop_task
        executor = self._executor
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(loop_task)
                while self._running:
                    await asyncio.wait(set(self._running))
        except TimeoutError:
            log.warning("%s: stop timed out, failing the requests still in progress", self._name)
            leftovers = [loop_task, *self._running]
            for task in leftovers:
                task.cancel()
            await asyncio.gather(*leftovers, return_exceptions=True)
            self._fail_waiting(BatcherClosedError("the micro-batcher shut down before this request ran"))
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)
        else:
            if executor is not None:
                # Every batch has returned, so the threads are idle and joining them is immediate.
                executor.shutdown(wait=True)
        self._executor = None

    # -- the request side --------------------------------------------------------------------

    async def submit(self, item: T, *, timeout_s: float) -> R:
        """Run ``item`` in the next batch with room for it and return its result.

        Raises :class:`QueueFullError` when ``max_queue`` requests already wait,
        :class:`DeadlineExceededError` when no result arrives within ``timeout_s``,
        :class:`BatcherClosedError` when not running, and whatever exception ``run_batch`` gave for
        this item (or raised for its whole batch).
        """
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, not {timeout_s}")
        if not self._accepting:
            raise BatcherClosedError("the summarization engine is not accepting requests")
        if self._pending >= self.max_queue:
            raise QueueFullError(
                f"{self._pending} requests are already waiting for the summarization engine",
                retry_after_s=self._retry_after_s(),
            )
        cost = max(0, int(self._cost(item)))
        loop = asyncio.get_running_loop()
        waiter: _Waiter[T, R] = _Waiter(
            item=item, cost=cost, deadline=loop.time() + timeout_s, future=loop.create_future()
        )
        self._queue.append(waiter)
        self._pending += 1
        assert self._wakeup is not None  # noqa: S101 - set by start()
        self._wakeup.set()
        try:
            async with asyncio.timeout_at(waiter.deadline):
                return await waiter.future
        except TimeoutError:
            if waiter.future.done() and not waiter.future.cancelled():
                # An outcome landed in the same instant; mark it read so asyncio does not report it.
                waiter.future.exception()
            raise DeadlineExceededError(
                f"no result within the request's deadline of {timeout_s:g} s"
            ) from None
        finally:
            # A running batch keeps going for its other items; this one's result is dropped on arrival.
            self._release(waiter)

    @property
    def queue_depth(self) -> int:
        return self._pending

    def _release(self, waiter: _Waiter[T, R]) -> None:
        """Take a waiter out of every count; safe to call more than once."""
        if waiter.state is _State.QUEUED:
            # Linear, but the deque never holds more than max_queue entries.
            with contextlib.suppress(ValueError):
                self._queue.remove(waiter)
        if waiter.state in (_State.QUEUED, _State.FORMING):
            self._pending -= 1
        waiter.state = _State.DONE
        if not waiter.future.done():
            waiter.future.cancel()

    def _fail_waiting(self, exc: BaseException) -> None:
        """Fail every request not yet in the engine: the deque and the batch being formed."""
        waiters = list(self._queue)
        self._queue.clear()
        if self._forming is not None:
            waiters.extend(self._forming.waiters)
            self._forming = None
        for waiter in waiters:
            if waiter.state is _State.QUEUED:
                waiter.state = _State.FORMING  # already out of the deque: _release must not search it
            if waiter.state is _State.FORMING and not waiter.future.done():
                waiter.future.set_exception(exc)
            self._release(waiter)

    def _retry_after_s(self) -> float:
        latency = self._latency_s
        if latency is None:
            latency = _DEFAULT_BATCH_LATENCY_S
        batches_ahead = self._pending // self.max_batch + 1
        estimate = batches_ahead * latency / self.workers + self.max_wait_s
        return min(max(estimate, _RETRY_AFTER_MIN_S), _RETRY_AFTER_MAX_S)

    # -- the batching side -------------------------------------------------------------------

    async def _batch_loop(self) -> None:
        assert self._slots is not None  # noqa: S101 - set by start()
        while True:
            # Take a thread first: a batch formed before the engine is free would freeze its
            # composition while later arrivals could still have joined it.
            await self._slots.acquire()
            try:
                batch = await self._form_batch()
            except asyncio.CancelledError:
                # Only stop() cancels the loop; it fails the batch left in _forming.
                self._slots.release()
                raise
            except Exception:
                # A bug here must not end the service: the requests involved still have deadlines.
                log.exception("%s: forming a batch failed", self._name)
                self._forming = None
                self._slots.release()
                await asyncio.sleep(self.max_wait_s)
                continue
            if batch is None:
                self._slots.release()
                return
            if not batch.waiters:
                self._slots.release()
                continue
            task = asyncio.create_task(self._run(batch), name=f"{self._name}-batch")
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _form_batch(self) -> _Batch[T, R] | None:
        """Collect the next batch; ``None`` once stopping and nothing is left to run."""
        assert self._wakeup is not None  # noqa: S101 - set by start()
        while not self._queue:
            if self._stopping:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        loop = asyncio.get_running_loop()
        batch: _Batch[T, R] = _Batch()
        self._forming = batch
        self._take(batch)
        close_at = loop.time() + self.max_wait_s
        while len(batch.waiters) < self.max_batch:
            if self._queue:
                # An item alone over the budget still runs: the check only applies to company.
                if batch.tokens + self._queue[0].cost > self.max_batch_tokens:
                    break
                self._take(batch)
                continue
            remaining = close_at - loop.time()
            if remaining <= 0 or self._stopping:
                break
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()
        # Members may have expired or been abandoned while the batch waited for company.
        now = loop.time()
        live: list[_Waiter[T, R]] = []
        for waiter in batch.waiters:
            if waiter.future.done():
                continue
            if waiter.deadline <= now:
                waiter.future.set_exception(
                    DeadlineExceededError("the request's deadline passed in the queue")
                )
                self._release(waiter)
                continue
            waiter.state = _State.RUNNING
            self._pending -= 1
            live.append(waiter)
        batch.tokens = sum(w.cost for w in live)
        batch.waiters = live
        self._forming = None
        return batch

    def _take(self, batch: _Batch[T, R]) -> None:
        waiter = self._queue.popleft()
        waiter.state = _State.FORMING
        batch.waiters.append(waiter)
        batch.tokens += waiter.cost

    async def _run(self, batch: _Batch[T, R]) -> None:
        assert self._slots is not None and self._executor is not None  # noqa: S101 - set by start()
        loop = asyncio.get_running_loop()
        items = [w.item for w in batch.waiters]
        began = time.perf_counter()
        results: Sequence[R | BaseException]
        try:
            try:
                results = await loop.run_in_executor(self._executor, self._run_batch, items)
                if len(results) != len(items):
                    raise MicroBatchError(
                        f"the engine returned {len(results)} results for a batch of {len(items)}"
                    )
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                # A failing engine call fails its own batch only; the loop keeps serving.
                log.warning("%s: a batch of %d failed: %r", self._name, len(items), exc)
                results = [exc] * len(items)
            seconds = time.perf_counter() - began
            self._record(len(items), batch.tokens, seconds)
            for waiter, result in zip(batch.waiters, results, strict=True):
                if waiter.future.done():
                    continue  # its caller gave up; the result has nowhere to go
                if isinstance(result, BaseException):
                    waiter.future.set_exception(result)
                else:
                    waiter.future.set_result(result)
        finally:
            for waiter in batch.waiters:
                if not waiter.future.done():
                    waiter.future.set_exception(
                        BatcherClosedError("the micro-batcher shut down during this batch")
                    )
            self._slots.release()

    def _record(self, size: int, tokens: int, seconds: float) -> None:
        # Smoothed so one slow batch does not swing the Retry-After estimate.
        if self._latency_s is None:
            self._latency_s = seconds
        else:
            self._latency_s += _LATENCY_SMOOTHING * (seconds - self._latency_s)
        if self._on_batch is not None:
            try:
                self._on_batch(size, tokens, seconds)
            except Exception:
                log.exception("%s: the on_batch callback failed", self._name)


__all__ = [
    "BatcherClosedError",
    "DeadlineExceededError",
    "MicroBatchError",
    "MicroBatcher",
    "QueueFullError",
]
