"""new_id: UUIDv7 strings whose order is creation order (cursor pagination relies on it)."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from types import SimpleNamespace

import pytest

from schema import models
from schema.models import new_id


def unix_ms(value: str) -> int:
    return uuid.UUID(value).int >> 80


def test_ids_are_canonical_uuid7_strings() -> None:
    for _ in range(1_000):
        value = new_id()
        parsed = uuid.UUID(value)

        assert str(parsed) == value
        assert len(value) == 36
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122


def test_the_timestamp_is_the_creation_time() -> None:
    before = time.time_ns() // 1_000_000
    value = new_id()
    after = time.time_ns() // 1_000_000

    # The counter may borrow a millisecond ahead when one millisecond saw over 4096 ids.
    assert before <= unix_ms(value) <= after + 1


def test_ids_sort_by_creation_across_milliseconds() -> None:
    ids = []
    deadline_ms = time.time_ns() // 1_000_000 + 25
    while time.time_ns() // 1_000_000 < deadline_ms:
        ids.append(new_id())

    assert len({unix_ms(value) for value in ids}) >= 10
    # String order must match creation order: the database sorts the text, not the UUID.
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def freeze_clock(monkeypatch: pytest.MonkeyPatch, now_ms: int) -> None:
    # Only the module under test sees the frozen clock. Its last-issued state is restored after the
    # test too, or ids made later in this run would carry the frozen (future) time.
    monkeypatch.setattr(models, "_id_last_ms", models._id_last_ms)
    monkeypatch.setattr(models, "_id_counter", models._id_counter)
    monkeypatch.setattr(models, "time", SimpleNamespace(time_ns=lambda: now_ms * 1_000_000))


def test_ids_keep_increasing_when_one_millisecond_overflows_the_counter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frozen_ms = time.time_ns() // 1_000_000 + 1_000
    freeze_clock(monkeypatch, frozen_ms)

    # Far more ids than the 12-bit counter holds, all in the same millisecond.
    ids = [new_id() for _ in range(10_000)]

    assert all(earlier < later for earlier, later in itertools.pairwise(ids))
    assert all(uuid.UUID(value).version == 7 for value in ids)
    # Overflow borrows the next milliseconds rather than wrapping the counter around.
    assert unix_ms(ids[0]) == frozen_ms
    assert unix_ms(ids[-1]) > frozen_ms


def test_ids_keep_increasing_when_the_clock_steps_back(monkeypatch: pytest.MonkeyPatch) -> None:
    now_ms = time.time_ns() // 1_000_000 + 5_000
    freeze_clock(monkeypatch, now_ms)
    first = new_id()
    freeze_clock(monkeypatch, now_ms - 2_000)

    later = [new_id() for _ in range(100)]

    assert all(first < value for value in later)
    assert later == sorted(later)


def test_a_frozen_clock_test_leaves_no_future_ids_behind() -> None:
    # Runs after the frozen-clock tests above: ids must be back on the real clock.
    before = time.time_ns() // 1_000_000
    assert before <= unix_ms(new_id()) <= time.time_ns() // 1_000_000 + 1


def test_ids_are_unique_across_threads() -> None:
    per_thread = 5_000
    results: list[list[str]] = [[] for _ in range(4)]

    def make(out: list[str]) -> None:
        out.extend(new_id() for _ in range(per_thread))

    threads = [threading.Thread(target=make, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    everything = [value for out in results for value in out]
    assert len(set(everything)) == len(everything) == 4 * per_thread
    # Each thread sees its own ids in increasing order too.
    for out in results:
        assert out == sorted(out)
