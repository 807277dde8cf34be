"""Grouping work into batches by a token budget."""

from __future__ import annotations

from collections.abc import Sequence


def token_batches(
    lengths: Sequence[int], max_batch_tokens: int, *, max_rows: int = 1_024, extra_per_row: int = 0
) -> list[list[int]]:
    """Indices grouped so that rows x padded width (+ ``extra_per_row``) stays within the budget.

    Sorting by length first keeps similar lengths together, so little of each batch is padding; an
    item longer than the budget still gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda index: lengths[index])
    batches: list[list[int]] = []
    current: list[int] = []
    width = 0
    for index in order:
        cost = lengths[index] + extra_per_row
        new_width = max(width, cost)
        if current and (new_width * (len(current) + 1) > max_batch_tokens or len(current) >= max_rows):
            batches.append(current)
            current = []
            new_width = cost
        current.append(index)
        width = new_width
    if current:
        batches.append(current)
    return batches
