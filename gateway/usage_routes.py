"""GET /v1/usage: what a tenant's jobs cost, whole or by day or model."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from gateway.deps import StateDep, TenantDep
from gateway.errors import InvalidRequestError
from schema.store import usage

router = APIRouter(prefix="/v1", tags=["usage"])


@router.get("/usage")
async def get_usage(
    state: StateDep,
    tenant: TenantDep,
    from_: Annotated[date | None, Query(alias="from", description="First UTC day, YYYY-MM-DD.")] = None,
    to: Annotated[date | None, Query(description="Last UTC day, included.")] = None,
    group_by: Annotated[Literal["day", "model"] | None, Query()] = None,
) -> dict[str, Any]:
    if from_ is not None and to is not None and from_ > to:
        raise InvalidRequestError("from: must not be after to")
    found = await state.read(usage.totals, tenant, from_day=from_, to_day=to, group_by=None)
    total = found[0].as_dict() if found else usage.UsageTotals(None, 0, 0, 0, 0, 0, 0.0).as_dict()
    body: dict[str, Any] = {
        "tenant": tenant,
        "from": from_.isoformat() if from_ else None,
        "to": to.isoformat() if to else None,
        "totals": total,
    }
    if group_by is not None:
        groups = await state.read(usage.totals, tenant, from_day=from_, to_day=to, group_by=group_by)
        body["group_by"] = group_by
        body["groups"] = [{group_by: group.group, **group.as_dict()} for group in groups]
    return body
