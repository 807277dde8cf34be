"""Opaque cursors for newest-first pages: the last id of a page, base64url-encoded."""

from __future__ import annotations

import base64
import binascii

from gateway.errors import InvalidRequestError
from gateway.ids import is_id


def encode_cursor(row_id: str) -> str:
    return base64.urlsafe_b64encode(row_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        # ValueError covers a cursor that is not ASCII; binascii.Error one that is not base64.
        decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequestError("cursor: not a cursor returned by this API") from exc
    # Anything but an id decoded from a cursor was not made by this API.
    if not is_id(decoded):
        raise InvalidRequestError("cursor: not a cursor returned by this API")
    return decoded
