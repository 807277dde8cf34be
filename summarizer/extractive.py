"""The default extractive model: MiniLM sentence embeddings, then sentence selection.

Every sentence of a document is embedded, however long the document: sentences of all documents in
a call are pooled, sorted by length and embedded in token-budget batches, and a sentence longer than
the encoder's limit is embedded in pieces whose mean stands for it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from summarizer.batching import token_batches
from summarizer.encoder import SentenceEncoder, normalize
from summarizer.errors import CanceledError, InvalidDocumentError, SummarizerError
from summarizer.language import detect_language
from summarizer.runtime import hash_weights, resolve_device, set_threads
from summarizer.segment import Segment, segment, summary_units
from summarizer.select import SelectionConfig, section_numbers, summarize_units
from summarizer.settings import SummarizerSettings
from summarizer.types import (
    CancelCheck,
    ModelInfo,
    ProgressCallback,
    Summarizer,
    SummaryParams,
    SummaryResult,
    broadcast_params,
    parse_params,
    settings_digest,
)

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
# On CPU, large batches spill the caches and run slower, not faster (measured: 16k-token batches
# took twice as long per sentence as 1k-token ones, on both int8 and fp32; 512-token batches were
# slower again, 1.95x against 2.4x over one document at a time), so the settings' budget, sized
# for GPUs, is capped here.
CPU_BATCH_TOKENS = 1_024


def check_text(doc: object) -> str:
    """The document as clean text, or :class:`InvalidDocumentError`."""
    if isinstance(doc, bytes | bytearray):
        try:
            doc = bytes(doc).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidDocumentError(f"document is not valid UTF-8 (byte {exc.start})") from exc
    if not isinstance(doc, str):
        raise InvalidDocumentError(f"document must be text, not {type(doc).__name__}")
    try:
        doc.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidDocumentError(f"document holds an undecodable character at offset {exc.start}") from exc
    if "\x00" in doc:
        raise InvalidDocumentError("document holds NUL bytes; it looks binary, not text")
    if not doc.strip():
        raise InvalidDocumentError("document is empty")
    return doc


@dataclass
class _Doc:
    index: int
    params: SummaryParams
    sentences: list[Segment]
    tokens: list[list[int]]
    vectors: np.ndarray
    weights: np.ndarray
    # The document's own text as summary units: its summary when it fits the budget.
    whole: list[str]
    language: str
    # The number of the section each sentence is in (headings before it), for the section prior.
    sections: list[int] = field(default_factory=list)
    batches_total: int = 0
    batches_done: int = 0
    timings: dict[str, float] = field(default_factory=dict)


class ExtractiveSummarizer(Summarizer):
    """Extractive summaries from a sentence encoder; built by :func:`summarizer.load_summarizer`."""

    def __init__(self, settings: SummarizerSettings, model_dir: Path, *, name: str = MODEL_NAME) -> None:
        set_threads(settings.num_threads)
        device = resolve_device(settings.device)
        backend = settings.backend
        if backend == "auto":
            backend = "onnx-int8" if device == "cpu" else "torch-fp16"
        sha = hash_weights(model_dir)
        self.encoder = SentenceEncoder(
            model_dir,
            backend=backend,
            device=device,
            weights_sha256=sha,
            cache_root=Path(settings.cache_dir),
            num_threads=settings.num_threads,
        )
        load = self.encoder.load
        #: Directory of the exported ONNX model (None for torch) and whether this load created it.
        self.cache_path = load.cache_dir
        self.exported_now = load.exported_now
        self.info = ModelInfo(
            name=name,
            sha256=sha,
            backend=load.backend,
            quantization=load.quantization,
            kind="extractive",
            device=load.device,
            settings_sha256=settings_digest(settings.selection),
        )
        self.max_batch_tokens = (
            min(settings.max_batch_tokens, CPU_BATCH_TOKENS)
            if load.device == "cpu"
            else settings.max_batch_tokens
        )
        self.defaults: dict[str, Any] = {"max_words": settings.default_max_words}
        self.selection = SelectionConfig(**settings.selection.model_dump())

    def validate_params(self, params: Mapping[str, Any] | None) -> SummaryParams:
        return parse_params(params, kind="extractive", model_name=self.info.name, defaults=self.defaults)

    def count_tokens(self, text: str) -> int:
        return self.encoder.count_tokens(text)

    def unknown_token_share(self, text: str) -> float | None:
        unk = self.encoder.tokenizer.token_to_id("[UNK]")
        if unk is None:
            return None
        ids = self.encoder.tokenizer.encode(text, add_special_tokens=False).ids
        return sum(1 for i in ids if i == unk) / len(ids) if ids else 0.0

    # -- the batch ---------------------------------------------------------------------------

    def _prepare(self, index: int, doc: str, params: SummaryParams) -> _Doc:
        began = time.perf_counter()
        text = check_text(doc)
        segments = segment(text)
        whole = summary_units(segments) or segments
        # A document of fragments only (a bare list, say) still gets a summary made of them.
        sentences = summary_units(segments, max_words=self.selection.max_words) or whole
        if not sentences:
            raise InvalidDocumentError("document has no sentences (only code, tables or markup)")
        tokens = self.encoder.tokenize([item.text for item in sentences])
        kept = [(s, t) for s, t in zip(sentences, tokens, strict=True) if t]
        if not kept:
            raise InvalidDocumentError("document has no readable text")
        dim = 0
        prepared = _Doc(
            index=index,
            params=params,
            sentences=[s for s, _ in kept],
            tokens=[t for _, t in kept],
            vectors=np.zeros((len(kept), dim), dtype=np.float32),
            weights=np.zeros(len(kept), dtype=np.float32),
            whole=[unit.text for unit in whole],
            language=detect_language(text),
            sections=section_numbers([s for s, _ in kept], segments),
        )
        prepared.timings["segment_s"] = time.perf_counter() - began
        return prepared

    def summarize_batch(
        self,
        docs: Sequence[str],
        params: Sequence[SummaryParams] | SummaryParams,
        *,
        on_progress: ProgressCallback | None = None,
        should_cancel: CancelCheck | None = None,
    ) -> list[SummaryResult | SummarizerError]:
        per_doc = broadcast_params(docs, params)
        results: list[SummaryResult | SummarizerError | None] = [None] * len(docs)
        prepared: dict[int, _Doc] = {}
        for index, (doc, doc_params) in enumerate(zip(docs, per_doc, strict=True)):
            try:
                prepared[index] = self._prepare(index, doc, doc_params)
            except SummarizerError as exc:
                results[index] = exc

        # Every piece is (doc, sentence, ids) and fits the encoder; long sentences become several.
        width = self.encoder.max_tokens - 2
        pieces: list[tuple[int, int, list[int]]] = []
        for index, item in prepared.items():
            for number, ids in enumerate(item.tokens):
                pieces.extend(
                    (index, number, ids[start : start + width]) for start in range(0, len(ids), width)
                )
        batches = token_batches([len(ids) + 2 for _, _, ids in pieces], self.max_batch_tokens)
        members = [sorted({pieces[p][0] for p in batch}) for batch in batches]
        for batch_docs in members:
            for index in batch_docs:
                prepared[index].batches_total += 1

        dim: int | None = None
        canceled: set[int] = set()
        for batch, batch_docs in zip(batches, members, strict=True):
            if should_cancel is not None:
                for index in batch_docs:
                    if index not in canceled and should_cancel(index):
                        canceled.add(index)
                        results[index] = CanceledError("canceled between chunks")
            live = [p for p in batch if pieces[p][0] not in canceled]
            if not live:
                continue
            began = time.perf_counter()
            pooled, counts = self.encoder.embed([pieces[p][2] for p in live])
            elapsed = time.perf_counter() - began
            if dim is None:
                dim = pooled.shape[1]
                for item in prepared.values():
                    item.vectors = np.zeros((len(item.tokens), dim), dtype=np.float32)
            total_tokens = float(counts.sum())
            for row, p in enumerate(live):
                index, number, _ids = pieces[p]
                item = prepared[index]
                # Pieces of one sentence average, weighted by their token counts.
                item.vectors[number] += pooled[row] * counts[row]
                item.weights[number] += counts[row]
                item.timings["encode_s"] = item.timings.get("encode_s", 0.0) + float(
                    elapsed * counts[row] / total_tokens
                )
            for index in batch_docs:
                if index in canceled:
                    continue
                item = prepared[index]
                item.batches_done += 1
                if on_progress is not None:
                    on_progress(index, item.batches_done, item.batches_total)

        for index, item in prepared.items():
            if index in canceled:
                continue
            results[index] = self._finish(item)
        return [entry if entry is not None else InvalidDocumentError("not processed") for entry in results]

    def _finish(self, item: _Doc) -> SummaryResult:
        began = time.perf_counter()
        summary = summarize_units(
            [sentence.text for sentence in item.sentences],
            normalize(item.vectors / np.maximum(item.weights[:, None], 1e-9)),
            whole=item.whole,
            max_words=item.params.max_words or self.defaults["max_words"],
            max_sentences=item.params.max_sentences,
            sections=item.sections,
            config=self.selection,
        )
        item.timings["select_s"] = time.perf_counter() - began
        item.timings["total_s"] = sum(item.timings.values())
        return SummaryResult(
            summary=summary,
            model=self.info,
            timings=item.timings,
            chunks=item.batches_total,
            input_tokens=sum(len(ids) for ids in item.tokens),
            language=item.language,
        )
