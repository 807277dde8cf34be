"""PII detection: recall and precision per entity type on a large labelled corpus, and its cost.

The corpus is generated with Faker in four locales (tests/fixtures/pii_corpus.py): each value sits
in a sentence among dates, prices, order numbers and versions. Recall counts a planted value as
found when an entity of its type covers it; precision counts a detection as false when no planted
value of its type overlaps it. The targets are recall >= 0.98 and precision >= 0.95 per type.

The cost is measured side by side with what the gateway already does to every sync text: counting
its tokens with the model's tokenizer. The ratio is what ``mask_stored`` or ``reject`` adds.

    python -m benchmarks pii                # 300 values of each type per locale
    python -m benchmarks.pii --per-type 50  # quick
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.common import peps_documents, print_table
from common import pii
from tests.fixtures.pii_corpus import corpus, evaluate

RECALL_TARGET = 0.98
PRECISION_TARGET = 0.95


def _tokenizer():  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer

    from summarizer.loader import minilm_path

    return Tokenizer.from_file(str(Path(minilm_path()) / "tokenizer.json"))


def main(argv: list[str] | None = None) -> list[list[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--per-type", type=int, default=300, help="planted values per type and locale")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)

    docs = corpus(args.per_type, seed=args.seed)
    began = time.perf_counter()
    scores, errors = evaluate(docs)
    corpus_s = time.perf_counter() - began
    rows = [["type", "planted", "recall", "precision", f"target >= {RECALL_TARGET} / {PRECISION_TARGET}"]]
    for kind, score in sorted(scores.items(), key=lambda item: item[0].value):
        ok = score.recall >= RECALL_TARGET and score.precision >= PRECISION_TARGET
        rows.append(
            [
                kind.value,
                str(score.planted),
                f"{score.recall:.4f}",
                f"{score.precision:.4f}",
                "met" if ok else "MISSED",
            ]
        )
    print_table(f"PII detection, {len(docs)} documents in 4 locales ({corpus_s:.1f} s)", rows)
    missed = [e for e in errors if e[0] == "missed"][:5]
    for _, kind, text in missed:
        print(f"  missed {kind}: {text[:160]}")

    texts = peps_documents(40)
    size_mb = sum(len(t.encode()) for t in texts) / 1e6
    tokenizer = _tokenizer()
    began = time.perf_counter()
    for text in texts:
        tokenizer.encode(text, add_special_tokens=False)
    tokenize_s = time.perf_counter() - began
    began = time.perf_counter()
    for text in texts:
        pii.mask(text)
    mask_s = time.perf_counter() - began
    cost = [
        ["step", "seconds", "MB/s", "ratio to counting tokens"],
        ["count tokens (MiniLM tokenizer)", f"{tokenize_s:.3f}", f"{size_mb / tokenize_s:.2f}", "1.0"],
        [
            "pii.mask (find + replace)",
            f"{mask_s:.3f}",
            f"{size_mb / mask_s:.2f}",
            f"{mask_s / tokenize_s:.1f}",
        ],
    ]
    print_table(f"Cost on {len(texts)} long documents ({size_mb:.2f} MB)", cost)
    return rows


if __name__ == "__main__":
    main()
