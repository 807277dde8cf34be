"""Abstractive summaries from any local Hugging Face seq2seq checkpoint (BART, T5, Pegasus, LED).

Long inputs are never truncated: a document is cut on sentence boundaries into chunks that fit the
model's context (with overlap), each chunk is summarized, and the joined chunk summaries are
summarized again, level by level, until they fit one context (map-reduce). Work of every document in
a call is batched together by a token budget, level by level.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from summarizer.batching import token_batches
from summarizer.chunking import chunk_units
from summarizer.errors import (
    CanceledError,
    InvalidDocumentError,
    InvalidParamsError,
    SummarizationFailedError,
    SummarizerConfigError,
    SummarizerError,
)
from summarizer.extractive import check_text
from summarizer.language import detect_language
from summarizer.runtime import (
    cache_key,
    cached_export,
    hash_weights,
    int8_isa,
    oom_as_retryable,
    resolve_device,
    set_threads,
)
from summarizer.segment import segment
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
)

log = logging.getLogger(__name__)

SEQ2SEQ_BACKENDS = ("torch-fp32", "torch-int8", "torch-fp16", "torch-bf16", "onnx-fp32", "onnx-int8")
# Tokenizers report this (or larger) when they know no limit.
_NO_LIMIT = 1_000_000
_FALLBACK_CONTEXT = 512
# A reduce level must shrink its input, so chunk summaries get at most this share of a context.
_REDUCE_SHARE = 0.5
_MAX_LEVELS = 12


def context_limit(tokenizer: Any, config: Any, cap: int) -> int:
    """The model's real input limit in tokens (special tokens included), capped at ``cap``."""
    candidates = [
        getattr(tokenizer, "model_max_length", None),
        getattr(config, "max_encoder_position_embeddings", None),
        getattr(config, "max_position_embeddings", None),
        getattr(config, "n_positions", None),
    ]
    known = [int(value) for value in candidates if isinstance(value, int) and 0 < value < _NO_LIMIT]
    return min(min(known) if known else _FALLBACK_CONTEXT, cap)


def target_limit(config: Any) -> int:
    """Longest output the decoder can produce (learned decoder positions bound it)."""
    for name in ("max_decoder_position_embeddings", "max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and 0 < value < _NO_LIMIT:
            return value - 2
    return 1_024


def task_prefix(config: Any) -> str:
    params = getattr(config, "task_specific_params", None) or {}
    prefix = (params.get("summarization") or {}).get("prefix")
    if prefix:
        return str(prefix)
    return "summarize: " if getattr(config, "model_type", "") in {"t5", "mt5", "umt5", "longt5"} else ""


def _export_seq2seq(source: Path, target: Path, *, quantize: str | None) -> None:
    from optimum.onnxruntime import ORTModelForSeq2SeqLM, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    model = ORTModelForSeq2SeqLM.from_pretrained(source, export=True, local_files_only=True)
    model.save_pretrained(target)
    del model
    if not quantize:
        return
    config = getattr(AutoQuantizationConfig, quantize)(is_static=False, per_channel=True)
    staging = target / "quantized"
    for onnx_file in sorted(target.glob("*.onnx")):
        ORTQuantizer.from_pretrained(target, file_name=onnx_file.name).quantize(
            save_dir=staging, quantization_config=config
        )
    # Give the quantized files the standard names so the directory loads like any export.
    for onnx_file in sorted(target.glob("*.onnx")):
        quantized = staging / f"{onnx_file.stem}_quantized.onnx"
        onnx_file.unlink()
        data = target / f"{onnx_file.name}_data"
        if data.exists():
            data.unlink()
        shutil.move(str(quantized), onnx_file)
    shutil.rmtree(staging)


@dataclass
class _Job:
    """One document's map-reduce state."""

    index: int
    params: SummaryParams
    input_tokens: int
    chunks: list[list[int]]
    level: int = 0
    outputs: dict[int, str] = field(default_factory=dict)
    done: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    language: str | None = None

    @property
    def final(self) -> bool:
        return len(self.chunks) == 1

    def total_estimate(self) -> int:
        remaining = len(self.chunks) - len(self.outputs)
        return self.done + remaining + (0 if self.final else 1)


class Seq2SeqSummarizer(Summarizer):
    """A seq2seq checkpoint behind the :class:`Summarizer` interface; see :func:`load_summarizer`."""

    def __init__(self, settings: SummarizerSettings, model_dir: Path) -> None:
        import torch
        from transformers import AutoConfig, AutoTokenizer

        set_threads(settings.num_threads)
        self.torch = torch
        self.device = resolve_device(settings.device)
        backend = settings.backend
        if backend == "auto":
            backend = "torch-fp16" if self.device == "cuda" else "torch-int8"
        if backend not in SEQ2SEQ_BACKENDS:
            raise SummarizerConfigError(f"backend {backend} is not available for seq2seq models")
        sha = hash_weights(model_dir)
        self.config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
        if not getattr(self.config, "is_encoder_decoder", False):
            raise SummarizerConfigError(
                f"summarizer.model: {model_dir} holds a {self.config.model_type} model, not an encoder-decoder"
            )
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.cache_path: Path | None = None
        self.exported_now = False
        self.model, quantization = self._load_model(model_dir, backend, sha, Path(settings.cache_dir))
        self.context_tokens = context_limit(self.tokenizer, self.config, settings.max_context_tokens)
        self.prefix_ids: list[int] = self.tokenizer(
            task_prefix(self.config), add_special_tokens=False
        ).input_ids
        self.special_prefix, self.special_suffix = self._special_tokens()
        specials = len(self.special_prefix) + len(self.special_suffix)
        self.chunk_tokens = self.context_tokens - specials - len(self.prefix_ids)
        if self.chunk_tokens < 8:
            raise SummarizerConfigError(
                f"model context of {self.context_tokens} tokens is too small to chunk"
            )
        self.max_target_tokens = min(1_024, target_limit(self.config))
        self.max_batch_tokens = settings.max_batch_tokens
        self.overlap_tokens = settings.chunk_overlap_tokens
        self.defaults: dict[str, Any] = {
            "max_new_tokens": min(settings.default_max_new_tokens, self.max_target_tokens)
        }
        self.info = ModelInfo(
            name=getattr(self.config, "_name_or_path", "") or model_dir.name,
            sha256=sha,
            backend=backend,
            quantization=quantization,
            kind="abstractive",
            device=self.device,
        )

    def _load_model(self, model_dir: Path, backend: str, sha: str, cache_root: Path) -> tuple[Any, str]:
        torch = self.torch
        if backend.startswith("onnx"):
            if self.device != "cpu":
                raise SummarizerConfigError(f"backend {backend} runs on CPU here; use torch-fp16 on CUDA")
            from optimum.onnxruntime import ORTModelForSeq2SeqLM

            isa = int8_isa() if backend == "onnx-int8" else None
            key = cache_key(sha, {"model": "seq2seq", "backend": backend, "isa": isa, "per_channel": True})
            directory, self.exported_now = cached_export(
                cache_root, key, lambda tmp: _export_seq2seq(model_dir, tmp, quantize=isa)
            )
            self.cache_path = directory
            model = ORTModelForSeq2SeqLM.from_pretrained(directory, local_files_only=True)
            return model, f"dynamic-int8-per-channel-{isa}" if isa else "none"
        from transformers import AutoModelForSeq2SeqLM

        if backend == "torch-fp16" and self.device != "cuda":
            raise SummarizerConfigError("backend torch-fp16 needs CUDA; use torch-int8 or onnx-int8 on CPU")
        dtype = {"torch-fp16": torch.float16, "torch-bf16": torch.bfloat16}.get(backend, torch.float32)
        model = AutoModelForSeq2SeqLM.from_pretrained(model_dir, local_files_only=True, dtype=dtype).eval()
        quantization = {"torch-fp16": "fp16", "torch-bf16": "bf16"}.get(backend, "none")
        if backend == "torch-int8":
            if self.device != "cpu":
                raise SummarizerConfigError("backend torch-int8 runs on CPU only; use torch-fp16 on CUDA")
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
            quantization = "dynamic-int8"
        return model.to(self.device), quantization

    def _special_tokens(self) -> tuple[list[int], list[int]]:
        """The ids the tokenizer puts before and after a text (``<s>``/``</s>``, T5's ``</s>``)."""
        bare = self.tokenizer("summary", add_special_tokens=False).input_ids
        full = self.tokenizer("summary", add_special_tokens=True).input_ids
        for start in range(len(full) - len(bare) + 1):
            if full[start : start + len(bare)] == bare:
                return full[:start], full[start + len(bare) :]
        return [], []

    # -- interface ---------------------------------------------------------------------------

    def validate_params(self, params: Mapping[str, Any] | None) -> SummaryParams:
        validated = parse_params(
            params, kind="abstractive", model_name=self.info.name, defaults=self.defaults
        )
        if validated.max_new_tokens is not None and validated.max_new_tokens > self.max_target_tokens:
            raise InvalidParamsError(
                f"parameter 'max_new_tokens': this model writes at most {self.max_target_tokens} tokens"
            )
        return validated

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False).input_ids)

    def unknown_token_share(self, text: str) -> float | None:
        unk = self.tokenizer.unk_token_id
        if unk is None:
            return None
        ids = self.tokenizer(text, add_special_tokens=False, verbose=False).input_ids
        return sum(1 for i in ids if i == unk) / len(ids) if ids else 0.0

    def _units(self, text: str) -> list[list[int]]:
        sentences = [item.text for item in segment(text)] or [text.strip()]
        return [
            ids for ids in self.tokenizer(sentences, add_special_tokens=False, verbose=False).input_ids if ids
        ]

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
        jobs: dict[int, _Job] = {}
        for index, (doc, doc_params) in enumerate(zip(docs, per_doc, strict=True)):
            began = time.perf_counter()
            try:
                text = check_text(doc)
                units = self._units(text)
                if not units:
                    raise InvalidDocumentError("document has no text the model can read")
            except SummarizerError as exc:
                results[index] = exc
                continue
            job = _Job(
                index=index,
                params=doc_params,
                input_tokens=sum(len(unit) for unit in units),
                chunks=chunk_units(units, self.chunk_tokens, self.overlap_tokens),
                language=detect_language(text),
            )
            job.timings["tokenize_s"] = time.perf_counter() - began
            jobs[index] = job

        for _level in range(_MAX_LEVELS):
            if not jobs:
                break
            self._run_level(jobs, results, on_progress, should_cancel)
            for index in list(jobs):
                job = jobs[index]
                if results[index] is not None:
                    del jobs[index]
                elif job.final:
                    results[index] = self._result(job)
                    del jobs[index]
                else:
                    self._next_level(job)
        for index in jobs:
            results[index] = SummarizationFailedError("map-reduce did not converge")
        return [
            entry if entry is not None else SummarizationFailedError("not processed") for entry in results
        ]

    # -- map-reduce --------------------------------------------------------------------------

    def _generation_kwargs(self, job: _Job) -> dict[str, Any]:
        params = job.params
        max_new = params.max_new_tokens or self.defaults["max_new_tokens"]
        if not job.final:
            # Intermediate summaries must leave room for their siblings in the next level.
            max_new = max(1, min(max_new, int(self.chunk_tokens * _REDUCE_SHARE) - 1))
        kwargs: dict[str, Any] = {"max_new_tokens": max_new}
        if params.min_length is not None:
            kwargs["min_new_tokens"] = min(params.min_length, max_new)
        for name in ("num_beams", "no_repeat_ngram_size", "length_penalty"):
            value = getattr(params, name)
            if value is not None:
                kwargs[name] = value
        return kwargs

    def _run_level(
        self,
        jobs: dict[int, _Job],
        results: list[SummaryResult | SummarizerError | None],
        on_progress: ProgressCallback | None,
        should_cancel: CancelCheck | None,
    ) -> None:
        groups: dict[tuple[tuple[str, Any], ...], list[tuple[int, int]]] = {}
        for index, job in jobs.items():
            key = tuple(sorted(self._generation_kwargs(job).items()))
            groups.setdefault(key, []).extend((index, number) for number in range(len(job.chunks)))
        for key, items in groups.items():
            kwargs = dict(key)
            lengths = [len(jobs[i].chunks[n]) + len(self.prefix_ids) + 2 for i, n in items]
            # Beams multiply the decoder's work; generated tokens count against the budget too.
            beams = int(kwargs.get("num_beams", 1))
            for batch in token_batches(
                [length * beams for length in lengths],
                self.max_batch_tokens,
                extra_per_row=kwargs["max_new_tokens"] * beams,
                max_rows=64,
            ):
                live: list[tuple[int, int]] = []
                for position in batch:
                    index, number = items[position]
                    if results[index] is not None:
                        continue
                    if should_cancel is not None and should_cancel(index):
                        results[index] = CanceledError("canceled between chunks")
                        continue
                    live.append((index, number))
                if not live:
                    continue
                for (index, number), text in self._generate_safely(jobs, live, kwargs, results):
                    job = jobs[index]
                    job.outputs[number] = text
                    job.done += 1
                    if on_progress is not None:
                        on_progress(index, job.done, job.total_estimate())

    def _generate_safely(
        self,
        jobs: dict[int, _Job],
        live: list[tuple[int, int]],
        kwargs: dict[str, Any],
        results: list[SummaryResult | SummarizerError | None],
    ) -> list[tuple[tuple[int, int], str]]:
        began = time.perf_counter()
        try:
            with oom_as_retryable():
                texts = self._generate([jobs[i].chunks[n] for i, n in live], kwargs)
        except SummarizerError:
            raise
        except Exception as exc:
            if len(live) == 1:
                index = live[0][0]
                results[index] = SummarizationFailedError(f"generation failed: {str(exc).splitlines()[0]}")
                return []
            # Find the culprit: one bad document must not fail its batch mates.
            out: list[tuple[tuple[int, int], str]] = []
            for item in live:
                if results[item[0]] is None:
                    out.extend(self._generate_safely(jobs, [item], kwargs, results))
            return out
        elapsed = time.perf_counter() - began
        share = elapsed / len(live)
        for index, _number in live:
            timings = jobs[index].timings
            timings["generate_s"] = timings.get("generate_s", 0.0) + share
        return list(zip(live, texts, strict=True))

    def _generate(self, chunks: Sequence[Sequence[int]], kwargs: dict[str, Any]) -> list[str]:
        torch = self.torch
        rows = [self.special_prefix + self.prefix_ids + list(chunk) + self.special_suffix for chunk in chunks]
        width = max(len(row) for row in rows)
        pad = int(self.tokenizer.pad_token_id)
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for number, row in enumerate(rows):
            input_ids[number, : len(row)] = torch.tensor(row, dtype=torch.long)
            attention_mask[number, : len(row)] = 1
        device = self.device if not hasattr(self.model, "providers") else "cpu"
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), **kwargs
            )
        return [text.strip() for text in self.tokenizer.batch_decode(output, skip_special_tokens=True)]

    def _next_level(self, job: _Job) -> None:
        """Join this level's chunk summaries and chunk them again for the next level."""
        began = time.perf_counter()
        summaries = [job.outputs[number] for number in sorted(job.outputs)]
        units = [
            ids for ids in self.tokenizer(summaries, add_special_tokens=False, verbose=False).input_ids if ids
        ]
        if not units:
            units = [self.tokenizer(" ", add_special_tokens=False).input_ids or [self.tokenizer.pad_token_id]]
        job.chunks = chunk_units(units, self.chunk_tokens, 0)
        job.outputs = {}
        job.level += 1
        job.timings["reduce_s"] = job.timings.get("reduce_s", 0.0) + time.perf_counter() - began

    def _result(self, job: _Job) -> SummaryResult:
        job.timings["total_s"] = sum(job.timings.values())
        return SummaryResult(
            summary=job.outputs[0],
            model=self.info,
            timings=job.timings,
            chunks=job.done,
            input_tokens=job.input_tokens,
            language=job.language,
        )
