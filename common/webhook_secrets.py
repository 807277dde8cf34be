"""Standard Webhooks secrets: made by the gateway (tenant endpoints), used by the notifier."""

from __future__ import annotations

import base64
import secrets

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format marker, not a secret
DEFAULT_SECRET_BYTES = 32


def new_secret(num_bytes: int = DEFAULT_SECRET_BYTES) -> str:
    """A fresh random secret in ``whsec_<base64>`` form."""
    if num_bytes < 24:
        # The spec asks for 24 to 64 random bytes.
        raise ValueError("a webhook secret needs at least 24 random bytes")
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(num_bytes)).decode("ascii")
