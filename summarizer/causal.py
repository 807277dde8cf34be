"""Summaries from a local decoder-only instruct model (Llama, Qwen2, Mistral, Phi, ...).

The document goes into the prompt template of the settings, rendered with the tokenizer's own chat
template. Prompts are batched with left padding under a token budget that counts the answer too;
decoding is greedy unless a request asks for a temperature, and then each row samples from its own
generator seeded from its prompt, so a retry, alone or in any batch, writes the same summary.

A document longer than the context (prompt and answer included) is never truncated: it is cut on
sentence boundaries into chunks that fit, each chunk is summarized, and the joined chunk summaries
are summarized again, level by level, until they fit one prompt (map-reduce).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from summarizer.batching import token_batches
from summarizer.chunking import chunk_units
from summarizer.errors import (
    CanceledError,
    InvalidDocumentError,
    SummarizationFailedError,
    SummarizerConfigError,
    SummarizerError,
)
from summarizer.extractive import check_text
from summarizer.language import detect_language
from summarizer.params import answer_ceiling, causal_context, causal_validator
from summarizer.prompts import TEXT_SENTINEL, check_prompt, clean_answer, messages
from summarizer.runtime import hash_weights, oom_as_retryable, resolve_device, set_threads
from summarizer.settings import SummarizerSettings
from summarizer.types import (
    CancelCheck,
    ModelInfo,
    ProgressCallback,
    Summarizer,
    SummaryParams,
    SummaryResult,
    broadcast_params,
    settings_digest,
)

log = logging.getLogger(__name__)

CAUSAL_BACKENDS = ("torch-fp32", "torch-int8", "torch-fp16", "torch-bf16", "torch-8bit", "torch-4bit")
_CUDA_ONLY = {"torch-fp16", "torch-bf16", "torch-8bit", "torch-4bit"}
# A reduce level must shrink its input, so chunk summaries get at most this share of a chunk.
_REDUCE_SHARE = 0.5
_MAX_LEVELS = 12
# Chunks must hold some document after the prompt and the answer, or map-reduce cannot converge.
_MIN_CHUNK_TOKENS = 16
# Where a chunk may end: after a sentence's end punctuation or at a blank line.
_BOUNDARY = re.compile(r"(?<=[.!?\u3002\uff01\uff1f])\s+|\n\s*\n|(?<=[\u3002\uff01\uff1f])")
# peft's name for "no adapter" in a mixed-adapter batch.
_BASE = "__base__"
#: How rows with different adapters share a batch. Measured with `python -m benchmarks llm --quick`
#: (random Llama, hidden 256 x 4 layers, 16 prompts over 2 adapters and the base model, CPU, one
#: thread): one mixed batch through peft's ``adapter_names`` wrote 293 tokens/s, one batch per
#: adapter 144 (2.03x; 1.4-1.8x in earlier runs, hidden 512 included), with the same bytes: the
#: base model's work, most of it, is shared by every row, and each group would run its own loop.
MIXED_ADAPTER_BATCHES = True
#: The attention implementation an instruct model runs with when transformers picks SDPA for it:
#: the same SDPA attention, with the mask of a left-padded batch built in three tensor operations.
#: transformers builds that mask through ``torch.func.vmap`` on every decoding step, 3-5 ms of
#: Python per step (0.1 ms here) whatever the model's size; a single prompt has no padding and
#: skips it, so the cost fell on batches alone. Side by side in `python -m benchmarks llm --quick`
#: (random Llama, hidden 256 x 4 layers, 16 prompts, one thread): 1.41x the batched tokens/s, same
#: summaries.
PADDED_SDPA = "condense_padded_sdpa"


def hash_files(directory: Path) -> str:
    """SHA-256 over every file of ``directory`` (relative name and bytes): an adapter's identity."""
    digest = hashlib.sha256()
    files = sorted(path for path in directory.rglob("*") if path.is_file())
    if not files:
        raise SummarizerConfigError(f"adapter directory {directory} is empty")
    for path in files:
        digest.update(str(path.relative_to(directory)).encode())
        digest.update(b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _padded_causal_mask(
    batch_size: int,
    cache_position: Any,
    kv_length: int,
    kv_offset: int = 0,
    mask_function: Any = None,
    attention_mask: Any = None,
    **kwargs: Any,
) -> Any:
    """transformers' SDPA mask (``masking_utils.sdpa_mask``), built directly for a padded causal batch.

    The mask is (batch, 1, query, key), True where a query position may attend a key: at or before
    it (causal) and not padding. Every other case (no padding, where SDPA's own causal path needs
    no mask; sliding windows; extra mask functions) goes to transformers as before.
    """
    import torch
    from transformers.masking_utils import causal_mask_function, prepare_padding_mask, sdpa_mask

    if mask_function is None:
        mask_function = causal_mask_function
    if mask_function is causal_mask_function and attention_mask is not None:
        padding = prepare_padding_mask(attention_mask, kv_length, kv_offset)
        if padding is not None and not bool(padding.all()):
            keys = torch.arange(kv_length, device=cache_position.device) + kv_offset
            causal = keys[None, :] <= cache_position[:, None]
            return causal[None, None, :, :] & padding[:, None, None, :].bool()
    return sdpa_mask(
        batch_size=batch_size,
        cache_position=cache_position,
        kv_length=kv_length,
        kv_offset=kv_offset,
        mask_function=mask_function,
        attention_mask=attention_mask,
        **kwargs,
    )


@functools.cache
def _padded_sdpa() -> str:
    """Register :data:`PADDED_SDPA` with transformers (once per process) and return its name."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(PADDED_SDPA, sdpa_attention_forward)
    AttentionMaskInterface.register(PADDED_SDPA, _padded_causal_mask)
    return PADDED_SDPA


@dataclass
class _Job:
    """One document's map-reduce state."""

    index: int
    params: SummaryParams
    input_tokens: int
    language: str
    prefix: list[int]
    suffix: list[int]
    chunk_tokens: int
    chunks: list[list[int]]
    level: int = 0
    outputs: dict[int, str] = field(default_factory=dict)
    done: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        return len(self.chunks) == 1

    def total_estimate(self) -> int:
        remaining = len(self.chunks) - len(self.outputs)
        return self.done + remaining + (0 if self.final else 1)

    def max_new_tokens(self) -> int:
        limit = int(self.params.max_new_tokens or 1)
        if self.final:
            return limit
        # Intermediate summaries must leave room for their siblings in the next level.
        return max(1, min(limit, int(self.chunk_tokens * _REDUCE_SHARE)))

    def row(self, number: int) -> list[int]:
        return self.prefix + self.chunks[number] + self.suffix


class _RowSampler:
    """Per-row repetition penalty and seeded sampling as a logits processor.

    Each sampling row draws from its own generator and leaves only its draw open, so that greedy
    decoding picks it: a row's tokens depend on its prompt and seed, not on its batch mates (HF's
    own sampling draws the whole batch from one generator).
    """

    def __init__(
        self, torch: Any, rows: list[tuple[SummaryParams, int, int]], width: int, device: str
    ) -> None:
        self.torch = torch
        self.width = width
        self.specs: list[tuple[float, float, float, Any, int]] = []
        for params, seed, length in rows:
            temperature = float(params.temperature or 0.0)
            generator = None
            if temperature > 0:
                generator = torch.Generator(device=device)
                generator.manual_seed(seed)
            self.specs.append(
                (
                    temperature,
                    float(params.top_p or 1.0),
                    float(params.repetition_penalty or 1.0),
                    generator,
                    width - length,
                )
            )

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        torch = self.torch
        scores = scores.clone()
        for row, (temperature, top_p, penalty, generator, start) in enumerate(self.specs):
            if penalty != 1.0:
                seen = input_ids[row, start:]
                picked = scores[row].gather(0, seen)
                picked = torch.where(picked < 0, picked * penalty, picked / penalty)
                scores[row].scatter_(0, seen, picked)
            if generator is None:
                continue
            probs = torch.softmax(scores[row].float() / temperature, dim=-1)
            if top_p < 1.0:
                ordered, order = torch.sort(probs, descending=True)
                before = torch.cumsum(ordered, dim=-1) - ordered
                ordered = torch.where(before < top_p, ordered, torch.zeros_like(ordered))
                probs = torch.zeros_like(probs).scatter_(0, order, ordered)
            token = torch.multinomial(probs, 1, generator=generator)
            scores[row].fill_(float("-inf"))
            scores[row, token] = 0.0
        return scores


class _StopStrings:
    """Stops each row once its answer contains one of its stop strings (cut again when cleaned)."""

    def __init__(self, tokenizer: Any, stops: list[list[str]], width: int) -> None:
        self.tokenizer = tokenizer
        self.stops = stops
        self.width = width

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for row, stops in enumerate(self.stops):
            if stops:
                text = self.tokenizer.decode(input_ids[row, self.width :], skip_special_tokens=True)
                done[row] = any(stop in text for stop in stops)
        return done


class CausalLMSummarizer(Summarizer):
    """A decoder-only instruct checkpoint behind the :class:`Summarizer` interface."""

    def __init__(self, settings: SummarizerSettings, model_dir: Path) -> None:
        import torch
        from transformers import AutoConfig, AutoTokenizer

        set_threads(settings.num_threads)
        self.torch = torch
        self.settings = settings
        self.device = resolve_device(settings.device)
        backend = settings.backend
        if backend == "auto":
            backend = "torch-fp16" if self.device == "cuda" else "torch-int8"
        if backend not in CAUSAL_BACKENDS:
            raise SummarizerConfigError(
                f"backend {backend} is not available for instruct models; use one of {', '.join(CAUSAL_BACKENDS)}"
            )
        if backend in _CUDA_ONLY and self.device != "cuda":
            raise SummarizerConfigError(
                f"backend {backend} needs CUDA; on the CPU use torch-int8 or torch-fp32"
            )
        if backend == "torch-int8" and self.device != "cpu":
            raise SummarizerConfigError("backend torch-int8 runs on the CPU only; use torch-8bit on CUDA")
        check_prompt(settings.prompt)
        sha = hash_weights(model_dir)
        self.config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True, padding_side="left")
        if not getattr(self.tokenizer, "chat_template", None):
            raise SummarizerConfigError(
                f"summarizer.model: {model_dir} has no chat template; instruct models need one"
            )
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.adapter_dirs = {name: Path(path).expanduser() for name, path in settings.adapters.items()}
        for name, directory in self.adapter_dirs.items():
            if not (directory / "adapter_config.json").is_file():
                raise SummarizerConfigError(
                    f"summarizer.adapters.{name}: {directory} is not a LoRA adapter directory (no adapter_config.json)"
                )
        self._adapter_sha = {name: hash_files(directory) for name, directory in self.adapter_dirs.items()}
        self.model, quantization = self._load_model(model_dir, backend)
        self.eos_ids = self._end_tokens()
        self.context_tokens = causal_context(self.config, settings.max_context_tokens)
        name = getattr(self.config, "_name_or_path", "") or model_dir.name
        self.validator = causal_validator(settings, name, self.context_tokens)
        self.max_batch_tokens = settings.max_batch_tokens
        self.overlap_tokens = settings.chunk_overlap_tokens
        self.mixed_adapter_batches = MIXED_ADAPTER_BATCHES
        self._parts: dict[tuple[int, str], tuple[list[int], list[int]]] = {}
        prefix, suffix = self._prompt_parts(settings.default_max_words, "en")
        room = self.context_tokens - len(prefix) - len(suffix) - answer_ceiling(self.context_tokens)
        if room < _MIN_CHUNK_TOKENS:
            raise SummarizerConfigError(
                f"the prompt takes {len(prefix) + len(suffix)} of the model's {self.context_tokens} context"
                " tokens and leaves no room for the document; shorten summarizer.prompt"
            )
        self.info = ModelInfo(
            name=name,
            sha256=sha,
            backend=backend,
            quantization=quantization,
            kind="causal",
            device=self.device,
            settings_sha256=settings_digest(settings.prompt),
        )

    # -- loading -------------------------------------------------------------------------------

    def _load_model(self, model_dir: Path, backend: str) -> tuple[Any, str]:
        torch = self.torch
        from transformers import AutoModelForCausalLM

        kwargs: dict[str, Any] = {"local_files_only": True}
        quantization = {"torch-fp16": "fp16", "torch-bf16": "bf16"}.get(backend, "none")
        if backend in {"torch-8bit", "torch-4bit"}:
            kwargs["quantization_config"] = self._bnb_config(backend)
            kwargs["device_map"] = {"": 0}
            quantization = "bnb-int8" if backend == "torch-8bit" else "bnb-nf4"
        else:
            kwargs["dtype"] = {"torch-fp16": torch.float16, "torch-bf16": torch.bfloat16}.get(
                backend, torch.float32
            )
        model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs).eval()
        if getattr(model.config, "_attn_implementation", None) == "sdpa":
            model.set_attn_implementation(_padded_sdpa())
        if self.adapter_dirs:
            model = self._attach_adapters(model)
        if backend == "torch-int8":
            # LoRA's own small matrices stay in float: peft reads their weights' dtype.
            targets = {
                name
                for name, module in model.named_modules()
                if isinstance(module, torch.nn.Linear) and "lora_" not in name
            }
            model = torch.ao.quantization.quantize_dynamic(model, targets, dtype=torch.qint8)
            quantization = "dynamic-int8"
        if "device_map" not in kwargs:
            model = model.to(self.device)
        return model, quantization

    def _end_tokens(self) -> list[int]:
        """Every id that ends an answer: the tokenizer's end token and those the checkpoint lists
        (Llama 3 ends turns with <|eot_id|>, not its eos)."""
        ids: list[int] = []
        for value in (
            getattr(self.model.generation_config, "eos_token_id", None),
            self.tokenizer.eos_token_id,
        ):
            for token in value if isinstance(value, list) else [value]:
                if isinstance(token, int) and token not in ids:
                    ids.append(token)
        if not ids:
            raise SummarizerConfigError("the model names no end-of-sequence token")
        return ids

    def _bnb_config(self, backend: str) -> Any:
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is None:
            raise SummarizerConfigError(
                f"backend {backend} needs bitsandbytes: pip install 'condense[gpu]' (or bitsandbytes)"
            )
        from transformers import BitsAndBytesConfig

        if backend == "torch-8bit":
            return BitsAndBytesConfig(load_in_8bit=True)
        return BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=self.torch.float16
        )

    def _attach_adapters(self, model: Any) -> Any:
        try:
            from peft import PeftModel
        except ImportError as exc:
            raise SummarizerConfigError("summarizer.adapters needs the peft package") from exc
        names = sorted(self.adapter_dirs)
        model = PeftModel.from_pretrained(model, self.adapter_dirs[names[0]], adapter_name=names[0])
        for name in names[1:]:
            model.load_adapter(self.adapter_dirs[name], adapter_name=name)
        return model.eval()

    # -- interface -----------------------------------------------------------------------------

    @property
    def adapters(self) -> Mapping[str, str]:
        return MappingProxyType(self._adapter_sha)

    def validate_params(self, params: Mapping[str, Any] | None) -> SummaryParams:
        return self.validator.validate(params)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False).input_ids)

    # -- prompts -------------------------------------------------------------------------------

    def _prompt_parts(self, max_words: int, language: str) -> tuple[list[int], list[int]]:
        """The prompt's token ids before and after the document, for this length and language."""
        key = (max_words, language)
        if key not in self._parts:
            chat = messages(self.settings.prompt, TEXT_SENTINEL, max_words=max_words, language=language)
            try:
                rendered = self.tokenizer.apply_chat_template(
                    chat, tokenize=False, add_generation_prompt=True
                )
            except Exception:
                # Some templates (Gemma's) refuse a system role: fold it into the user message.
                folded = "\n\n".join(message["content"] for message in chat)
                rendered = self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": folded}], tokenize=False, add_generation_prompt=True
                )
            before, _, after = str(rendered).partition(TEXT_SENTINEL)
            encode = self.tokenizer
            self._parts[key] = (
                encode(before, add_special_tokens=False, verbose=False).input_ids,
                encode(after, add_special_tokens=False, verbose=False).input_ids,
            )
        return self._parts[key]

    def _units(self, text: str) -> list[list[int]]:
        """The text's token ids (tokenized once, whole) cut into sentence-sized units."""
        if not getattr(self.tokenizer, "is_fast", False):
            ids = self.tokenizer(text, add_special_tokens=False, verbose=False).input_ids
            return [ids] if ids else []
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        # A unit starts at the whitespace after a sentence: byte-level BPE tokens carry their
        # leading space, so the next sentence's first token starts there.
        cuts = [match.start() for match in _BOUNDARY.finditer(text)]
        units: list[list[int]] = [[]]
        position = 0
        for token, (start, _end) in zip(encoded.input_ids, encoded.offset_mapping, strict=True):
            if position < len(cuts) and start >= cuts[position] and units[-1]:
                units.append([])
            while position < len(cuts) and start >= cuts[position]:
                position += 1
            units[-1].append(token)
        return [unit for unit in units if unit]

    # -- map-reduce ----------------------------------------------------------------------------

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
                jobs[index] = self._job(index, text, doc_params)
            except SummarizerError as exc:
                results[index] = exc
                continue
            jobs[index].timings["tokenize_s"] = time.perf_counter() - began

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

    def _job(self, index: int, text: str, params: SummaryParams) -> _Job:
        units = self._units(text)
        if not units:
            raise InvalidDocumentError("document has no text the model can read")
        language = detect_language(text)
        prefix, suffix = self._prompt_parts(
            int(params.max_words or self.settings.default_max_words), language
        )
        max_new = int(params.max_new_tokens or 1)
        chunk_tokens = self.context_tokens - len(prefix) - len(suffix) - max_new
        if chunk_tokens < _MIN_CHUNK_TOKENS:
            raise SummarizationFailedError(
                f"the prompt and an answer of {max_new} tokens leave no room for the document in the"
                f" model's {self.context_tokens}-token context"
            )
        return _Job(
            index=index,
            params=params,
            input_tokens=sum(len(unit) for unit in units),
            language=language,
            prefix=prefix,
            suffix=suffix,
            chunk_tokens=chunk_tokens,
            chunks=chunk_units(units, chunk_tokens, self.overlap_tokens),
        )

    def _run_level(
        self,
        jobs: dict[int, _Job],
        results: list[SummaryResult | SummarizerError | None],
        on_progress: ProgressCallback | None,
        should_cancel: CancelCheck | None,
    ) -> None:
        groups: dict[tuple[int, str | None], list[tuple[int, int]]] = {}
        for index, job in jobs.items():
            adapter = None if self.mixed_adapter_batches else job.params.adapter
            key = (job.max_new_tokens(), adapter)
            groups.setdefault(key, []).extend((index, number) for number in range(len(job.chunks)))
        for (max_new, _adapter), items in sorted(
            groups.items(), key=lambda item: (item[0][0], item[0][1] or "")
        ):
            lengths = [len(jobs[i].row(n)) for i, n in items]
            for batch in token_batches(lengths, self.max_batch_tokens, extra_per_row=max_new, max_rows=64):
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
                for (index, number), text in self._generate_safely(jobs, live, max_new, results):
                    job = jobs[index]
                    job.outputs[number] = text
                    job.done += 1
                    if on_progress is not None:
                        on_progress(index, job.done, job.total_estimate())

    def _generate_safely(
        self,
        jobs: dict[int, _Job],
        live: list[tuple[int, int]],
        max_new: int,
        results: list[SummaryResult | SummarizerError | None],
    ) -> list[tuple[tuple[int, int], str]]:
        began = time.perf_counter()
        try:
            with oom_as_retryable():
                texts = self._generate([(jobs[i], n) for i, n in live], max_new)
        except SummarizerError:
            raise
        except Exception as exc:
            if len(live) == 1:
                results[live[0][0]] = SummarizationFailedError(
                    f"generation failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                )
                return []
            # Find the culprit: one bad document must not fail its batch mates.
            out: list[tuple[tuple[int, int], str]] = []
            for item in live:
                if results[item[0]] is None:
                    out.extend(self._generate_safely(jobs, [item], max_new, results))
            return out
        share = (time.perf_counter() - began) / len(live)
        for index, _number in live:
            timings = jobs[index].timings
            timings["generate_s"] = timings.get("generate_s", 0.0) + share
        return list(zip(live, texts, strict=True))

    def _generate(self, rows: Sequence[tuple[_Job, int]], max_new: int) -> list[str]:
        """Answers for ``rows`` (a job and its chunk number) in one left-padded batch."""
        torch = self.torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        ids = [job.row(number) for job, number in rows]
        width = max(len(row) for row in ids)
        pad = int(self.tokenizer.pad_token_id)
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(ids), width), dtype=torch.long)
        for number, row in enumerate(ids):
            input_ids[number, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            attention_mask[number, width - len(row) :] = 1
        specs = []
        for (job, _number), row in zip(rows, ids, strict=True):
            seed = int.from_bytes(hashlib.sha256(str(row).encode()).digest()[:8], "big") & (2**63 - 1)
            specs.append((job.params, seed, len(row)))
        # A config of our own, with the model's defaults off: checkpoints ship sampling defaults
        # (do_sample, top_k, a batch-wide repetition penalty that also hits padding) that generate
        # would otherwise fill in, and rows would then depend on their batch and the global RNG.
        config = GenerationConfig(
            max_new_tokens=max_new,
            do_sample=False,
            num_beams=1,
            pad_token_id=pad,
            eos_token_id=self.eos_ids,
            bos_token_id=getattr(self.model.generation_config, "bos_token_id", None),
        )
        kwargs: dict[str, Any] = {"generation_config": config, "use_model_defaults": False}
        if any(job.params.temperature or (job.params.repetition_penalty or 1.0) != 1.0 for job, _ in rows):
            kwargs["logits_processor"] = LogitsProcessorList([_RowSampler(torch, specs, width, self.device)])
        stops = [list(job.params.stop or ()) for job, _number in rows]
        if any(stops):
            kwargs["stopping_criteria"] = StoppingCriteriaList([_StopStrings(self.tokenizer, stops, width)])
        adapters = [job.params.adapter for job, _number in rows]
        with torch.inference_mode():
            if not self.adapter_dirs:
                output = self.model.generate(
                    input_ids=input_ids.to(self.device),
                    attention_mask=attention_mask.to(self.device),
                    **kwargs,
                )
            elif self.mixed_adapter_batches:
                output = self.model.generate(
                    input_ids=input_ids.to(self.device),
                    attention_mask=attention_mask.to(self.device),
                    adapter_names=[name or _BASE for name in adapters],
                    **kwargs,
                )
            else:
                output = self._generate_one_adapter(adapters[0], input_ids, attention_mask, kwargs)
        answers = self.tokenizer.batch_decode(output[:, width:], skip_special_tokens=True)
        return [
            clean_answer(answer, stop=job.params.stop)
            for answer, (job, _number) in zip(answers, rows, strict=True)
        ]

    def _generate_one_adapter(
        self, adapter: str | None, input_ids: Any, attention_mask: Any, kwargs: dict[str, Any]
    ) -> Any:
        inputs = {"input_ids": input_ids.to(self.device), "attention_mask": attention_mask.to(self.device)}
        if adapter is None:
            with self.model.disable_adapter():
                return self.model.generate(**inputs, **kwargs)
        self.model.set_adapter(adapter)
        return self.model.generate(**inputs, **kwargs)

    def _next_level(self, job: _Job) -> None:
        """Join this level's chunk summaries and chunk them again for the next level."""
        began = time.perf_counter()
        joined = "\n\n".join(job.outputs[number] for number in sorted(job.outputs)).strip()
        units = self._units(joined) if joined else []
        if not units:
            units = [
                self.tokenizer(".", add_special_tokens=False).input_ids or [int(self.tokenizer.pad_token_id)]
            ]
        job.chunks = chunk_units(units, job.chunk_tokens, 0)
        job.outputs = {}
        job.level += 1
        job.timings["reduce_s"] = job.timings.get("reduce_s", 0.0) + time.perf_counter() - began

    def _result(self, job: _Job) -> SummaryResult:
        job.timings["total_s"] = sum(job.timings.values())
        info = self.info
        adapter = job.params.adapter
        if adapter is not None:
            info = dataclasses.replace(info, adapter=adapter, adapter_sha256=self._adapter_sha[adapter])
        return SummaryResult(
            summary=job.outputs[0],
            model=info,
            timings=job.timings,
            chunks=job.done,
            input_tokens=job.input_tokens,
            language=job.language,
        )
