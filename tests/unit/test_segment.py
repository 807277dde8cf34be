"""Segmentation and summary units on hand-made edge cases and on real documents (tests/data)."""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import numpy as np
import pytest

from summarizer.language import count_words
from summarizer.segment import Segment, join_units, segment, split_paragraph, summary_units
from summarizer.select import SelectionConfig, summarize_units

DATA = Path(__file__).resolve().parents[1] / "data"
CHINESE = DATA / "zh_message_queues.md"
DOCUMENTS = [
    *(DATA / name for name in ("pep-0013.txt", "pep-0237.txt", "pep-0282.txt", "kep-1281-network-proxy.md")),
    CHINESE,
]


def _units(text: str) -> list[Segment]:
    return summary_units(segment(text), max_words=SelectionConfig().max_words)


def _embed(texts: list[str]) -> np.ndarray:
    """Hashed bag-of-words vectors: a deterministic stand-in for the sentence encoder."""
    rows = np.zeros((len(texts), 256), dtype=np.float32)
    for row, text in enumerate(texts):
        for token in re.findall(r"\w+", text.lower()):
            rows[row, zlib.crc32(token.encode()) % 256] += 1.0
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-9)


def _summary(text: str, max_words: int) -> tuple[str, list[str]]:
    segments = segment(text)
    units = [unit.text for unit in summary_units(segments, max_words=SelectionConfig().max_words)]
    whole = [unit.text for unit in summary_units(segments)]
    return summarize_units(units, _embed(units), whole=whole, max_words=max_words), units


# -- splitting ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("He waited... Then he left.", ["He waited... Then he left."]),
        ("He waited… Then he left. Fine.", ["He waited… Then he left.", "Fine."]),
        ("It works (see Fig. 3. It is fast). Next.", ["It works (see Fig. 3. It is fast).", "Next."]),
        ('He said "Stop. Now." Then left.', ['He said "Stop. Now."', "Then left."]),
        ("Python 3.12.1 is out. Then v2.0. Next.", ["Python 3.12.1 is out.", "Then v2.0.", "Next."]),
        (
            "See fig. 3 for the data. The answer is no. We go.",
            ["See fig. 3 for the data.", "The answer is no.", "We go."],
        ),
        ("Use e.g. Kafka. I.e. Celery works.", ["Use e.g. Kafka.", "I.e. Celery works."]),
        ("An unclosed (paren here. It still splits.", ["An unclosed (paren here.", "It still splits."]),
        ("Visit www.python.org. It helps.", ["Visit www.python.org.", "It helps."]),
    ],
)
def test_split_keeps_ellipses_brackets_quotes_versions_and_abbreviations(
    text: str, expected: list[str]
) -> None:
    assert split_paragraph(text) == expected


def test_cjk_punctuation_and_mixed_scripts() -> None:
    text = "我们用Kafka传递任务编号。数据库保存文本！工作进程批量拉取吗？是的；然后存储结果。Workers pull batches. 完成了。"
    assert split_paragraph(text) == [
        "我们用Kafka传递任务编号。",
        "数据库保存文本！",
        "工作进程批量拉取吗？",
        "是的；",
        "然后存储结果。",
        "Workers pull batches.",
        "完成了。",
    ]
    # Quoted speech is one sentence with the one that quotes it; full-width marks too.
    assert split_paragraph("他说：「今天下雨。明天晴天。」然后走了。") == [
        "他说：「今天下雨。明天晴天。」",
        "然后走了。",
    ]
    assert split_paragraph("本当ですか？はい！分かりました．") == ["本当ですか？", "はい！", "分かりました．"]


def test_one_long_paragraph_splits_like_the_same_text_in_short_paragraphs() -> None:
    """The linear splitter gives the very sentences the paragraph-by-paragraph one gives."""
    prose: dict[int, list[str]] = {}
    for part in segment((DATA / "pep-0237.txt").read_text(encoding="utf-8")):
        if not part.heading and not part.item:
            prose.setdefault(part.block, []).append(part.text)
    # A paragraph ending in a colon runs on into the next one when the break between them is lost.
    paragraphs = [" ".join(sentences) for sentences in prose.values() if not sentences[-1].endswith(":")]
    assert len(paragraphs) > 10
    short = [s.text for s in segment("\n\n".join(paragraphs * 20))]
    long = [s.text for s in segment(" ".join(paragraphs * 20))]
    assert long == short
    assert sum(len(p.split()) for p in paragraphs * 20) > 10_000


# -- blocks: headings, lists, tables, code ----------------------------------------------------

MARKDOWN = """# Queues and workers

The 2026 term steering council consists of:

* Barry Warsaw
* Donghee Na
* Thomas Wouters

The council works like this:

- Seek consensus among contributors before acting,
- Act as a court of final appeal,
- Delegate parts of their authority.

A code sample follows:

```python
queue.put("Not. A. Sentence.")
```

| column | other |
|--------|-------|
| Cell one. | Cell two. |

    $ condense summarize file.txt

Workers pull batches from the queue. They store results in the database.

- [x] A checked box item is plain prose in the end.
"""


def test_headings_list_markers_tables_and_code_are_never_units() -> None:
    units = [unit.text for unit in _units(MARKDOWN)]
    assert "Queues and workers" not in " ".join(units)
    assert not any(
        u.startswith(("-", "*", "[x]", "|", "$")) or "Not. A." in u or "Cell one" in u for u in units
    )
    assert "Workers pull batches from the queue." in units
    assert "A checked box item is plain prose in the end." in units


def test_a_colon_sentence_comes_only_with_what_it_introduces() -> None:
    units = [unit.text for unit in _units(MARKDOWN)]
    assert "The 2026 term steering council consists of: Barry Warsaw; Donghee Na; Thomas Wouters." in units
    # Items ending in commas are joined by semicolons, never comma-spliced.
    assert (
        "The council works like this: Seek consensus among contributors before acting;"
        " Act as a court of final appeal; Delegate parts of their authority."
    ) in units
    assert not any(u.endswith(":") for u in units)  # "A code sample follows:" introduced code
    assert not any(u in ("Barry Warsaw", "Barry Warsaw.") for u in units)


def test_a_list_too_long_to_join_leaves_its_items_that_are_sentences() -> None:
    items = "\n".join(f"- Item {n} is a full sentence about queues and workers." for n in range(12))
    units = [unit.text for unit in _units(f"These are the rules:\n\n{items}\n")]
    assert units == [f"Item {n} is a full sentence about queues and workers." for n in range(12)]


def test_items_without_a_full_stop_get_one_when_they_stand_alone() -> None:
    text = "Goals\n\n- Allow isolation of the control network from the cluster network\n- Delete the tunnel code\n"
    units = [unit.text for unit in _units(text)]
    assert units == ["Allow isolation of the control network from the cluster network"]
    assert join_units(units) == "Allow isolation of the control network from the cluster network."


def test_definition_terms_read_as_definitions_and_run_on_paragraphs_are_left_out() -> None:
    text = (
        "- **KAS** Kubernetes API Server, responsible for serving the API to clients.\n\n"
        "It is granted by a vote of the core team that is open for one week.\n\n"
        "   to use for such votes.\n"
    )
    assert [unit.text for unit in _units(text)] == [
        "KAS: Kubernetes API Server, responsible for serving the API to clients.",
        "It is granted by a vote of the core team that is open for one week.",
    ]


# -- summaries of real documents ---------------------------------------------------------------


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: path.name)
def test_units_of_real_documents_are_whole_sentences(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    segments = segment(text)
    headings = {s.text for s in segments if s.heading}
    units = _units(text)
    assert len(units) > 10
    for unit in units:
        assert unit.text not in headings
        assert not unit.text.endswith((":", "：", ","))
        assert unit.text.count("(") == unit.text.count(")"), unit.text  # never starts or ends inside one
        assert unit.text[0] not in ")]}）,;.", unit.text
    assert [u.block for u in units] == sorted(u.block for u in units)


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: path.name)
@pytest.mark.parametrize("max_words", [40, 100, 250])
def test_summaries_of_real_documents_are_whole_units_in_order(path: Path, max_words: int) -> None:
    summary, units = _summary(path.read_text(encoding="utf-8"), max_words)
    assert 0 < count_words(summary) <= max_words
    # Every piece is a whole unit, and the pieces follow the document's order.
    position = 0
    rest = summary
    while rest:
        match = next((i for i in range(position, len(units)) if rest.startswith(units[i])), None)
        assert match is not None, rest[:80]
        rest = rest[len(units[match]) :].lstrip(".。 ")
        position = match + 1


def test_a_text_that_fits_the_budget_comes_back_whole() -> None:
    text = "Kafka carries ids.  The database keeps the text.\nWorkers pull batches and store results."
    summary, _ = _summary(text, 100)
    assert (
        summary == "Kafka carries ids. The database keeps the text. Workers pull batches and store results."
    )


def test_no_sentence_fits_the_budget_then_the_best_is_cut_and_marked() -> None:
    summary, _ = _summary("This single sentence has many more words than the tiny budget allows.", 5)
    assert summary == "This single sentence has many…"


def test_chinese_article_gets_whole_sentences_within_the_cjk_budget() -> None:
    text = CHINESE.read_text(encoding="utf-8")
    segments = segment(text)
    sentences = {s.text for s in segments if not s.heading}
    headings = {s.text for s in segments if s.heading}
    assert {"消息队列与批处理", "为什么需要消息队列", "小结"} <= headings
    for max_words in (60, 100, 200):
        summary, _ = _summary(text, max_words)
        pieces = re.findall(r"[^。！？；]+[。！？；]", summary)
        assert "".join(pieces) == summary  # nothing but whole sentences, no space-glued title
        assert len(pieces) >= 2
        assert all(piece in sentences for piece in pieces)
        assert max_words * 0.5 <= count_words(summary) <= max_words
