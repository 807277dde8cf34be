"""Sentence segmentation for real documents: prose, Markdown and reStructuredText, in any script.

Code (fenced blocks, ``::`` literal blocks, code directives, prompts), tables and markup lines are
dropped: they are never good summary sentences and they confuse the encoder. Headings and list
items are kept as their own segments, flagged, so that a title never glues itself onto the next
sentence and a list can be kept with the sentence that introduces it (:func:`summary_units`).

Splitting is one pass over each paragraph: a full stop, ``!`` or ``?`` ends a sentence only before
whitespace and a capital (or caseless) letter, never inside brackets or quotes, after an
abbreviation or an initial, or as an ellipsis; CJK full stops (``。！？；``) end one wherever they
stand.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from summarizer.language import CJK_CHAR, count_words, has_cjk

# Tokens that end with a period without ending a sentence. Lower-cased, without the final period.
ABBREVIATIONS = frozenset(
    """
    e.g i.e cf vs etc al approx resp viz ca esp incl mr mrs ms dr prof st jr sr rev gen col lt sgt inc
    ltd co corp dept univ jan feb mar apr jun jul aug sep sept oct nov dec mon tue wed thu fri sat sun
    u.s u.k a.m p.m ph.d eg ie
    """.split()
)
# Abbreviations that may well end a sentence when the next word is capitalised.
_MAY_END = frozenset({"etc", "al", "co", "inc", "ltd", "corp"})
# Abbreviations only when a number follows ("see fig. 3"); otherwise ordinary words ("say no.").
_BEFORE_NUMBER = frozenset({"no", "nos", "fig", "figs", "eq", "eqs", "sec", "vol", "pp", "ch", "art", "ref"})

# Full-width sentence ends: no space follows them in Chinese or Japanese.
_CJK_ENDS = "。！？；｡"
# Characters that need no space beside them in running CJK text.
_CJK_EDGE = re.compile(r"[。！？；｡，、：「」『』（）【】〔〕《》〈〉]|" + CJK_CHAR.pattern)
# End punctuation, then what may close after it: 'He said "stop."' and '(See below.)' are complete.
_TERMINATED = re.compile(r"""[.!?…。！？；｡．]["'”’»)\]}」』）］】〕》〉]*$""")
# Opening marks and the marks that close them; a straight double quote closes itself.
_PAIRS = {
    '"': '"',
    "(": ")",
    "[": "]",
    "{": "}",
    "“": "”",
    "„": "“",
    "«": "»",
    "「": "」",
    "『": "』",
    "（": "）",
    "［": "］",
    "｛": "｝",
    "【": "】",
    "〔": "〕",
    "《": "》",
    "〈": "〉",
}
_BRACKET = re.compile("[" + re.escape("".join({*_PAIRS, *_PAIRS.values()})) + "]")
# A pair of brackets further apart than this is a stray pair, not a parenthesis, and protects nothing.
_MAX_BRACKET_CHARS = 600
# A candidate end: a run of end punctuation, the quotes and brackets that close with it, the spaces.
_BOUNDARY = re.compile(r"""([.!?…。！？；｡．]+)(["'”’»)\]}」』）］】〕》〉]*)(\s*)""")
_OPENING = "\"'“‘„«([{「『（［【〔《〈*"
# How far back to look for the word before a full stop; no abbreviation is longer.
_WORD_BEFORE_CHARS = 64

# A paragraph that opens in the middle of a sentence: the rest of one whose start was dropped.
_CONTINUATION = re.compile(
    r"(?:and|or|but|nor|so|then|than|to|of|for|with|by|in|on|as|at|from|which|that|who|whose|where|when|"
    r"while|whereas|because|since|if|unless|although|though|i\.e\.|e\.g\.)\s"
)
# Below this share of letters among its visible characters a "sentence" is code, data or numbers.
_PROSE_LETTERS = 0.6
_CODE_START = re.compile(r"""(?:#|//|>>>|\$ |[\w.\[\]'"]+\s*[-+*/|&]?=\s)""")

_FENCE = re.compile(r"^\s*(```|~~~)")
_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_UNDERLINE = re.compile(r"^\s*([=\-~^\"'`#*+:.<>_])\1{2,}\s*$")
_BULLET = re.compile(
    r"^\s*(?:[-*+•‣◦·]|\d{1,3}[.)、]|\(?[a-zA-Z#][.)]|\(\d{1,3}\)|[（(]?[一二三四五六七八九十]+[、.)）])\s*"
)
_BULLET_NEEDS_SPACE = re.compile(r"^\s*(?:[-*+•‣◦·]|\d{1,3}[.)]|\(?[a-zA-Z#][.)]|\(\d{1,3}\))\S")
_CHECKBOX = re.compile(r"^\s*\[[ xX]\]\s+")
_QUOTE_MARK = re.compile(r"^\s{0,3}>(?!>>)\s?")
_DIRECTIVE = re.compile(r"^\s*\.\.\s+([\w-]+)::(.*)$")
_COMMENT_OR_TARGET = re.compile(r"^\s*\.\.(\s|$)")
_TABLE = re.compile(r"^\s*(\+[-=+]{3,}\+?|\|.*\|\s*$|={3,}(\s+={3,})+\s*$|\|?\s*:?-{3,}:?\s*\|)")
_FIELD = re.compile(r"^:[\w -]+:\s")
# A block that starts at a shell or REPL prompt, or most of whose lines end as code lines do, is code.
_PROMPT = re.compile(r"^\s*(?:>>>|\$ |#include\b)")
_CODE_END = re.compile(r"[;{}]\s*$")
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
_INLINE_MARKUP = re.compile(
    r"`{1,2}([^`]+)`{1,2}_{0,2}|\*\*([^*]+)\*\*|(?<![\w*])\*([^*\s][^*]*)\*(?!\w)|(?<!\w)_([^_\s][^_]*)_(?!\w)"
)
_MD_LINK = re.compile(r"!?\[([^\]]+)\]\([^)]*\)")
# A bold term that opens a paragraph or item and a capital after it: "**KAS** Kubernetes API Server"
# is a definition, which reads as one with a colon.
_LEAD_TERM = re.compile(r"^\*\*([^*]*[^*\s.:!?])\*\*\s+(?=[A-Z(])")


@dataclass(frozen=True)
class Segment:
    """One sentence, heading or list-item sentence in document order.

    ``block`` numbers the paragraph (or list item) it came from; ``after_gap`` says that code, a
    table or other dropped material stood right before that block.
    """

    text: str
    block: int
    heading: bool = False
    item: bool = False
    after_gap: bool = False


@dataclass(frozen=True)
class _Block:
    text: str
    heading: bool = False
    item: bool = False
    after_gap: bool = False


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _clean_inline(text: str) -> str:
    text = _LEAD_TERM.sub(r"\1: ", text, count=1)
    text = _MD_LINK.sub(r"\1", text)
    text = _INLINE_MARKUP.sub(lambda m: next(g for g in m.groups() if g is not None), text)
    return " ".join(text.split())


def _is_code(lines: Sequence[str]) -> bool:
    if _PROMPT.match(lines[0]):
        return True
    code = sum(bool(_CODE_END.search(line)) for line in lines)
    return code >= 2 and code * 2 > len(lines)


def _bullet(line: str) -> re.Match[str] | None:
    """The list marker that starts ``line``; ASCII markers need a space after them ("-x" is no item)."""
    found = _BULLET.match(line)
    if found is None or _BULLET_NEEDS_SPACE.match(line):
        return None
    return found


def _blocks(text: str) -> list[_Block]:
    """Paragraphs, headings and list items, with code, tables and markup removed."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ").split("\n")
    # A Markdown block quote is prose like any other.
    lines = [_QUOTE_MARK.sub("", line, count=1) for line in lines]
    blocks: list[_Block] = []
    current: list[str] = []
    in_item = False
    after_gap = False

    def flush(heading: bool = False) -> None:
        nonlocal in_item, after_gap
        if current:
            joined = "" if _is_code(current) else _clean_inline(" ".join(part.strip() for part in current))
            if joined:
                blocks.append(_Block(joined, heading, in_item and not heading, after_gap))
            after_gap = not joined
            current.clear()
        in_item = False

    def skipped() -> None:
        nonlocal after_gap
        flush()
        after_gap = True

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
            skipped()
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
            skipped()
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
            if keep_body:
                flush()
            else:
                skipped()
            continue
        if _FIELD.match(stripped) and not current:
            i += 1
            continue
        bullet = _bullet(line)
        if bullet and current:
            flush()
        if current and _indent(line) > _indent(current[0]) + 3 and not in_item:
            # An indented line right under a paragraph line: a definition body or quoted block.
            flush()
        if bullet:
            in_item = True
            rest = line[bullet.end() :]
            # Nested markers on one line ("* - cell" of a list table) are markers too.
            while (inner := _bullet(rest)) is not None and inner.end() > 0:
                rest = rest[inner.end() :]
            current.append(_CHECKBOX.sub("", rest, count=1))
        else:
            current.append(line)
        if stripped.endswith("::"):
            # A literal block follows: keep the paragraph's prose, drop the indented code.
            current[-1] = current[-1].rstrip()[:-1].rstrip(":") + (":" if stripped != "::" else "")
            base = _indent(line) if not bullet else _indent(line) + 2
            skipped()
            i += 1
            while i < n and (not lines[i].strip() or _indent(lines[i]) > base):
                i += 1
            continue
        i += 1
    flush()
    return blocks


def _protected(text: str) -> list[tuple[int, int]]:
    """Outermost spans ``(open, close)`` of matched brackets and quotes, in order.

    Unmatched marks protect nothing, so a stray "(" cannot swallow the rest of a paragraph.
    """
    stack: list[tuple[str, int]] = []
    awaited: Counter[str] = Counter()  # closing marks that an opener on the stack waits for
    spans: list[tuple[int, int]] = []
    for match in _BRACKET.finditer(text):
        mark, at = match.group(), match.start()
        if awaited[mark]:
            # Pop to the matching opener: anything opened after it and never closed was stray.
            while True:
                opener, start = stack.pop()
                awaited[_PAIRS[opener]] -= 1
                if _PAIRS[opener] == mark:
                    break
            if at - start <= _MAX_BRACKET_CHARS:
                while spans and spans[-1][0] > start:
                    spans.pop()
                spans.append((start, at))
        elif mark in _PAIRS:
            stack.append((mark, at))
            awaited[_PAIRS[mark]] += 1
    return spans


def _sentence_starts(text: str, at: int) -> bool:
    """Whether a sentence can begin at ``at``: a capital, digit or caseless letter, after any opening marks."""
    end = min(len(text), at + 4)
    while at < end and text[at] in _OPENING:
        at += 1
    if at >= len(text):
        return False
    char = text[at]
    return char.isalnum() and not char.islower()


def _word_before(text: str, end: int) -> str:
    start = max(0, end - _WORD_BEFORE_CHARS)
    space = text.rfind(" ", start, end)
    return text[(space + 1 if space >= 0 else start) : end].lstrip(_OPENING).lower()


def _ends_sentence(text: str, match: re.Match[str]) -> bool:
    punct = match.group(1)
    if "…" in punct or ".." in punct:
        return False
    after = match.end()
    if any(mark in _CJK_ENDS for mark in punct):
        return after < len(text)
    if not match.group(3) and not (punct[-1] in "!?．" and after < len(text) and has_cjk(text[after])):
        return False
    if not _sentence_starts(text, after):
        return False
    if punct[-1] != ".":
        return True
    word = _word_before(text, match.start())
    if not word:
        return True
    if word in _BEFORE_NUMBER:
        return not text[after : after + 1].isdigit()
    if word in ABBREVIATIONS and word not in _MAY_END:
        return False
    if len(word) == 1 and word.isalpha():
        # An initial ("J. Smith") or a list label; sentences rarely end on one letter.
        return False
    return not re.fullmatch(r"(?:[a-z]\.)+[a-z]", word)  # "e.g" spelled as "e.g" or "u.s.a"


def _ends(text: str) -> Iterator[int]:
    """Offsets in ``text`` where one sentence ends and the next begins, in one pass."""
    spans = _protected(text)
    span = 0
    for match in _BOUNDARY.finditer(text):
        cut = match.end(2)
        while span < len(spans) and spans[span][1] < cut:
            span += 1
        if span < len(spans) and spans[span][0] < cut <= spans[span][1]:
            continue
        if _ends_sentence(text, match):
            yield match.end()


def split_paragraph(text: str) -> list[str]:
    """Split one paragraph of plain text into sentences (whitespace normalized)."""
    text = " ".join(text.split())
    sentences: list[str] = []
    start = 0
    for end in _ends(text):
        piece = text[start:end].strip()
        if piece:
            sentences.append(piece)
        start = end
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


def _terminated(text: str) -> bool:
    return _TERMINATED.search(text) is not None


def _open_ended(text: str) -> bool:
    """Ends in a colon or a list separator: unfinished on its own (a CJK "；" ends a clause, though)."""
    return text.endswith((":", "：", ",", ";", "，", "、"))


def _title_like(block: str) -> bool:
    """A short block without end punctuation: a heading the source lost its markup for."""
    if _terminated(block) or block.endswith((":", "：")):
        return False
    return count_words(block) <= (24 if has_cjk(block) else 8)


def segment(text: str) -> list[Segment]:
    """Sentences, headings and list items of ``text`` in document order, code and tables skipped.

    A short paragraph without end punctuation counts as a heading, which keeps titles such as
    "Rationale" out of summaries.
    """
    segments: list[Segment] = []
    for number, block in enumerate(_blocks(text)):
        if block.heading or (not block.item and _title_like(block.text)):
            segments.append(Segment(block.text, number, heading=True, after_gap=block.after_gap))
            continue
        segments.extend(
            Segment(sentence, number, item=block.item, after_gap=block.after_gap)
            for sentence in split_paragraph(block.text)
        )
    return segments


# -- summary units -------------------------------------------------------------------------------


def full_stop(text: str) -> str:
    """``text`` ending as a sentence: a list item or a line without end punctuation gets a full stop."""
    if _terminated(text) or _open_ended(text):
        return text
    return text + ("。" if has_cjk(text[-1]) else ".")


def _join_items(items: Sequence[str]) -> str:
    """A list as one sentence: items end in semicolons, never in commas that splice them together."""
    parts: list[str] = []
    for number, item in enumerate(items):
        if number == len(items) - 1:
            parts.append(full_stop(item))
        elif _terminated(item) or item.endswith((";", "；", ":", "：")):
            parts.append(item)
        else:
            bare = item.rstrip(",，、")
            parts.append(bare + ("；" if has_cjk(bare[-1]) else ";"))
    return _join(parts)


def _join(parts: Sequence[str]) -> str:
    """Pieces of text run together: a space between them, none between CJK sentences."""
    out: list[str] = []
    for part in parts:
        if out and not (_CJK_EDGE.match(out[-1][-1]) and _CJK_EDGE.match(part[0])):
            out.append(" ")
        out.append(part)
    return "".join(out)


def _balanced(text: str) -> bool:
    """Every bracket closes within the text; a sentence ending mid-parenthesis is a fragment."""
    depth = 0
    for char in text:
        if char in "([（［【":
            depth += 1
        elif char in ")]）］】":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def _prose(text: str) -> bool:
    """Prose, not code or data that slipped through: mostly letters, no comment or assignment start."""
    visible = [char for char in text if not char.isspace()]
    letters = sum(char.isalpha() for char in visible)
    return letters >= _PROSE_LETTERS * len(visible) and _CODE_START.match(text) is None


def _sentence(text: str) -> bool:
    """Fit to stand in a summary: prose, brackets closed, not ending in a colon or comma."""
    return not _open_ended(text) and _balanced(text) and _prose(text)


def _standalone(text: str) -> bool:
    """A list item sentence that reads as a sentence on its own: not a title-like fragment."""
    return _sentence(text) and not _title_like(text)


def _list_end(segments: Sequence[Segment], start: int) -> int:
    """The index after the list whose first item sentence is ``segments[start]``."""
    end = start + 1
    while end < len(segments) and segments[end].item and not segments[end].after_gap:
        end += 1
    return end


def _item_texts(segments: Sequence[Segment]) -> list[str]:
    """Whole list items: the sentences of each item joined again."""
    items: list[str] = []
    block = -1
    for part in segments:
        if part.block == block:
            items[-1] += " " + part.text
        else:
            items.append(part.text)
            block = part.block
    return items


def summary_units(segments: Sequence[Segment], *, max_words: int | None = None) -> list[Segment]:
    """What a summary may be made of, in document order: whole sentences that stand on their own.

    Headings are left out. A sentence ending in a colon comes only together with what it introduces:
    the list right after it, joined into one unit of at most ``max_words`` words. Otherwise (the list
    is too long, or what it introduced was code, now dropped) the colon sentence is left out. List
    items that are fragments ("Barry Warsaw") stand only inside such a unit; other item sentences
    are units of their own. Sentences with unbalanced brackets, paragraphs that open mid-sentence
    ("to use for such votes.") and code or data that slipped through are left out as fragments.

    With ``max_words=None`` only headings are left out: the units of a document short enough to be
    its own summary, fragment lists joined like introduced ones.
    """
    whole = max_words is None
    units: list[Segment] = []
    i = 0
    while i < len(segments):
        current = segments[i]
        if current.heading:
            i += 1
            continue
        after = i + 1
        if (
            current.text.endswith((":", "："))
            and after < len(segments)
            and segments[after].item
            and not segments[after].after_gap
            and segments[after].block != current.block
        ):
            end = _list_end(segments, after)
            text = _join([current.text, _join_items(_item_texts(segments[after:end]))])
            if max_words is None or (count_words(text) <= max_words and _sentence(text)):
                units.append(Segment(text, current.block, item=current.item))
                i = end
                continue
        if current.item:
            end = _list_end(segments, i)
            items = segments[i:end]
            if whole and not any(_standalone(part.text) for part in items):
                units.append(Segment(_join_items(_item_texts(items)), current.block, item=True))
            else:
                units.extend(part for part in items if whole or _standalone(part.text))
            i = end
            continue
        if whole or (_sentence(current.text) and not _CONTINUATION.match(current.text)):
            units.append(current)
        i += 1
    return units


def join_units(texts: Sequence[str], *, close_last: bool = True) -> str:
    """Unit texts as running text, none glued to the next for want of a full stop."""
    return _join(
        [full_stop(text) if close_last or n < len(texts) - 1 else text for n, text in enumerate(texts)]
    )
