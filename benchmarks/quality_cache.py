"""Embed every document's candidate sentences once, for tuning sentence selection offline.

    python -m benchmarks.quality_cache --out /tmp/condense-quality   # both shipped sets

Runs the default engine (segmentation, summary units, the int8 encoder) exactly as a summary
would, but keeps what selection starts from instead of selecting: per document the unit texts,
their embeddings and section structure, the whole-document units and the reference. One ``.npz``
per set; ``benchmarks.quality_tune`` grid-searches selection on it without running the encoder
again. The cache is a scratch file: never commit it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from summarizer import load_summarizer
from summarizer.encoder import normalize
from summarizer.evaluation import SHIPPED_SETS, load_eval_set, shipped_set
from summarizer.extractive import ExtractiveSummarizer, _Doc
from summarizer.segment import segment
from summarizer.settings import SummarizerSettings


class _Capturing(ExtractiveSummarizer):
    """The default engine, keeping each document's prepared units instead of summarizing."""

    captured: list[_Doc]

    def _finish(self, item: _Doc) -> Any:
        self.captured.append(item)
        return super()._finish(item)


def build(set_name: str, out_dir: Path, *, cache_dir: str, threads: int, limit: int | None) -> Path:
    settings = SummarizerSettings(cache_dir=cache_dir, num_threads=threads)
    engine = load_summarizer(settings)
    assert isinstance(engine, ExtractiveSummarizer)
    engine.__class__ = _Capturing
    assert isinstance(engine, _Capturing)
    docs = load_eval_set(shipped_set(set_name), limit)
    records: list[dict[str, Any]] = []
    vectors: list[np.ndarray] = []
    params = engine.validate_params({"max_words": 100})
    began = time.perf_counter()
    for start in range(0, len(docs), 8):
        batch = docs[start : start + 8]
        engine.captured = []
        engine.summarize_batch([doc.document for doc in batch], params)
        by_index = {item.index: item for item in engine.captured}
        for offset, doc in enumerate(batch):
            item = by_index[offset]
            vectors.append(normalize(item.vectors / np.maximum(item.weights[:, None], 1e-9)))
            records.append(
                {
                    "id": doc.id,
                    "reference": doc.reference,
                    "units": [s.text for s in item.sentences],
                    "blocks": [s.block for s in item.sentences],
                    "items": [s.item for s in item.sentences],
                    "headings": [[s.block, s.text] for s in segment(doc.document) if s.heading],
                    "whole": item.whole,
                }
            )
        sys.stderr.write(f"\r{set_name}: {len(records)}/{len(docs)} ({time.perf_counter() - began:.0f} s)")
    sys.stderr.write("\n")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{set_name}.npz"
    np.savez_compressed(
        path,
        meta=np.array(json.dumps(records)),
        **{f"v{n}": v for n, v in enumerate(vectors)},
    )
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "condense-quality")
    parser.add_argument("--sets", nargs="*", default=list(SHIPPED_SETS))
    parser.add_argument("--cache-dir", default="var/models", help="where exported models are cached")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    for name in args.sets:
        print(build(name, args.out, cache_dir=args.cache_dir, threads=args.threads, limit=args.limit))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
