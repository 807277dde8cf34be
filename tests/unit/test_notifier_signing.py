"""Our Standard Webhooks signer against the reference implementation."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from notifier import signing
from notifier.errors import InvalidSecretError, SignatureError

# The example of the Standard Webhooks reference test suite.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = '{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def reference_sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    return Webhook(secret).sign(msg_id, datetime.fromtimestamp(timestamp, tz=UTC), body)


def test_known_vector() -> None:
    assert reference_sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    assert signing.sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    assert signing.sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY.encode()) == SPEC_SIGNATURE


@pytest.mark.parametrize(
    "body",
    ['{"type":"summary.succeeded","data":{}}', '{"summary":"caf\\u00e9 — naïve ☕"}', "", "x" * 10_000],
)
def test_matches_the_reference_on_fresh_secrets(body: str) -> None:
    secret = signing.new_secret()
    assert signing.sign(secret, "msg_1", 1_700_000_000, body) == reference_sign(
        secret, "msg_1", 1_700_000_000, body
    )


def test_unpadded_secret_decodes_like_the_reference() -> None:
    raw = base64.b64encode(b"k" * 31).decode()  # 31 bytes need padding
    unpadded = "whsec_" + raw.rstrip("=")
    assert signing.sign(unpadded, "m", 1, "b") == reference_sign(unpadded, "m", 1, "b")


def test_new_secret_has_the_whsec_form() -> None:
    secret = signing.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert secret != signing.new_secret()
    with pytest.raises(ValueError):
        signing.new_secret(8)


def test_invalid_secrets_are_refused() -> None:
    with pytest.raises(InvalidSecretError) as refused:
        signing.sign("whsec_not*base64!", "m", 1, "b")
    # Waiting cannot mend a secret: the notifier disables such a delivery instead of retrying it.
    assert (refused.value.code, refused.value.retryable) == ("invalid_webhook_secret", False)
    with pytest.raises(InvalidSecretError):
        signing.sign("whsec_", "m", 1, "b")
    with pytest.raises(InvalidSecretError):
        signing.signature_header([], "m", 1, "b")


def test_rotation_carries_one_signature_per_secret_and_the_reference_accepts_each() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    body = '{"type":"summary.succeeded"}'
    headers = signing.sign_headers([new, old], "msg_rot", body)

    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    assert all(s.startswith("v1,") for s in signatures)
    assert headers["webhook-id"] == "msg_rot"
    for secret in (old, new):
        assert Webhook(secret).verify(body, headers) == {"type": "summary.succeeded"}


def test_verify_accepts_reference_signatures() -> None:
    secret = signing.new_secret()
    timestamp = 1_700_000_000
    headers = {
        "Webhook-Id": "msg_x",
        "Webhook-Timestamp": str(timestamp),
        "Webhook-Signature": "v2,ignored " + reference_sign(secret, "msg_x", timestamp, "{}"),
    }
    signing.verify(secret, "{}", headers, now=timestamp + 10)
    signing.verify([signing.new_secret(), secret], b"{}", headers, now=timestamp)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"webhook-signature": "v1,AAAA"}, "no matching"),
        ({"webhook-signature": "v1,not-base64!!"}, "no matching"),
        ({"webhook-id": "msg_other"}, "no matching"),
        ({"webhook-timestamp": "1699999000"}, "tolerance"),
        ({"webhook-timestamp": "soon"}, "whole number"),
        ({"webhook-id": ""}, "missing"),
    ],
)
def test_verify_refuses_tampering(change: dict[str, str], message: str) -> None:
    secret = signing.new_secret()
    headers = signing.sign_headers([secret], "msg_x", "{}", timestamp=1_700_000_000)
    with pytest.raises(SignatureError, match=message):
        signing.verify(secret, "{}", {**headers, **change}, now=1_700_000_000)


def test_verify_refuses_another_body_or_secret() -> None:
    secret = signing.new_secret()
    headers = signing.sign_headers([secret], "msg_x", "{}", timestamp=1_700_000_000)
    with pytest.raises(SignatureError):
        signing.verify(secret, "{ }", headers, now=1_700_000_000)
    with pytest.raises(SignatureError):
        signing.verify(signing.new_secret(), "{}", headers, now=1_700_000_000)


def test_verify_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = signing.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signing.hmac, "compare_digest", spy)
    secret = signing.new_secret()
    headers = signing.sign_headers([signing.new_secret(), secret], "msg_x", "{}", timestamp=5)

    signing.verify(secret, "{}", headers, now=5)

    # Every candidate is compared, through compare_digest, even after the first one matched.
    assert len(calls) == 2
