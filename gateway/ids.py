"""Ids in paths and cursors: one rule for what can name a job, batch or delivery.

This API hands out UUIDs only (``schema.models.new_id``), so a path id of any other shape names
nothing and is answered 404 here, without a query. Besides saving the round trip, it keeps text
PostgreSQL cannot take as a parameter (a NUL, say) away from the database: such an id used to be
a 500 there and a 404 on SQLite.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Path

from gateway.deps import TenantDep
from gateway.errors import NotFoundError

_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def is_id(value: str) -> bool:
    """Whether ``value`` has the shape of an id this API hands out."""
    return _ID.fullmatch(value) is not None


_SHOWN_CHARS = 64


def _checked(value: str, what: str) -> str:
    if not is_id(value):
        shown = value if len(value) <= _SHOWN_CHARS else value[:_SHOWN_CHARS] + "..."
        # The store's own wording, so a malformed id and an unknown one read the same.
        raise NotFoundError(f"no {what} with id {shown}")
    return value


# Each takes the tenant first, so that the key is checked before the id whatever the order of a
# route's parameters: without a valid key every request is a 401, a malformed id included.
# FastAPI resolves the tenant once per request however many dependencies name it.


async def _job_id(_tenant: TenantDep, job_id: Annotated[str, Path(description="A summary job's id.")]) -> str:
    return _checked(job_id, "summary job")


async def _batch_id(_tenant: TenantDep, batch_id: Annotated[str, Path(description="A batch's id.")]) -> str:
    return _checked(batch_id, "batch")


async def _delivery_id(
    _tenant: TenantDep, delivery_id: Annotated[str, Path(description="A delivery's id.")]
) -> str:
    return _checked(delivery_id, "delivery")


JobId = Annotated[str, Depends(_job_id)]
BatchId = Annotated[str, Depends(_batch_id)]
DeliveryId = Annotated[str, Depends(_delivery_id)]
