"""A tenant's default webhook endpoint: set once, used by every job and batch that names none."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel
from sqlalchemy import delete, insert, select, update

from common.webhook_secrets import new_secret
from gateway.deps import StateDep, TenantDep
from gateway.errors import NotFoundError
from gateway.ids import DeliveryId
from gateway.webhooks import validate_webhook
from schema.api import DeliveryPublic, WebhookTarget
from schema.models import endpoints_table, utcnow
from schema.store import deliveries, events
from schema.store.records import AttemptRecord, DeliveryRecord

router = APIRouter(prefix="/v1", tags=["webhooks"])


class WebhookEndpointSet(WebhookTarget):
    """The same shape as a job's webhook; a new secret is made when none is given."""


class WebhookEndpointPublic(BaseModel):
    url: str
    secret: str
    created_at: Any
    updated_at: Any


def _public(row: Any) -> WebhookEndpointPublic:
    return WebhookEndpointPublic(
        url=row["url"], secret=row["secret"], created_at=row["created_at"], updated_at=row["updated_at"]
    )


@router.put("/webhook-endpoint", response_model=WebhookEndpointPublic)
async def set_endpoint(body: WebhookEndpointSet, state: StateDep, tenant: TenantDep) -> WebhookEndpointPublic:
    target = WebhookTarget(url=body.url, secret=body.secret or new_secret())
    await validate_webhook(state.settings, target.url, target.secret)
    now = utcnow()
    async with state.engine.begin() as conn:
        updated = await conn.execute(
            update(endpoints_table)
            .where(endpoints_table.c.tenant == tenant)
            .values(url=target.url, secret=target.secret, updated_at=now)
        )
        if updated.rowcount == 0:
            await conn.execute(
                insert(endpoints_table).values(
                    tenant=tenant, url=target.url, secret=target.secret, created_at=now, updated_at=now
                )
            )
        row = (
            (await conn.execute(select(endpoints_table).where(endpoints_table.c.tenant == tenant)))
            .mappings()
            .one()
        )
    state.endpoints.forget(tenant)
    return _public(row)


@router.get("/webhook-endpoint", response_model=WebhookEndpointPublic)
async def get_endpoint(state: StateDep, tenant: TenantDep) -> WebhookEndpointPublic:
    async with state.engine.connect() as conn:
        row = (
            (await conn.execute(select(endpoints_table).where(endpoints_table.c.tenant == tenant)))
            .mappings()
            .one_or_none()
        )
    if row is None:
        raise NotFoundError("no default webhook endpoint is set; PUT /v1/webhook-endpoint sets one")
    return _public(row)


@router.delete("/webhook-endpoint", status_code=204)
async def delete_endpoint(state: StateDep, tenant: TenantDep) -> Response:
    async with state.engine.begin() as conn:
        result = await conn.execute(delete(endpoints_table).where(endpoints_table.c.tenant == tenant))
    state.endpoints.forget(tenant)
    if result.rowcount == 0:
        raise NotFoundError("no default webhook endpoint is set")
    return Response(status_code=204)


def delivery_public(delivery: DeliveryRecord, attempts: list[AttemptRecord]) -> dict[str, Any]:
    """A delivery and its attempts as the API shows them (the secret never leaves the server)."""
    return {
        "id": delivery.id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "channel": delivery.channel,
        "target": delivery.target,
        "status": delivery.status,
        "attempts": [
            {
                "attempted_at": attempt.attempted_at.isoformat(),
                "status_code": attempt.status_code,
                "latency_ms": attempt.latency_ms,
                "error": attempt.error,
                "succeeded": attempt.succeeded,
            }
            for attempt in attempts
        ],
        "next_attempt_at": delivery.next_attempt_at.isoformat() if delivery.next_attempt_at else None,
        "created_at": delivery.created_at.isoformat(),
    }


@router.post("/webhook-endpoint/test", status_code=202, response_model=DeliveryPublic)
async def test_endpoint(state: StateDep, tenant: TenantDep) -> dict[str, Any]:
    """Queue a signed ``webhook.test`` event to the default endpoint; follow it at /v1/deliveries/{id}."""
    endpoint = await state.endpoints.get(tenant)
    if endpoint is None:
        raise NotFoundError("no default webhook endpoint is set; PUT /v1/webhook-endpoint sets one")
    url, secret = endpoint
    # Checked again now: the policy may have changed since the endpoint was saved.
    await validate_webhook(state.settings, url, secret)
    delivery_id = await state.write(events.record_test_event, tenant=tenant, url=url, secret=secret)
    return delivery_public(*await state.read(deliveries.get_with_attempts, delivery_id, tenant=tenant))


@router.get("/deliveries/{delivery_id}", response_model=DeliveryPublic)
async def get_delivery(delivery_id: DeliveryId, state: StateDep, tenant: TenantDep) -> dict[str, Any]:
    return delivery_public(*await state.read(deliveries.get_with_attempts, delivery_id, tenant=tenant))
