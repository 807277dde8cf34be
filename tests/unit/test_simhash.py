"""SimHash near duplicates: reuse on edits that keep a paragraph's meaning, never on a changed
number, name or negation (pairs built from the real prose in tests/data)."""

from __future__ import annotations

from collections import Counter

from common import simhash as sh
from schema.settings import CacheSettings
from schema.store.cache import fingerprint, is_near_duplicate
from tests.fixtures.near_duplicates import CHANGED, SAME_MEANING, pairs, paragraphs

RULES = CacheSettings()


def _fires(original: str, variant: str) -> bool:
    return is_near_duplicate(
        original, variant, fingerprint(original, RULES), fingerprint(variant, RULES), RULES
    )


def test_a_changed_number_name_or_negation_never_reuses_a_summary() -> None:
    found = pairs()
    kinds = Counter(pair.kind for pair in found)
    assert all(kinds[kind] >= 20 for kind in CHANGED | SAME_MEANING), kinds
    wrong = [pair for pair in found if pair.kind in CHANGED and _fires(pair.original, pair.variant)]
    assert wrong == []
    # The fingerprints alone cannot tell these apart: the content check is what refuses them.
    close = [
        pair
        for pair in found
        if pair.kind in CHANGED and sh.distance(sh.simhash(pair.original), sh.simhash(pair.variant)) <= 12
    ]
    assert len(close) > len([pair for pair in found if pair.kind in CHANGED]) // 2


def test_edits_that_keep_the_meaning_reuse_it() -> None:
    found = [pair for pair in pairs() if pair.kind in SAME_MEANING]
    fired = Counter(pair.kind for pair in found if _fires(pair.original, pair.variant))
    total = Counter(pair.kind for pair in found)
    assert fired["reflow"] == total["reflow"]
    assert fired["punctuation"] == total["punctuation"]
    # A one-word typo passes where the paragraph is long enough for one word to be under 2%.
    assert fired["typo"] >= total["typo"] // 2


def test_unrelated_paragraphs_are_far_apart() -> None:
    prints = [sh.simhash(text) for text in paragraphs()[:40]]
    nearest = min(sh.distance(a, b) for i, a in enumerate(prints) for b in prints[i + 1 :])
    assert nearest > RULES.near_duplicate_max_distance


def test_fingerprint_basics() -> None:
    text = "The relay publishes the outbox. Workers store results."
    assert sh.simhash(text) == sh.simhash("the RELAY publishes, the outbox; workers store results!")
    assert sh.simhash("") == 0
    value = sh.simhash(text)
    assert 0 <= value < 2**64
    assert sh.to_unsigned(sh.to_signed(value)) == value
    assert -(2**63) <= sh.to_signed(value) < 2**63
    assert sh.similarity(value, value) == 1.0
    assert sh.same_content(text, "the relay publishes the outbox workers store results", max_changed_share=0)
    assert not sh.same_content(text, text.replace("publishes", "never publishes"), max_changed_share=0.5)
