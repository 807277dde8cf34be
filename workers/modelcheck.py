"""A worker admits its model only when the files match their manifest, and audits every load."""

from __future__ import annotations

import logging

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from schema.store import audit
from summarizer import Summarizer
from workers.errors import ModelMismatchError

log = logging.getLogger(__name__)


def admit_model(
    engine: Engine, summarizer: Summarizer, *, allow_mismatch: bool, component: str = "worker"
) -> None:
    """Record the load; raise ModelMismatchError (naming the files) on a mismatch unless allowed.

    The audit row is written before refusing, so that a refused start is on record too. A
    database outage does not stop the worker: the consumer waits for the database anyway.
    """
    check = summarizer.manifest
    mismatch = check is not None and not check.ok
    refused = mismatch and not allow_mismatch
    try:
        with engine.begin() as conn:
            audit.record_loaded(conn, summarizer, component=component, refused=refused)
    except DBAPIError as exc:
        log.warning("could not record the model load in the audit table: %s", exc)
    if mismatch and check is not None:
        files = "; ".join(check.differences[:20])
        if refused:
            raise ModelMismatchError(
                f"model files differ from the manifest {check.path}: {files}; run `condense models verify`, "
                "or start with worker.allow_model_mismatch: true (--allow-model-mismatch)"
            )
        log.warning("starting with model files that differ from the manifest %s: %s", check.path, files)
