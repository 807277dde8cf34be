"""Model audit events: who loaded which model, with which file hashes, and when it changed.

A row per load (``load``, or ``change`` when the manifest digest differs from the last one
recorded for the same model name), plus ``mismatch`` when a component found its files differing
from their manifest. Written by the component that loaded the model, in its own transaction.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, insert, select

from schema.models import audit_table, utcnow
from schema.store.records import _Record
from summarizer.types import Summarizer

LOAD: Final = "load"
CHANGE: Final = "change"
MISMATCH: Final = "mismatch"

_AUDIT = audit_table


@dataclass(frozen=True, slots=True)
class AuditEvent(_Record):
    id: int
    at: datetime
    event: str
    component: str
    host: str
    pid: int
    model_name: str
    manifest_sha256: str | None
    weights_sha256: str | None
    previous_manifest_sha256: str | None
    details: dict[str, Any]


def last_for_model(conn: Connection, model_name: str) -> AuditEvent | None:
    row = (
        conn.execute(
            select(_AUDIT)
            .where(_AUDIT.c.model_name == model_name, _AUDIT.c.event.in_((LOAD, CHANGE)))
            .order_by(_AUDIT.c.id.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    return AuditEvent.from_row(row) if row is not None else None


def _insert(conn: Connection, **values: Any) -> AuditEvent:
    values.setdefault("at", utcnow())
    values.setdefault("host", socket.gethostname())
    values.setdefault("pid", os.getpid())
    values.setdefault("details", {})
    row = conn.execute(insert(_AUDIT).values(**values).returning(*_AUDIT.c)).mappings().one()
    return AuditEvent.from_row(row)


def record_load(
    conn: Connection,
    *,
    component: str,
    model_name: str,
    manifest_sha256: str,
    weights_sha256: str,
    details: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> AuditEvent:
    """A model was loaded; ``change`` when the previous load of this model had other files."""
    previous = last_for_model(conn, model_name)
    changed = previous is not None and previous.manifest_sha256 != manifest_sha256
    return _insert(
        conn,
        at=now or utcnow(),
        event=CHANGE if changed else LOAD,
        component=component,
        model_name=model_name,
        manifest_sha256=manifest_sha256,
        weights_sha256=weights_sha256,
        previous_manifest_sha256=previous.manifest_sha256 if changed and previous else None,
        details=details or {},
    )


def record_mismatch(
    conn: Connection,
    *,
    component: str,
    model_name: str,
    manifest_sha256: str,
    differences: list[str],
    refused: bool,
    now: datetime | None = None,
) -> AuditEvent:
    return _insert(
        conn,
        at=now or utcnow(),
        event=MISMATCH,
        component=component,
        model_name=model_name,
        manifest_sha256=manifest_sha256,
        details={"differences": differences[:200], "refused": refused},
    )


def events(conn: Connection, *, limit: int = 100) -> list[AuditEvent]:
    rows = conn.execute(select(_AUDIT).order_by(_AUDIT.c.id.desc()).limit(limit)).mappings()
    return [AuditEvent.from_row(row) for row in rows]


def record_loaded(
    conn: Connection, summarizer: Summarizer, *, component: str, refused: bool
) -> list[AuditEvent]:
    """The audit rows for one load of ``summarizer``: its load (or change), and any mismatch."""
    info = summarizer.info
    check = summarizer.manifest
    details = {
        "backend": info.backend,
        "quantization": info.quantization,
        "device": info.device,
        "engine_version": info.engine_version,
        "manifest_path": str(check.path) if check is not None else None,
        "manifest_written_now": check.written_now if check is not None else None,
        "files": len(check.manifest.files) if check is not None else None,
    }
    recorded = [
        record_load(
            conn,
            component=component,
            model_name=info.name,
            manifest_sha256=info.manifest_sha256,
            weights_sha256=info.sha256,
            details=details,
        )
    ]
    if check is not None and check.differences:
        recorded.append(
            record_mismatch(
                conn,
                component=component,
                model_name=info.name,
                manifest_sha256=info.manifest_sha256,
                differences=list(check.differences),
                refused=refused,
            )
        )
    return recorded
