"""The gateway's side of PII handling: refuse or mask a document before anything keeps it.

Runs before the row is built, so under ``mask_stored`` the raw text never reaches the database,
the outbox, Kafka, the sync engine or a log line; the summary is masked where it is made (here on
the sync path, in the worker otherwise).
"""

from __future__ import annotations

from common import pii
from common.pii import PiiMode
from gateway.errors import PiiRejectedError

MASKS_SUMMARY: frozenset[str] = frozenset({"mask_summary", "mask_stored"})


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


def summary_for(summary: str, mode: str | None) -> str:
    return pii.mask_text(summary) if mode in MASKS_SUMMARY else summary
