"""Which webhook a job or batch notifies, and whether it may: one rule for every route."""

from __future__ import annotations

import asyncio

from common.urlsafety import check_webhook_url
from gateway.errors import InvalidRequestError
from gateway.state import GatewayState
from schema.models import endpoints_table
from schema.settings import Settings

# Every table keeps a webhook secret in a column of this size (PostgreSQL enforces it, SQLite does
# not), so a longer one must be refused here rather than fail the insert as a 500.
MAX_SECRET_CHARS: int = endpoints_table.c.secret.type.length  # type: ignore[attr-defined]


async def validate_webhook(settings: Settings, url: str, secret: str | None) -> None:
    """Refuse unsafe targets now (the notifier checks again at connect time) and unsigned hooks."""
    notifier = settings.notifier
    if secret is not None and len(secret) > MAX_SECRET_CHARS:
        raise InvalidRequestError(f"webhook.secret: longer than {MAX_SECRET_CHARS} characters")
    if secret is None and not notifier.webhook_secrets:
        raise InvalidRequestError(
            "webhook.secret: required, since no default signing secret is configured (notifier.webhook_secrets)"
        )
    await asyncio.to_thread(
        check_webhook_url,
        url,
        allow_loopback=notifier.allow_loopback,
        allow_private=notifier.allow_private,
        http_allowlist=notifier.http_allowlist,
    )


async def resolve_webhook(
    state: GatewayState, tenant: str, url: str | None, secret: str | None
) -> tuple[str | None, str | None]:
    """The webhook a job notifies: its own, else the tenant's default endpoint, else none.

    A job's own URL without a secret is signed with the tenant endpoint's secret when there is one.
    """
    endpoint = await state.endpoints.get(tenant)
    if url is None:
        return endpoint if endpoint is not None else (None, None)
    if secret is None and endpoint is not None:
        secret = endpoint[1]
    await validate_webhook(state.settings, url, secret)
    return url, secret
