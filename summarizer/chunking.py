"""Token-aware chunking: every input token lands in some chunk, none is dropped."""

from __future__ import annotations

from collections.abc import Sequence


def split_units(units: Sequence[Sequence[int]], limit: int) -> list[list[int]]:
    """Units (sentences as token ids) with any unit longer than ``limit`` cut into windows."""
    out: list[list[int]] = []
    for unit in units:
        out.extend(list(unit[start : start + limit]) for start in range(0, len(unit), limit))
    return [unit for unit in out if unit]


def chunk_units(units: Sequence[Sequence[int]], limit: int, overlap: int = 0) -> list[list[int]]:
    """Pack units into chunks of at most ``limit`` tokens, breaking only between units where possible.

    Each chunk after the first repeats up to ``overlap`` tokens from the end of the previous one
    (whole units when they fit, else the previous chunk's last tokens), so a point that straddles a
    boundary is seen whole by at least one chunk.
    """
    if limit < 1:
        raise ValueError("limit must be positive")
    overlap = min(overlap, limit // 2)
    chunks: list[list[int]] = []
    current: list[list[int]] = []
    size = 0
    for unit in split_units(units, limit):
        if current and size + len(unit) > limit:
            chunks.append([token for part in current for token in part])
            carry: list[list[int]] = []
            carried = 0
            for previous in reversed(current):
                if carried + len(previous) > overlap:
                    break
                carry.insert(0, previous)
                carried += len(previous)
            if not carry and overlap:
                tail = chunks[-1][-overlap:]
                carry, carried = [tail], len(tail)
            while carry and carried + len(unit) > limit:
                carried -= len(carry.pop(0))
            current, size = carry, carried
        current.append(list(unit))
        size += len(unit)
    if current:
        chunks.append([token for part in current for token in part])
    return chunks
