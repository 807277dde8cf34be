"""Tenants' default PII modes, set with ``condense pii set`` and read by the gateway on submit."""

from __future__ import annotations

from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from common.pii import PII_MODES
from schema.models import pii_policies_table, utcnow

_POLICIES = pii_policies_table


def get_mode(conn: Connection, tenant: str) -> str | None:
    mode: str | None = conn.execute(select(_POLICIES.c.mode).where(_POLICIES.c.tenant == tenant)).scalar()
    return mode


def set_mode(conn: Connection, tenant: str, mode: str) -> None:
    if mode not in PII_MODES:
        raise ValueError(f"unknown PII mode {mode!r}; one of {', '.join(PII_MODES)}")
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    now = utcnow()
    statement = insert(_POLICIES).values(tenant=tenant, mode=mode, updated_at=now)
    conn.execute(
        statement.on_conflict_do_update(index_elements=["tenant"], set_={"mode": mode, "updated_at": now})
    )


def clear_mode(conn: Connection, tenant: str) -> bool:
    return bool(conn.execute(delete(_POLICIES).where(_POLICIES.c.tenant == tenant)).rowcount)


def all_modes(conn: Connection) -> dict[str, str]:
    return {row.tenant: row.mode for row in conn.execute(select(_POLICIES.c.tenant, _POLICIES.c.mode))}
