"""Logging set-up: plain text by default, JSON lines on request (never document text or secrets)."""

from __future__ import annotations

import json
import logging
import math
import sys
from datetime import UTC, datetime

from schema.settings import LoggingSettings

# Passed as ``extra`` by the code that knows them; only these reach a JSON line, so a stray extra
# can never carry document text out.
_CONTEXT_FIELDS = (
    "component",
    "job_id",
    "batch_id",
    "tenant",
    "delivery_id",
    "status",
    "error_code",
    "variant",
    "duration_s",
)


class ComponentFilter(logging.Filter):
    """Stamps every record with the process's component, so merged logs say who wrote each line.

    On the handler rather than a logger: records of every library logger pass through it, and a
    ``component`` a caller set explicitly is kept.
    """

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "component", None) is None:
            record.component = self.component
        return True


def _scalar(value: object) -> object:
    """A JSON-safe form of a context value: ids stay as they are, anything else becomes text."""
    if isinstance(value, bool | int | str) or (isinstance(value, float) and math.isfinite(value)):
        return value
    try:
        return str(value)
    except Exception:
        # A broken __str__ in someone's extra must not cost the log line.
        return f"<unprintable {type(value).__name__}>"


class JsonFormatter(logging.Formatter):
    """One JSON object per line; context fields appear only when a record carries them."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception:
            # Arguments that do not match the format string: keep both rather than lose the line.
            message = f"{record.msg!s} {_scalar(record.args)}"
        payload: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        for name in _CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                payload[name] = _scalar(value)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        return json.dumps(payload)


def configure_logging(settings: LoggingSettings, component: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ComponentFilter(component))
    if settings.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {component} %(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    # Library warnings (Celery's, for one) would otherwise bypass the handler as raw stderr text
    # and break a stream of JSON lines.
    # Off first: if something (Celery's log setup, say) captured warnings before and the hook was
    # since replaced, a plain True would see "already captured" and do nothing.
    logging.captureWarnings(False)
    logging.captureWarnings(True)
    # kafka-python logs every reconnect at INFO/WARNING; its own errors reach us as exceptions.
    logging.getLogger("kafka").setLevel(max(logging.ERROR, root.level))
    # Celery logs every periodic sweep at INFO; a sweep every few seconds would bury real news.
    for name in ("celery.worker.strategy", "celery.app.trace", "celery.beat"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
