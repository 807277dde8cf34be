"""Detection and masking of personal data and secrets in documents and summaries.

Every component imports this (the gateway masks or refuses before anything is stored, the workers
and the gateway's sync path mask summaries), so it lives in ``common`` and imports nothing of ours.

Why not Presidio: its analyzer insists on an NLP engine, and the spaCy models it loads cannot be
downloaded here; with a blank pipeline it still ships the same regexes and checksums written out
below, plus a heavy dependency tree. Phone numbers, the one type where a hand-written pattern is
hopeless (formats differ per country), go through ``phonenumbers`` (Google's libphonenumber
metadata, offline). Everything else is a pattern narrowed by the check that the value itself
carries: Luhn for cards, ISO 13616 mod-97 for IBANs, ISO 7064 MOD 11-2 for PRC resident ids, the
SSA's excluded ranges for SSNs, ``ipaddress`` for IPs, and a character-entropy bar for unprefixed
secrets. Names of people and organisations (NER) are not detected.
"""

from __future__ import annotations

import enum
import ipaddress
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

import phonenumbers

PiiMode = Literal["off", "mask_summary", "mask_stored", "reject"]
PII_MODES: tuple[str, ...] = get_args(PiiMode)
# The modes under which a summary is masked where it is made (gateway sync path, worker).
MASKS_SUMMARY: frozenset[str] = frozenset({"mask_summary", "mask_stored"})


class EntityType(enum.StrEnum):
    EMAIL = "EMAIL"
    PHONE = "PHONE"
    CREDIT_CARD = "CREDIT_CARD"
    IBAN = "IBAN"
    IPV4 = "IPV4"
    IPV6 = "IPV6"
    US_SSN = "US_SSN"
    CN_RESIDENT_ID = "CN_RESIDENT_ID"
    SECRET = "SECRET"  # noqa: S105 - the name of a type, not a credential


@dataclass(frozen=True, slots=True)
class Entity:
    type: EntityType
    start: int
    end: int
    value: str


@dataclass(frozen=True, slots=True)
class Masked:
    text: str
    entities: tuple[Entity, ...]

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(sorted({e.type.value for e in self.entities}))


# Where a number written without a country code is assumed to be; each region's own formats
# (a leading 0 trunk prefix in DE/FR, 11-digit mobiles in CN) only parse with it.
PHONE_REGIONS: tuple[str, ...] = ("US", "DE", "FR", "CN", "GB")

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24}(?![A-Za-z0-9-])",
    re.ASCII,
)
_SECRET_PREFIXED = re.compile(
    r"(?:"
    r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{16,}"
    r"|\bgh[pousr]_[A-Za-z0-9]{30,}"
    r"|\bgithub_pat_[A-Za-z0-9_]{40,}"
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
    r"|\bxox[abposr]-[A-Za-z0-9-]{10,}"
    r"|\bAIza[0-9A-Za-z_-]{35}"
    r"|\bglpat-[A-Za-z0-9_-]{20,}"
    r"|\bwhsec_[A-Za-z0-9+/=]{16,}"
    r"|\bBearer [A-Za-z0-9._~+/-]{15,}[A-Za-z0-9_~+/-]=*"
    r"|\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"
    r")",
    re.ASCII,
)
# A long run of token characters; only those that look random (below) count as secrets.
_TOKEN = re.compile(r"(?<![A-Za-z0-9_+/=-])[A-Za-z0-9_+/=-]{24,}(?![A-Za-z0-9_+/=-])", re.ASCII)
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b", re.ASCII)
# Written plain, or in groups of four from the first (4-4-4-4, 4-6-5): "001-432-682-3318" is a phone.
_CARD = re.compile(r"(?<![\d+-])(?:\d{12,19}|\d{4}(?:[ -]\d{1,6}){2,4})(?![\d-])", re.ASCII)
_CN_ID = re.compile(r"(?<!\d)\d{17}[\dXx](?![\dA-Za-z])", re.ASCII)
_SSN = re.compile(r"(?<![\d-])(\d{3})-(\d{2})-(\d{4})(?![\d-])", re.ASCII)
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?!\d|\.\d)", re.ASCII)
_IPV6 = re.compile(r"(?<![0-9A-Fa-f:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![0-9A-Fa-f:])", re.ASCII)

_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_ID_CHECK = "10X98765432"
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30,
    "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29,
    "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27,
    "TN": 24, "TR": 26, "UA": 29, "VG": 24, "XK": 20,
}  # fmt: skip


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(value: str) -> bool:
    compact = value.replace(" ", "")
    expected = _IBAN_LENGTHS.get(compact[:2])
    if expected is not None and len(compact) != expected:
        return False
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def cn_id_ok(value: str) -> bool:
    body, check = value[:17], value[17].upper()
    if not ("11" <= body[:2] <= "82"):
        return False
    year, month, day = int(body[6:10]), int(body[10:12]), int(body[12:14])
    if not (1900 <= year <= 2100 and 1 <= month <= 12 and 1 <= day <= 31):
        return False
    total = sum(int(d) * w for d, w in zip(body, _CN_ID_WEIGHTS, strict=True))
    return _CN_ID_CHECK[total % 11] == check


def ssn_ok(area: str, group: str, serial: str) -> bool:
    return area not in {"000", "666"} and area[0] != "9" and group != "00" and serial != "0000"


def _entropy_bits(value: str) -> float:
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def looks_random(token: str) -> bool:
    """A credential-like token: mixed classes and close to uniformly random characters."""
    classes = sum(
        (
            any(c.islower() for c in token),
            any(c.isupper() for c in token),
            any(c.isdigit() for c in token),
        )
    )
    if classes < 2:
        return False
    if sum(c.isdigit() for c in token) < 2:
        # Random base64 may draw almost no digits; then only a near-uniform spread of mixed-case
        # letters counts (CamelCase identifiers and words stay well under it).
        mixed_case = any(c.islower() for c in token) and any(c.isupper() for c in token)
        return mixed_case and _entropy_bits(token) >= 4.3
    if len(token) >= 32 and all(c in "0123456789abcdef" for c in token.lower()):
        # Hex digests and keys: at most 4 bits a character by construction.
        return _entropy_bits(token) >= 3.3
    # Random base64/hex of length n has entropy near log2(min(n, alphabet)); words, paths and
    # repeated characters stay well below that.
    return _entropy_bits(token) >= min(4.0, math.log2(len(token)) - 0.6)


class _Spans:
    """Accepted entities; a later detector may not claim characters an earlier one took."""

    def __init__(self) -> None:
        self.items: list[Entity] = []

    def free(self, start: int, end: int) -> bool:
        return all(end <= e.start or start >= e.end for e in self.items)

    def add(self, kind: EntityType, start: int, end: int, text: str) -> None:
        if self.free(start, end):
            self.items.append(Entity(kind, start, end, text[start:end]))


_DATE_LIKE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}", re.ASCII)
_DECIMAL = re.compile(r"\d+[.,]\d{1,2}", re.ASCII)
# Shapes of other types whose check failed: a typo in a card or an SSN is still not a phone.
_OTHER_SHAPE = re.compile(r"\d{3}-\d{2}-\d{4}|\d{4}(?:[ -]\d{4}){3}(?:[ -]\d{1,3})?", re.ASCII)


def _phone_like(raw: str, number: phonenumbers.PhoneNumber, before: str, after: str) -> bool:
    """Keep a candidate the matcher found. Valid numbers always; merely possible ones (an area
    code not in service yet, a fictional 555) only when written like a phone number: with a ``+``
    or separators, ten digits or more, and not shaped like a date, an amount or an order number."""
    if before[-1:] in {"#", "$", "€", "£", "¥"}:
        return False
    # Part of a longer group of digits (the matcher may pick the tail of a card number).
    if re.fullmatch(r"\d[ -]", before) or re.fullmatch(r"[ -]\d", after):
        return False
    if _DATE_LIKE.fullmatch(raw) or _DECIMAL.fullmatch(raw) or _OTHER_SHAPE.fullmatch(raw):
        return False
    if phonenumbers.is_valid_number(number):
        return True
    digits = sum(ch.isdigit() for ch in raw)
    written = raw.startswith(("+", "(", "00")) or any(ch in raw for ch in " -.()")
    return written and digits >= 10 and phonenumbers.is_possible_number(number)


def _phones(text: str, spans: _Spans) -> None:
    # Cheap gate: a phone number has at least seven digits; most sentences have none.
    if sum(ch.isdigit() for ch in text) < 7:
        return
    for region in PHONE_REGIONS:
        matcher = phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.POSSIBLE)
        for match in matcher:
            start, end = match.start, match.end
            if not spans.free(start, end) or sum(ch.isdigit() for ch in match.raw_string) < 7:
                continue
            before, after = text[max(0, start - 2) : start], text[end : end + 2]
            if _phone_like(match.raw_string, match.number, before, after):
                spans.add(EntityType.PHONE, start, end, text)


def find(text: str) -> list[Entity]:
    """Every entity found, in text order; overlaps go to the type with the stronger check."""
    spans = _Spans()
    for m in _EMAIL.finditer(text):
        spans.add(EntityType.EMAIL, m.start(), m.end(), text)
    for m in _SECRET_PREFIXED.finditer(text):
        spans.add(EntityType.SECRET, m.start(), m.end(), text)
    for m in _IBAN.finditer(text):
        if iban_ok(m.group()):
            spans.add(EntityType.IBAN, m.start(), m.end(), text)
    for m in _CN_ID.finditer(text):
        if cn_id_ok(m.group()):
            spans.add(EntityType.CN_RESIDENT_ID, m.start(), m.end(), text)
    for m in _CARD.finditer(text):
        digits = re.sub(r"[ -]", "", m.group())
        if 12 <= len(digits) <= 19 and luhn_ok(digits):
            spans.add(EntityType.CREDIT_CARD, m.start(), m.end(), text)
    for m in _SSN.finditer(text):
        if ssn_ok(*m.groups()):
            spans.add(EntityType.US_SSN, m.start(), m.end(), text)
    for m in _IPV4.finditer(text):
        try:
            ipaddress.IPv4Address(m.group())
        except ValueError:
            continue
        spans.add(EntityType.IPV4, m.start(), m.end(), text)
    if "::" in text or text.count(":") >= 7:
        for m in _IPV6.finditer(text):
            value = m.group()
            if value.count(":") < 2:
                continue
            try:
                ipaddress.IPv6Address(value)
            except ValueError:
                continue
            spans.add(EntityType.IPV6, m.start(), m.end(), text)
    for m in _TOKEN.finditer(text):
        if looks_random(m.group()):
            spans.add(EntityType.SECRET, m.start(), m.end(), text)
    _phones(text, spans)
    return sorted(spans.items, key=lambda e: e.start)


def _normal(entity: Entity) -> str:
    """The same value written two ways (spaces in an IBAN, dashes in a phone) gets one mask."""
    if entity.type in {EntityType.PHONE, EntityType.CREDIT_CARD, EntityType.US_SSN}:
        return re.sub(r"\D", "", entity.value)
    if entity.type in {EntityType.IBAN, EntityType.CN_RESIDENT_ID}:
        return entity.value.replace(" ", "").upper()
    if entity.type is EntityType.EMAIL:
        return entity.value.lower()
    if entity.type is EntityType.IPV6:
        return str(ipaddress.IPv6Address(entity.value))
    return entity.value


def mask(text: str, entities: Iterable[Entity] | None = None) -> Masked:
    """Replace each entity with ``<TYPE_n>``; within one text the same value always gets the same n."""
    found = list(find(text) if entities is None else entities)
    if not found:
        return Masked(text, ())
    numbers: dict[tuple[EntityType, str], int] = {}
    per_type: Counter[EntityType] = Counter()
    parts: list[str] = []
    last = 0
    for entity in sorted(found, key=lambda e: e.start):
        key = (entity.type, _normal(entity))
        if key not in numbers:
            per_type[entity.type] += 1
            numbers[key] = per_type[entity.type]
        parts.append(text[last : entity.start])
        parts.append(f"<{entity.type.value}_{numbers[key]}>")
        last = entity.end
    parts.append(text[last:])
    return Masked("".join(parts), tuple(found))


def mask_text(text: str) -> str:
    return mask(text).text


def summary_for(summary: str, mode: str | None) -> str:
    """The summary as it may be kept and sent under the job's PII mode."""
    return mask_text(summary) if mode in MASKS_SUMMARY else summary
