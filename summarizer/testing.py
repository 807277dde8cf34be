"""An in-memory :class:`~summarizer.Summarizer` for other packages' unit tests.

``FakeSummarizer`` follows the real interface exactly (parameter validation, one entry per document,
progress, cancellation, error entries, :class:`OutOfMemoryError`) but needs no model: the summary of a
document is its first ``max_words`` words (extractive kind) or ``max_new_tokens`` words (abstractive
kind), so results are deterministic and instant.

Examples::

    from summarizer.testing import FakeSummarizer
    from summarizer.errors import InvalidDocumentError, SummarizerUnavailableError

    fake = FakeSummarizer()                                   # instant, extractive parameters
    fake = FakeSummarizer(kind="abstractive")                 # accepts max_new_tokens, num_beams, ...
    fake = FakeSummarizer(kind="causal", adapters={"legal": "ab" * 32})
        # instruct-model params (temperature, stop, adapter, ...); results name their adapter
    fake = FakeSummarizer(failures={"POISON": InvalidDocumentError("bad input")})
        # any document containing "POISON" gets that error entry; the others succeed
    fake = FakeSummarizer(failures={"FLAKY": SummarizerUnavailableError("try later")}, fail_times=1)
        # the first call that meets "FLAKY" fails, later ones succeed (retry paths)
    fake = FakeSummarizer(sleep_per_chunk_s=0.05, words_per_chunk=50)
        # slow, multi-chunk documents: progress and cancellation can be observed
    fake = FakeSummarizer(oom_over_docs=4)                    # batches of 5+ raise OutOfMemoryError

After a run, ``fake.calls`` holds the documents of each ``summarize_batch`` call and
``fake.progress`` every ``(doc_index, done, total)`` reported.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from summarizer.errors import (
    CanceledError,
    InvalidDocumentError,
    InvalidParamsError,
    OutOfMemoryError,
    SummarizerError,
)
from summarizer.language import detect_language
from summarizer.types import (
    CancelCheck,
    Kind,
    ModelInfo,
    ProgressCallback,
    Summarizer,
    SummaryParams,
    SummaryResult,
    broadcast_params,
    parse_params,
)


class FakeSummarizer(Summarizer):
    """Deterministic, dependency-free stand-in for a loaded model.

    Args:
        kind: ``"extractive"`` (params ``max_words``/``max_sentences``) or ``"abstractive"``
            (``max_new_tokens``, ``min_length``, ``num_beams``, ...), validated like the real models.
        failures: substring → error. A document containing the substring yields that error as its
            entry (the error instance itself, so you can compare identity); the rest of the batch runs.
        fail_times: how many batches each failure applies to; ``None`` means always.
        sleep_per_chunk_s: sleep after each chunk, to simulate slow inference.
        words_per_chunk: a document of N words counts as ``ceil(N / words_per_chunk)`` chunks for
            progress, cancellation and ``SummaryResult.chunks``.
        oom_over_docs: raise :class:`OutOfMemoryError` when a call has more documents than this.
        default_max_words / default_max_new_tokens: defaults filled by ``validate_params``.
        adapters: name -> SHA-256 of the LoRA adapters a ``"causal"`` fake accepts in ``params.adapter``.
    """

    def __init__(
        self,
        *,
        kind: Kind = "extractive",
        failures: Mapping[str, SummarizerError] | None = None,
        fail_times: int | None = None,
        sleep_per_chunk_s: float = 0.0,
        words_per_chunk: int = 400,
        oom_over_docs: int | None = None,
        default_max_words: int = 100,
        default_max_new_tokens: int = 128,
        adapters: Mapping[str, str] | None = None,
    ) -> None:
        self.kind: Kind = kind
        self.info = ModelInfo(
            name=f"fake-{kind}",
            sha256="0" * 64,
            backend="fake",
            quantization="none",
            kind=kind,
            device="cpu",
        )
        self.failures = dict(failures or {})
        self._fail_left = dict.fromkeys(self.failures, fail_times)
        self.sleep_per_chunk_s = sleep_per_chunk_s
        self.words_per_chunk = max(1, words_per_chunk)
        self.oom_over_docs = oom_over_docs
        self.defaults: dict[str, Any] = {
            "extractive": {"max_words": default_max_words},
            "abstractive": {"max_new_tokens": default_max_new_tokens},
            "causal": {"max_new_tokens": default_max_new_tokens, "max_words": default_max_words},
        }[kind]
        self._adapters = dict(adapters or {})
        self.calls: list[list[str]] = []
        self.progress: list[tuple[int, int, int]] = []
        self._lock = threading.Lock()

    @property
    def adapters(self) -> Mapping[str, str]:
        return MappingProxyType(self._adapters)

    def validate_params(self, params: Mapping[str, Any] | None) -> SummaryParams:
        validated = parse_params(params, kind=self.kind, model_name=self.info.name, defaults=self.defaults)
        if validated.adapter is not None and validated.adapter not in self._adapters:
            raise InvalidParamsError(f"parameter 'adapter': unknown adapter {validated.adapter!r}")
        return validated

    def count_tokens(self, text: str) -> int:
        """About 4/3 tokens a word, like BPE vocabularies on English prose."""
        return math.ceil(len(text.split()) * 4 / 3)

    def _failure(self, doc: str) -> SummarizerError | None:
        with self._lock:
            for marker, error in self.failures.items():
                if marker in doc:
                    left = self._fail_left[marker]
                    if left is None:
                        return error
                    if left > 0:
                        self._fail_left[marker] = left - 1
                        return error
        return None

    def summarize_batch(
        self,
        docs: Sequence[str],
        params: Sequence[SummaryParams] | SummaryParams,
        *,
        on_progress: ProgressCallback | None = None,
        should_cancel: CancelCheck | None = None,
    ) -> list[SummaryResult | SummarizerError]:
        per_doc = broadcast_params(docs, params)
        self.calls.append(list(docs))
        if self.oom_over_docs is not None and len(docs) > self.oom_over_docs:
            raise OutOfMemoryError(f"fake out of memory: {len(docs)} documents > {self.oom_over_docs}")
        results: list[SummaryResult | SummarizerError] = []
        for index, (doc, doc_params) in enumerate(zip(docs, per_doc, strict=True)):
            results.append(self._one(index, doc, doc_params, on_progress, should_cancel))
        return results

    def _one(
        self,
        index: int,
        doc: str,
        params: SummaryParams,
        on_progress: ProgressCallback | None,
        should_cancel: CancelCheck | None,
    ) -> SummaryResult | SummarizerError:
        began = time.perf_counter()
        if not isinstance(doc, str) or not doc.strip():
            return InvalidDocumentError("document is empty")
        failure = self._failure(doc)
        if failure is not None:
            return failure
        words = doc.split()
        chunks = max(1, math.ceil(len(words) / self.words_per_chunk))
        for done in range(1, chunks + 1):
            if should_cancel is not None and should_cancel(index):
                return CanceledError("canceled between chunks")
            if self.sleep_per_chunk_s:
                time.sleep(self.sleep_per_chunk_s)
            with self._lock:
                self.progress.append((index, done, chunks))
            if on_progress is not None:
                on_progress(index, done, chunks)
        limit = params.max_words if self.kind == "extractive" else params.max_new_tokens
        summary = " ".join(words[: limit or len(words)])
        elapsed = time.perf_counter() - began
        model = self.info
        if params.adapter is not None:
            model = dataclasses.replace(
                model, adapter=params.adapter, adapter_sha256=self._adapters[params.adapter]
            )
        return SummaryResult(
            summary=summary,
            model=model,
            timings={"generate_s": elapsed, "total_s": elapsed},
            chunks=chunks,
            input_tokens=self.count_tokens(doc),
            language=detect_language(doc),
        )
