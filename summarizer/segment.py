"""Sentence segmentation for real documents: prose, Markdown and reStructuredText.

Code (fenced blocks, ``::`` literal blocks, code directives), tables and markup lines are dropped:
they are never good summary sentences and they confuse the encoder. Headings are kept as their own
segments, flagged, so that a title never glues itself onto the next sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Tokens that end with a period without ending a sentence. Lower-cased, without the final period.
ABBREVIATIONS = frozenset(
    """
    e.g i.e cf vs etc al approx resp viz ca esp incl fig figs eq eqs sec no nos vol p pp ch ed eds
    mr mrs ms dr prof st jr sr rev gen col lt sgt inc ltd co corp dept univ jan feb mar apr jun jul aug
    sep sept oct nov dec mon tue wed thu fri sat sun u.s u.k a.m p.m ph.d
    """.split()
)
# Abbreviations that may well end a sentence when the next word is capitalised.
_MAY_END = frozenset({"etc", "al", "co", "inc", "ltd", "corp"})

_FENCE = re.compile(r"^\s*(```|~~~)")
_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_UNDERLINE = re.compile(r"^\s*([=\-~^\"'`#*+:.<>_])\1{2,}\s*$")
_BULLET = re.compile(r"^\s*(?:[-*+•‣◦]|\d{1,3}[.)]|\(?[a-zA-Z#][.)]|\(\d{1,3}\))\s+")
_DIRECTIVE = re.compile(r"^\s*\.\.\s+([\w-]+)::(.*)$")
_COMMENT_OR_TARGET = re.compile(r"^\s*\.\.(\s|$)")
_TABLE = re.compile(r"^\s*(\+[-=+]{3,}\+?|\|.*\|\s*$|={3,}(\s+={3,})+\s*$)")
_FIELD = re.compile(r"^:[\w -]+:\s")
_CODE_DIRECTIVES = frozenset(
    {
        "code",
        "code-block",
        "sourcecode",
        "literalinclude",
        "math",
        "productionlist",
        "doctest",
        "testcode",
        "highlight",
        "raw",
        "image",
        "figure",
        "csv-table",
        "list-table",
        "toctree",
        "include",
    }
)
# A boundary candidate: end punctuation, closing quotes/brackets, whitespace.
_BOUNDARY = re.compile(r"([.!?…]+)([\"'”’)\]]*)(\s+)")
_STARTS_SENTENCE = re.compile(r"[\"'“‘(\[]?[A-Z0-9À-ÖØ-Þ]")
_WORD_BEFORE = re.compile(r"(\S+)$")
_INLINE_MARKUP = re.compile(r"`{1,2}([^`]+)`{1,2}_{0,2}|\*\*([^*]+)\*\*|(?<![\w*])\*([^*\s][^*]*)\*(?!\w)")
_MD_LINK = re.compile(r"!?\[([^\]]+)\]\([^)]*\)")


@dataclass(frozen=True)
class Segment:
    """One sentence (or heading) in document order; ``block`` numbers the paragraph it came from."""

    text: str
    block: int
    heading: bool = False

    @property
    def words(self) -> int:
        return len(self.text.split())


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _clean_inline(text: str) -> str:
    text = _MD_LINK.sub(r"\1", text)
    text = _INLINE_MARKUP.sub(lambda m: next(g for g in m.groups() if g is not None), text)
    return re.sub(r"\s+", " ", text).strip()


def _blocks(text: str) -> list[tuple[str, bool]]:
    """Paragraph-level blocks as (joined text, is_heading), code and tables removed."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ").split("\n")
    blocks: list[tuple[str, bool]] = []
    current: list[str] = []

    def flush(heading: bool = False) -> None:
        if current:
            joined = _clean_inline(" ".join(part.strip() for part in current))
            if joined:
                blocks.append((joined, heading))
            current.clear()

    i = 0
    n = len(lines)
    while i < n:
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            flush()
            i += 1
            continue
        fence = _FENCE.match(line)
        if fence:
            flush()
            i += 1
            while i < n and not lines[i].strip().startswith(fence.group(1)):
                i += 1
            i += 1
            continue
        heading = _MD_HEADING.match(line)
        if heading and not stripped.startswith("#!"):
            flush()
            current.append(heading.group(1))
            flush(heading=True)
            i += 1
            continue
        # reStructuredText overline + title + underline, or title + underline.
        if _UNDERLINE.match(line) and i + 2 < n and _UNDERLINE.match(lines[i + 2]) and lines[i + 1].strip():
            flush()
            current.append(lines[i + 1])
            flush(heading=True)
            i += 3
            continue
        if (
            i + 1 < n
            and _UNDERLINE.match(lines[i + 1])
            and len(lines[i + 1].strip()) >= max(3, len(stripped) - 2)
            and not _UNDERLINE.match(line)
        ):
            flush()
            current.append(stripped)
            flush(heading=True)
            i += 2
            continue
        if _UNDERLINE.match(line) or _TABLE.match(line):
            flush()
            i += 1
            continue
        directive = _DIRECTIVE.match(line)
        if directive or _COMMENT_OR_TARGET.match(line):
            flush()
            base = _indent(line)
            name = directive.group(1).lower() if directive else ""
            keep_body = bool(directive) and name not in _CODE_DIRECTIVES
            if keep_body and directive and directive.group(2).strip():
                current.append(directive.group(2))
            i += 1
            while i < n and (not lines[i].strip() or _indent(lines[i]) > base):
                body = lines[i].strip()
                if keep_body and body and not _FIELD.match(body):
                    current.append(body)
                elif not body:
                    flush()
                i += 1
            flush()
            continue
        if _FIELD.match(stripped) and not current:
            i += 1
            continue
        if _BULLET.match(line) and current:
            flush()
        if current and _indent(line) > _indent(current[0]) + 3 and not _BULLET.match(current[0]):
            # An indented line right under a paragraph line: a definition body or quoted block.
            flush()
        current.append(_BULLET.sub("", line, count=1) if _BULLET.match(line) else line)
        if stripped.endswith("::"):
            # A literal block follows: keep the paragraph's prose, drop the indented code.
            current[-1] = current[-1].rstrip()[:-1].rstrip(":") + (":" if stripped != "::" else "")
            base = _indent(line) if not _BULLET.match(line) else _indent(line) + 2
            flush()
            i += 1
            while i < n and (not lines[i].strip() or _indent(lines[i]) > base):
                i += 1
            continue
        i += 1
    flush()
    return blocks


def _is_boundary(text: str, match: re.Match[str]) -> bool:
    punct = match.group(1)
    rest = text[match.end() :]
    if not rest or not _STARTS_SENTENCE.match(rest):
        return False
    if punct != ".":
        return True
    word_match = _WORD_BEFORE.search(text[: match.start()])
    if word_match is None:
        return True
    word = word_match.group(1).lstrip("\"'“‘([").lower()
    if word in ABBREVIATIONS and word not in _MAY_END:
        return False
    if len(word) == 1 and word.isalpha():
        # An initial ("J. Smith") or a list label; sentences rarely end on one letter.
        return False
    return not re.fullmatch(r"(?:[a-z]\.)+[a-z]", word)  # "e.g" spelled as "e.g" or "u.s.a"


def split_paragraph(text: str) -> list[str]:
    """Split one paragraph of plain text into sentences."""
    sentences: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        if _is_boundary(text, match):
            end = match.start(3)
            piece = text[start:end].strip()
            if piece:
                sentences.append(piece)
            start = match.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


def segment(text: str) -> list[Segment]:
    """Sentences and headings of ``text`` in document order, code and tables skipped.

    A short block without end punctuation (a heading the source lost its markup for) counts as a
    heading, which keeps titles such as "Rationale" out of summaries.
    """
    segments: list[Segment] = []
    for number, (block, heading) in enumerate(_blocks(text)):
        if heading or (len(block.split()) <= 8 and not block.endswith((".", "!", "?", ":", "…", '"', "”"))):
            segments.append(Segment(block, number, heading=True))
            continue
        segments.extend(Segment(sentence, number) for sentence in split_paragraph(block))
    return segments
