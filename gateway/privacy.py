"""The gateway's side of PII handling: refuse or mask a document before anything keeps it.

Runs before the row is built, so under ``mask_stored`` the raw text never reaches the database,
the outbox, Kafka, the sync engine or a log line; the summary is masked where it is made (here on
the sync path, in the worker otherwise).
"""

from __future__ import annotations

import asyncio
from typing import cast

from common import pii
from common.pii import PiiMode
from gateway.errors import PiiRejectedError
from gateway.state import GatewayState


async def mode_for(state: GatewayState, tenant: str, requested: PiiMode | None) -> PiiMode:
    """The job's own mode, else the tenant's from the database, else the settings' for the tenant."""
    if requested is not None:
        return requested
    stored = await state.pii_modes.get(tenant) if state.pii_modes is not None else None
    if stored is not None:
        return cast(PiiMode, stored)
    return state.settings.governance.pii.mode_for(tenant)


# Scanning runs at a few hundred kB/s: beyond this a text is scanned off the event loop, so one
# large document does not stall every other request for its duration.
_INLINE_SCAN_CHARS = 20_000


async def screen_async(text: str, mode: PiiMode) -> str:
    if mode in ("off", "mask_summary") or len(text) <= _INLINE_SCAN_CHARS:
        return screen(text, mode)
    return await asyncio.to_thread(screen, text, mode)


def screen(text: str, mode: PiiMode) -> str:
    """The text to keep under ``mode``; raises PiiRejectedError under ``reject`` when any is found."""
    if mode == "off" or mode == "mask_summary":
        return text
    found = pii.find(text)
    if mode == "reject":
        if found:
            types = ", ".join(sorted({e.type.value for e in found}))
            raise PiiRejectedError(
                f"the document contains personal data ({types}) and this tenant or job refuses it; "
                'remove it, or submit with "pii": "mask_stored"'
            )
        return text
    return pii.mask(text, found).text
