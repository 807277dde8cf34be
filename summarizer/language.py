"""Scripts, word units and the language of a document, without dependencies.

Word units are what summary budgets count: a run of letters or digits between spaces is one word,
and so is every CJK ideograph or kana, because Chinese and Japanese put no spaces between words
(one character is roughly one English word of content, so a 100-word budget keeps about 100
characters). Korean separates words with spaces and counts like English.

The language is told by script for the scripts one language dominates (Han, kana, Hangul,
Cyrillic, Arabic, ...) and by common function words for a few Latin-script languages; anything
else is "und" (undetermined, as BCP 47 spells it).
"""

from __future__ import annotations

import bisect
import re
from collections import Counter

# (first code point, last code point, script) in ascending order.
_RANGES: tuple[tuple[int, int, str], ...] = (
    (0x0041, 0x024F, "latin"),
    (0x0370, 0x03FF, "greek"),
    (0x0400, 0x052F, "cyrillic"),
    (0x0530, 0x058F, "armenian"),
    (0x0590, 0x05FF, "hebrew"),
    (0x0600, 0x06FF, "arabic"),
    (0x0750, 0x077F, "arabic"),
    (0x0900, 0x097F, "devanagari"),
    (0x0980, 0x09FF, "bengali"),
    (0x0B80, 0x0BFF, "tamil"),
    (0x0E00, 0x0E7F, "thai"),
    (0x10A0, 0x10FF, "georgian"),
    (0x1100, 0x11FF, "hangul"),
    (0x1E00, 0x1EFF, "latin"),
    (0x3040, 0x309F, "kana"),
    (0x30A0, 0x30FF, "kana"),
    (0x3130, 0x318F, "hangul"),
    (0x31F0, 0x31FF, "kana"),
    (0x3400, 0x4DBF, "han"),
    (0x4E00, 0x9FFF, "han"),
    (0xAC00, 0xD7AF, "hangul"),
    (0xF900, 0xFAFF, "han"),
    (0xFB50, 0xFDFF, "arabic"),
    (0xFE70, 0xFEFF, "arabic"),
    (0xFF66, 0xFF9F, "kana"),
    (0x20000, 0x2FFFF, "han"),
)
_STARTS = [first for first, _, _ in _RANGES]

# Characters counted one word unit each: ideographs and kana, plus the iteration marks.
_CJK_CHAR = "\u3005\u3007\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0002ffff"
CJK_CHAR = re.compile(f"[{_CJK_CHAR}]")
# One word unit: a CJK character, or a run of other characters up to a space or a CJK character
# that holds a letter or digit (full-width punctuation between ideographs is no word).
_UNIT = re.compile(f"[{_CJK_CHAR}]|[^\\s{_CJK_CHAR}]*?[^\\W_][^\\s{_CJK_CHAR}]*")

# Scripts that (nearly) one language writes; the others need a closer look below.
_SCRIPT_LANGUAGE = {
    "greek": "el",
    "armenian": "hy",
    "hebrew": "he",
    "devanagari": "hi",
    "bengali": "bn",
    "tamil": "ta",
    "thai": "th",
    "georgian": "ka",
    "hangul": "ko",
}

# Frequent function words; single letters are left out because they also occur as variables.
_STOPWORDS: dict[str, frozenset[str]] = {
    lang: frozenset(words.split())
    for lang, words in {
        "en": "the and of to is in that it for with as was on are be this by not or which from an have "
        "can will at but if its they their there should would when been has",
        "de": "der die und das ist nicht ein eine zu den mit von auf für sich dem des im auch werden "
        "wird es sind oder bei nach kann wie über durch",
        "fr": "le la les et des est un une du que qui dans pour pas sur au avec ce sont par plus ou ne il "
        "se cette aux être à",
        "es": "el la los las en que es un una del por con para no se su al lo como más pero sus está son "
        "este esta también y",
        "it": "il lo la gli le di che è un una per non con del della sono da si come anche nel alla più "
        "questo essere",
        "pt": "os as em um uma do da não para com é dos das no na por mais se são ao que mas como pelo "
        "também",
        "nl": "de het een en van is dat niet op te zijn met voor die er aan ook als maar wordt bij naar "
        "om worden",
    }.items()
}
_LATIN_WORD = re.compile(r"[^\W\d_]+")
# Enough of a document to tell its language; more only costs time.
_SAMPLE_CHARS = 20_000


def script_of(char: str) -> str | None:
    """The script of a letter (None for marks, digits, punctuation and scripts not listed)."""
    if not char.isalpha():
        return None
    point = ord(char)
    index = bisect.bisect_right(_STARTS, point) - 1
    if index < 0:
        return None
    _, last, script = _RANGES[index]
    return script if point <= last else None


def has_cjk(text: str) -> bool:
    return CJK_CHAR.search(text) is not None


def count_words(text: str) -> int:
    """Word units of ``text``: whitespace-separated words, every CJK character counted as one."""
    if not has_cjk(text):
        return len(text.split())
    return sum(1 for _ in _UNIT.finditer(text))


def truncate_words(text: str, limit: int) -> str:
    """The first ``limit`` word units of ``text`` (whitespace normalized)."""
    if not has_cjk(text):
        return " ".join(text.split()[:limit])
    end = 0
    for number, match in enumerate(_UNIT.finditer(text)):
        if number == limit:
            break
        end = match.end()
    return " ".join(text[:end].split())


def _script_units(sample: str) -> Counter[str]:
    """Word units per script: each ideograph or kana is one, each run of another script's letters one."""
    units: Counter[str] = Counter()
    previous: str | None = None
    for char in sample:
        script = script_of(char)
        if script in ("han", "kana"):
            units[script] += 1
        elif script is not None and script != previous:
            units[script] += 1
        previous = script
    return units


def _latin_language(sample: str) -> str:
    counts: Counter[str] = Counter()
    for word in _LATIN_WORD.findall(sample.lower()):
        if len(word) == 1 and word not in ("à", "è", "é", "y"):
            continue
        for lang, words in _STOPWORDS.items():
            if word in words:
                counts[lang] += 1
    ranked = counts.most_common(2)
    if not ranked or ranked[0][1] < 2:
        return "und"
    best, hits = ranked[0]
    runner_up = ranked[1][1] if len(ranked) > 1 else 0
    # Neighbouring languages share many function words; only a clear lead decides.
    return best if hits >= 1.25 * runner_up else "und"


def detect_language(text: str) -> str:
    """A BCP 47 primary language subtag for ``text`` ("en", "zh", "ja", ...), or "und"."""
    sample = text[:_SAMPLE_CHARS]
    units = _script_units(sample)
    if not units:
        return "und"
    cjk = units["han"] + units["kana"]
    others = [(count, script) for script, count in units.items() if script not in ("han", "kana")]
    top, script = max(others, default=(0, ""))
    if cjk > top:
        # Japanese writes kana in every sentence; Chinese has none.
        return "ja" if units["kana"] >= 0.1 * cjk else "zh"
    if script == "latin":
        return _latin_language(sample)
    if script == "cyrillic":
        return _cyrillic_language(sample)
    if script == "arabic":
        return _arabic_language(sample)
    return _SCRIPT_LANGUAGE.get(script, "und")


def _cyrillic_language(sample: str) -> str:
    if any(letter in sample for letter in "ђћџЂЋЏ"):
        return "sr"
    if sum(sample.count(letter) for letter in "іїєґІЇЄҐ") > 2:
        return "uk"
    return "ru"


def _arabic_language(sample: str) -> str:
    if sum(sample.count(letter) for letter in "ٹڈڑںے") > 2:
        return "ur"
    if sum(sample.count(letter) for letter in "پچژگ") > 2:
        return "fa"
    return "ar"
