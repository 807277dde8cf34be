"""Email notifications: a plain-text and an HTML part, sent with aiosmtplib."""

from __future__ import annotations

import html
import time
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import aiosmtplib

from notifier.errors import DeliveryFailedError, DeliveryImpossibleError
from schema.settings import NotifierSettings, SmtpSettings
from schema.store.events import BATCH_COMPLETED, SUMMARY_CANCELED, SUMMARY_FAILED, SUMMARY_SUCCEEDED

_SUBJECTS = {
    SUMMARY_SUCCEEDED: "Summary ready: {id}",
    SUMMARY_FAILED: "Summary failed: {id}",
    SUMMARY_CANCELED: "Summary canceled: {id}",
    BATCH_COMPLETED: "Batch completed: {id}",
}


def _excerpt(text: str, max_bytes: int) -> str:
    # Cut on a character boundary: a UTF-8 sequence split in two would garble the last word.
    return text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore").rstrip()


def _lines(
    settings: NotifierSettings, event_type: str, data: Mapping[str, Any]
) -> tuple[list[str], str | None]:
    """The facts of the message, and the summary text (or its first part) if there is one."""
    if event_type == BATCH_COMPLETED:
        counts = ", ".join(f"{count} {status}" for status, count in data.get("counts", {}).items())
        lines = [
            f"Batch: {data['id']}",
            f"Status: {data['status']}",
            f"Jobs: {data.get('total', 0)}" + (f" ({counts})" if counts else ""),
            f"Details: {data['url']}",
        ]
        return lines, None
    lines = [f"Job: {data['id']}", f"Status: {data['status']}"]
    if data.get("custom_id"):
        lines.append(f"Custom id: {data['custom_id']}")
    error = data.get("error")
    if error:
        lines.append(f"Error: {error['code']}: {error['message']}")
    summary = data.get("summary")
    link = data.get("summary_url")
    if link:
        lines.append(f"Full summary: {link}")
    return lines, summary


def build_message(
    settings: NotifierSettings,
    *,
    event_type: str,
    event_id: str,
    recipient: str,
    data: Mapping[str, Any],
    full_summary: str | None = None,
) -> EmailMessage:
    """The email for one event.

    ``data`` is the payload object (its summary already replaced by a link when long);
    ``full_summary`` lets the email show the first part of such a summary beside the link.
    """
    lines, summary = _lines(settings, event_type, data)
    if summary is None and full_summary and data.get("summary_url"):
        summary = _excerpt(full_summary, settings.max_inline_summary_bytes) + " …"

    message = EmailMessage()
    message["Subject"] = _SUBJECTS.get(event_type, "Notification: {id}").format(id=data["id"])
    message["From"] = settings.smtp.from_address
    message["To"] = recipient
    message["Date"] = formatdate(localtime=False)
    # The event id makes the Message-ID, so a resend after a lost answer can be recognised.
    message["Message-ID"] = f"<{event_id}@condense>"

    text = "\n".join(lines)
    if summary:
        text += "\n\nSummary:\n\n" + summary
    message.set_content(text + "\n")

    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    body = f"<ul>{items}</ul>"
    if summary:
        paragraphs = "".join(f"<p>{html.escape(part)}</p>" for part in summary.split("\n\n") if part.strip())
        body += f"<h2>Summary</h2>{paragraphs}"
    title = html.escape(str(message["Subject"]))
    message.add_alternative(
        f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head>'
        f"<body>{body}</body></html>\n",
        subtype="html",
    )
    return message


async def send(smtp: SmtpSettings, message: EmailMessage) -> float:
    """Send ``message``; return the latency in milliseconds.

    Raises :class:`DeliveryImpossibleError` when the server refuses every recipient for good
    (5xx), :class:`DeliveryFailedError` on any other SMTP or network failure.
    """
    started = time.perf_counter()
    try:
        await aiosmtplib.send(
            message,
            hostname=smtp.host,
            port=smtp.port,
            username=smtp.username,
            password=smtp.password.get_secret_value() if smtp.password is not None else None,
            use_tls=smtp.use_tls,
            start_tls=smtp.start_tls,
            timeout=smtp.timeout_s,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        latency_ms = (time.perf_counter() - started) * 1000
        codes = [refusal.code for refusal in exc.recipients]
        text = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
        if codes and all(code >= 500 for code in codes):
            raise DeliveryImpossibleError(f"recipient refused: {text}", latency_ms=latency_ms) from exc
        raise DeliveryFailedError(f"recipient refused: {text}", latency_ms=latency_ms) from exc
    except aiosmtplib.SMTPResponseException as exc:
        # The server answered with a reply code (sender refused, data refused, HELO or AUTH
        # failed); the log keeps it where a webhook keeps its HTTP status. A 5xx here is about
        # our side or the server's setup, not the recipient, so it is retried like the rest.
        raise DeliveryFailedError(
            f"{type(exc).__name__}: {exc.code} {exc.message}",
            status_code=exc.code,
            latency_ms=(time.perf_counter() - started) * 1000,
        ) from exc
    except (aiosmtplib.SMTPException, OSError) as exc:
        # Connection refused or lost, timeouts (TimeoutError is an OSError), TLS and protocol errors.
        raise DeliveryFailedError(
            f"{type(exc).__name__}: {exc}",
            latency_ms=(time.perf_counter() - started) * 1000,
        ) from exc
    return (time.perf_counter() - started) * 1000
