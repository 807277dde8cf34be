"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

A message is signed as ``v1,`` + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")) where the
key is the base64 part of a ``whsec_`` secret. During a secret rotation each message carries one
signature per secret, space separated, so receivers holding either secret accept it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence

from common.webhook_secrets import SECRET_PREFIX, new_secret
from notifier.errors import InvalidSecretError, SignatureError

SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_S = 300.0

# new_secret and SECRET_PREFIX live in common (the gateway makes secrets too) and are re-exported here.
__all__ = ["SECRET_PREFIX", "new_secret", "secret_key", "sign", "sign_headers", "signature_header", "verify"]


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret (its base64 part, decoded)."""
    encoded = secret.removeprefix(SECRET_PREFIX).strip()
    try:
        # Secrets are sometimes shared without their padding; accept them like the reference does.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidSecretError("webhook secret is not valid base64 after the whsec_ prefix") from exc
    if not key:
        raise InvalidSecretError("webhook secret is empty")
    return key


def _content(msg_id: str, timestamp: int, body: bytes | str) -> bytes:
    data = body.encode("utf-8") if isinstance(body, str) else body
    return f"{msg_id}.{timestamp}.".encode() + data


def _digest(key: bytes, msg_id: str, timestamp: int, body: bytes | str) -> bytes:
    return hmac.new(key, _content(msg_id, timestamp, body), hashlib.sha256).digest()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes | str) -> str:
    """One ``v1,<base64>`` signature of a message."""
    digest = _digest(secret_key(secret), msg_id, timestamp, body)
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes | str) -> str:
    """The ``webhook-signature`` value: one signature per secret, space separated."""
    if not secrets:
        raise InvalidSecretError("at least one secret is needed to sign a webhook")
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets)


def sign_headers(
    secrets: Sequence[str], msg_id: str, body: bytes | str, *, timestamp: int | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt (timestamp: now unless given)."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signature_header(secrets, msg_id, ts, body),
    }


def verify(
    secrets: str | Sequence[str],
    body: bytes | str,
    headers: Mapping[str, str],
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> None:
    """Raise :class:`SignatureError` unless ``headers`` carry a valid signature of ``body``.

    Accepts if any ``v1`` signature matches any of ``secrets``. Signatures are compared in
    constant time, and every candidate is compared, so timing reveals neither which nor how much
    of a signature matched. A timestamp further than ``tolerance_s`` from ``now`` is refused
    against replays.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    msg_id = lowered.get("webhook-id")
    raw_timestamp = lowered.get("webhook-timestamp")
    raw_signatures = lowered.get("webhook-signature")
    if not (msg_id and raw_timestamp and raw_signatures):
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        timestamp = int(raw_timestamp)
    except ValueError as exc:
        raise SignatureError("webhook-timestamp is not a whole number of seconds") from exc
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise SignatureError("webhook-timestamp is outside the tolerance")

    candidates: list[bytes] = []
    for item in raw_signatures.split():
        version, _, encoded = item.partition(",")
        if version != SIGNATURE_VERSION:
            continue
        try:
            candidates.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    keys = [secret_key(secrets)] if isinstance(secrets, str) else [secret_key(s) for s in secrets]
    matched = False
    for key in keys:
        expected = _digest(key, msg_id, timestamp, body)
        for candidate in candidates:
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureError("no matching signature")
