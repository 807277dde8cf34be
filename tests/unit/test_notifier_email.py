"""How SMTP failures become notifier errors: what is retried, what disables, what the log keeps."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import aiosmtplib
import pytest

from notifier import email
from notifier.errors import DeliveryFailedError, DeliveryImpossibleError, NotifierError
from schema.settings import SmtpSettings


def failing_send(exc: BaseException) -> Any:
    async def send(*args: Any, **kwargs: Any) -> None:
        raise exc

    return send


def message() -> EmailMessage:
    msg = EmailMessage()
    msg["To"] = "ada@example.com"
    msg.set_content("hello\n")
    return msg


async def failure(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> NotifierError:
    monkeypatch.setattr(aiosmtplib, "send", failing_send(exc))
    with pytest.raises(NotifierError) as raised:
        await email.send(SmtpSettings(host="127.0.0.1", port=25), message())
    assert raised.value.__cause__ is exc
    assert raised.value.latency_ms is not None and raised.value.latency_ms >= 0
    return raised.value


async def test_every_recipient_refused_for_good_disables(monkeypatch: pytest.MonkeyPatch) -> None:
    refused = aiosmtplib.SMTPRecipientsRefused(
        [aiosmtplib.SMTPRecipientRefused(550, "no such user", "ada@example.com")]
    )
    error = await failure(monkeypatch, refused)
    assert isinstance(error, DeliveryImpossibleError)
    assert not error.retryable
    assert "550 no such user" in error.message


async def test_a_recipient_refused_for_now_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    refused = aiosmtplib.SMTPRecipientsRefused(
        [aiosmtplib.SMTPRecipientRefused(451, "try again later", "ada@example.com")]
    )
    error = await failure(monkeypatch, refused)
    assert isinstance(error, DeliveryFailedError)
    assert error.retryable


async def test_a_server_reply_code_is_kept_like_an_http_status(monkeypatch: pytest.MonkeyPatch) -> None:
    error = await failure(monkeypatch, aiosmtplib.SMTPSenderRefused(553, "sender rejected", "n@c.test"))
    assert isinstance(error, DeliveryFailedError)
    assert error.retryable
    assert error.status_code == 553
    assert error.message == "SMTPSenderRefused: 553 sender rejected"


@pytest.mark.parametrize(
    "exc",
    [
        aiosmtplib.SMTPConnectError("connection refused"),
        aiosmtplib.SMTPServerDisconnected("gone"),
        aiosmtplib.SMTPReadTimeoutError("too slow"),
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError(),
    ],
)
async def test_network_failures_are_retried_without_a_code(
    monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    error = await failure(monkeypatch, exc)
    assert isinstance(error, DeliveryFailedError)
    assert error.retryable
    assert error.status_code is None
    assert error.message.startswith(type(exc).__name__)
