"""64-bit SimHash over word shingles, for telling near-duplicate documents apart from different ones.

Two texts that share most of their word n-grams get fingerprints a few bits apart; the Hamming
distance between fingerprints estimates how much of the text changed. One changed word alters
``shingle_words`` shingles out of hundreds, so a long document that differs in a number, a name
or a negation lands close to its twin: the caller must pair a small distance with a length- and
content-aware check (see :func:`differing_tokens`) before it reuses a summary.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter

import numpy as np

BITS = 64
_MASK = (1 << BITS) - 1
_WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def simhash(text: str, *, shingle_words: int = 3) -> int:
    """The unsigned 64-bit fingerprint of ``text``; 0 for a text without words."""
    tokens = words(text)
    if not tokens:
        return 0
    size = max(1, min(shingle_words, len(tokens)))
    shingles = Counter(" ".join(tokens[i : i + size]) for i in range(len(tokens) - size + 1))
    digests = b"".join(hashlib.blake2b(s.encode(), digest_size=8).digest() for s in shingles)
    # One row of 64 bits per shingle, summed as +count / -count per bit: numpy keeps a long
    # document at a fraction of a millisecond where a Python loop over bits takes several.
    bits = np.unpackbits(np.frombuffer(digests, dtype=np.uint8)).reshape(len(shingles), BITS)
    counts = np.fromiter(shingles.values(), dtype=np.int64, count=len(shingles))
    weights = counts @ (bits.astype(np.int64) * 2 - 1)
    # unpackbits is big-endian: column 0 is the digest's highest bit.
    return int("".join("1" if weight > 0 else "0" for weight in weights), 2)


def distance(a: int, b: int) -> int:
    return ((a ^ b) & _MASK).bit_count()


def to_signed(value: int) -> int:
    """The fingerprint as a signed 64-bit integer, the form a BIGINT column stores."""
    value &= _MASK
    return value - (1 << BITS) if value >= 1 << (BITS - 1) else value


def to_unsigned(value: int) -> int:
    return value & _MASK


def similarity(a: int, b: int) -> float:
    """1.0 for equal fingerprints, falling linearly with the bits that differ."""
    return 1.0 - distance(a, b) / BITS


# Words whose change flips a statement's meaning while leaving its shingles almost intact.
NEGATIONS = frozenset(
    {"not", "no", "never", "none", "nor", "neither", "nobody", "nothing", "nowhere", "without", "cannot", "t"}
)
_RAW_WORD = re.compile(r"\w+", re.UNICODE)


def changed_words(a: str, b: str) -> list[str]:
    """Words in one text and not the other (case folded), counted with multiplicity."""
    left, right = Counter(words(a)), Counter(words(b))
    return list(((left - right) + (right - left)).elements())


def _capitalized(text: str) -> set[str]:
    """Words of ``text`` that never appear in lower case there: names, by a cheap and safe guess
    (a sentence's first word counts too, which only makes reuse rarer)."""
    forms: dict[str, bool] = {}
    for word in _RAW_WORD.findall(text):
        folded = word.casefold()
        forms[folded] = forms.get(folded, True) and word[:1].isupper()
    return {word for word, upper in forms.items() if upper}


def meaning_may_differ(word: str, names: set[str]) -> bool:
    """A number, a name or a negation: a change the summary may have to carry."""
    return any(ch.isdigit() for ch in word) or word in names or word in NEGATIONS


def same_content(a: str, b: str, *, max_changed_share: float) -> bool:
    """Whether two texts say the same thing as far as a summary can tell.

    Differences of case, punctuation and spacing never count; a few changed words may, unless
    one of them is a number, a name or a negation.
    """
    changed = changed_words(a, b)
    if not changed:
        return True
    left, right = Counter(words(a)), Counter(words(b))
    # A replaced word is one change, though it leaves one word on each side of the difference.
    edits = max((left - right).total(), (right - left).total())
    if edits > max_changed_share * max(left.total(), right.total(), 1):
        return False
    names = _capitalized(a) | _capitalized(b)
    return not any(meaning_may_differ(word, names) for word in changed)
