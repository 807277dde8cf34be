"""PII detection and masking (common.pii) against a labelled synthetic corpus in four locales."""

from __future__ import annotations

import pytest

from common import pii
from common.pii import EntityType
from tests.fixtures.pii_corpus import LOCALES, corpus, evaluate

STRUCTURED = set(EntityType)


@pytest.fixture(scope="module")
def scores() -> dict[EntityType, object]:
    result, _ = evaluate(corpus(40, seed=7))
    return result  # type: ignore[return-value]


@pytest.mark.parametrize("kind", sorted(STRUCTURED, key=str))
def test_recall_and_precision_per_type(scores: dict, kind: EntityType) -> None:
    score = scores[kind]
    assert score.planted >= 40
    assert score.recall >= 0.98, (kind, score)
    assert score.precision >= 0.95, (kind, score)


def test_corpus_covers_every_locale() -> None:
    docs = corpus(2, seed=1)
    assert {d.locale for d in docs} == set(LOCALES)
    assert any(EntityType.CN_RESIDENT_ID in {p.type for p in d.planted} for d in docs)


def test_masks_keep_the_type_and_are_consistent_within_a_document() -> None:
    text = (
        "Write to Ana.Lopez@example.com or ana.lopez@example.com, call +49 30 901820 or "
        "+49 30 901820 again; card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00, "
        "other mail bob@example.org."
    )
    masked = pii.mask(text)
    assert masked.text == (
        "Write to <EMAIL_1> or <EMAIL_1>, call <PHONE_1> or <PHONE_1> again; card <CREDIT_CARD_1>, "
        "IBAN <IBAN_1>, other mail <EMAIL_2>."
    )
    assert masked.types == ("CREDIT_CARD", "EMAIL", "IBAN", "PHONE")


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("身份证号11010519491231002X已登记", EntityType.CN_RESIDENT_ID),
        ("请拨打13812345678或010-62345678", EntityType.PHONE),
        ("key sk-proj-abcdefghijklmnop1234567890 leaked", EntityType.SECRET),
        ("token ghp_0123456789abcdefghijABCDEFGHIJ012345", EntityType.SECRET),
        ("aws AKIAIOSFODNN7EXAMPLE here", EntityType.SECRET),
        ("Authorization: Bearer eyJhbGciOi.eyJzdWIiOiIx.c2lnbmF0dXJl", EntityType.SECRET),
        ("server at 2001:db8::8a2e:370:7334 is down", EntityType.IPV6),
        ("from 192.168.10.254.", EntityType.IPV4),
        ("SSN 123-45-6789 on file", EntityType.US_SSN),
    ],
)
def test_formats(text: str, kind: EntityType) -> None:
    assert kind in {e.type for e in pii.find(text)}


@pytest.mark.parametrize(
    "text",
    [
        "Released 2026-11-30 as version 3.12.1 at 14:30, order #4821337 for $1234.56.",
        "A card-like number that fails Luhn: 4111 1111 1111 1112.",
        "Not an ID: 110105194912310021 (checksum off).",
        "SSNs never start with 9: 912-45-6789; nor 000-12-3456.",
        "Not an address: 999.1.1.1 or 1.2.3.",
        "A path /usr/local/lib/python3.13/site-packages and a word Supercalifragilisticexpialidocious.",
        "Identifiers like HTTPRequestHandlerFactoryBuilder and ThisIsALongCamelCaseIdentifierName.",
    ],
)
def test_no_false_positives_on_lookalikes(text: str) -> None:
    assert pii.find(text) == []


def test_an_iban_with_a_bad_check_is_no_iban() -> None:
    found = pii.find("An IBAN with a bad check: DE00 3704 0044 0532 0130 00.")
    assert EntityType.IBAN not in {e.type for e in found}


def test_text_without_entities_is_returned_as_is() -> None:
    text = "Nothing personal here, just 3 apples."
    assert pii.mask(text).text == text
    assert pii.mask(text).entities == ()
