"""Logging set-up: plain text by default, JSON lines on request (never document text or secrets)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from schema.settings import LoggingSettings

_CONTEXT_FIELDS = ("job_id", "batch_id", "tenant", "delivery_id", "component")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                payload[name] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure_logging(settings: LoggingSettings, component: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {component} %(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    # kafka-python logs every reconnect at INFO/WARNING; its own errors reach us as exceptions.
    logging.getLogger("kafka").setLevel(max(logging.ERROR, root.level))
    # Celery logs every periodic sweep at INFO; a sweep every few seconds would bury real news.
    for name in ("celery.worker.strategy", "celery.app.trace", "celery.beat"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
