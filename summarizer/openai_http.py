"""Summaries from a remote OpenAI-compatible server (vLLM, TGI, llama.cpp, a hosted API).

The same prompt template as the local instruct engine goes to ``POST /v1/chat/completions``. Long
documents are cut into chunks that fit ``max_context_tokens`` and reduced level by level, as
locally; requests run on at most ``openai.max_concurrency`` threads.

Token counts come from ``openai.tokenizer_dir`` when set (the served model's tokenizer, local);
otherwise they are estimated as 4 tokens per 3 words (words as :func:`summarizer.language.count_words`
counts them), which is close for English on BPE vocabularies and errs high for most others. Set the
tokenizer when documents come near the context, since an estimate can still be exceeded.

Failures that may pass (timeouts, connection errors, 429 and 5xx answers) are retryable
:class:`SummarizerUnavailableError` entries; other 4xx answers are permanent
:class:`SummarizationFailedError` entries.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from summarizer.errors import (
    CanceledError,
    SummarizationFailedError,
    SummarizerConfigError,
    SummarizerError,
    SummarizerUnavailableError,
)
from summarizer.extractive import check_text
from summarizer.language import count_words, detect_language
from summarizer.params import causal_validator
from summarizer.prompts import check_prompt, clean_answer, messages
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

# Where a chunk may end; the pieces between keep their whitespace, so joined they are the text.
_PIECE = re.compile(r".+?(?:[.!?\u3002\uff01\uff1f](?=\s)\s*|\n\s*\n\s*|$)", re.DOTALL)
_WORD = re.compile(r"\S+\s*")
# Chat-template markers around each message, which the server adds and no count here sees.
_PER_MESSAGE_TOKENS = 8
_REDUCE_SHARE = 0.5
_MAX_LEVELS = 12
_MIN_CHUNK_TOKENS = 16


@dataclass
class _Job:
    index: int
    params: SummaryParams
    language: str
    chunk_tokens: int
    chunks: list[str]
    input_tokens: int
    outputs: dict[int, str] = field(default_factory=dict)
    done: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        return len(self.chunks) == 1

    def total_estimate(self) -> int:
        return self.done + len(self.chunks) - len(self.outputs) + (0 if self.final else 1)

    def max_new_tokens(self) -> int:
        limit = int(self.params.max_new_tokens or 1)
        return limit if self.final else max(1, min(limit, int(self.chunk_tokens * _REDUCE_SHARE)))


class OpenAIHTTPSummarizer(Summarizer):
    """An OpenAI-compatible chat-completions endpoint behind the :class:`Summarizer` interface."""

    def __init__(self, settings: SummarizerSettings) -> None:
        import httpx

        self.httpx = httpx
        self.settings = settings
        openai = settings.openai
        if not openai.model:
            raise SummarizerConfigError(
                "summarizer.openai.model must name the served model (backend openai-http)"
            )
        if settings.adapters:
            raise SummarizerConfigError(
                "summarizer.adapters apply to local models; an OpenAI-compatible server serves its adapters"
                " as models of their own"
            )
        check_prompt(settings.prompt)
        headers = {"Content-Type": "application/json"}
        if openai.api_key_env:
            key = os.environ.get(openai.api_key_env, "")
            if not key:
                raise SummarizerConfigError(
                    f"summarizer.openai.api_key_env: the environment variable {openai.api_key_env} is not set"
                )
            headers["Authorization"] = f"Bearer {key}"
        self.tokenizer: Any = None
        if openai.tokenizer_dir:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(
                Path(openai.tokenizer_dir).expanduser(), local_files_only=True
            )
        self.url = openai.base_url.rstrip("/") + "/v1/chat/completions"
        self.client = httpx.Client(
            timeout=openai.timeout_s,
            headers=headers,
            limits=httpx.Limits(max_connections=openai.max_concurrency),
        )
        self.max_concurrency = openai.max_concurrency
        self.context_tokens = settings.max_context_tokens
        self.overlap_tokens = settings.chunk_overlap_tokens
        self.validator = causal_validator(settings, openai.model, self.context_tokens)
        # No weights to hash here: the endpoint and the model name are what identify the summaries.
        identity = hashlib.sha256(f"{openai.base_url}\0{openai.model}".encode()).hexdigest()
        self.info = ModelInfo(
            name=openai.model,
            sha256=identity,
            backend="openai-http",
            quantization="remote",
            kind="causal",
            device="remote",
            settings_sha256=settings_digest(settings.prompt),
        )

    def close(self) -> None:
        self.client.close()

    # -- interface -----------------------------------------------------------------------------

    def validate_params(self, params: Mapping[str, Any] | None) -> SummaryParams:
        return self.validator.validate(params)

    def count_tokens(self, text: str) -> int:
        if self.tokenizer is not None:
            return len(self.tokenizer(text, add_special_tokens=False, verbose=False).input_ids)
        return math.ceil(count_words(text) * 4 / 3)

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
                jobs[index] = self._job(index, check_text(doc), doc_params)
            except SummarizerError as exc:
                results[index] = exc
                continue
            jobs[index].timings["tokenize_s"] = time.perf_counter() - began
        with ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix="openai-http") as pool:
            for _level in range(_MAX_LEVELS):
                if not jobs:
                    break
                self._run_level(pool, jobs, results, on_progress, should_cancel)
                for index in list(jobs):
                    job = jobs[index]
                    if results[index] is not None:
                        del jobs[index]
                    elif job.final:
                        job.timings["total_s"] = sum(job.timings.values())
                        results[index] = SummaryResult(
                            summary=job.outputs[0],
                            model=self.info,
                            timings=job.timings,
                            chunks=job.done,
                            input_tokens=job.input_tokens,
                            language=job.language,
                        )
                        del jobs[index]
                    else:
                        joined = "\n\n".join(job.outputs[number] for number in sorted(job.outputs))
                        job.chunks = self._chunks(joined or ".", job.chunk_tokens, 0)
                        job.outputs = {}
        for index in jobs:
            results[index] = SummarizationFailedError("map-reduce did not converge")
        return [
            entry if entry is not None else SummarizationFailedError("not processed") for entry in results
        ]

    # -- chunks --------------------------------------------------------------------------------

    def _job(self, index: int, text: str, params: SummaryParams) -> _Job:
        language = detect_language(text)
        max_words = int(params.max_words or self.settings.default_max_words)
        overhead = sum(
            self.count_tokens(message["content"]) + _PER_MESSAGE_TOKENS
            for message in messages(self.settings.prompt, "", max_words=max_words, language=language)
        )
        max_new = int(params.max_new_tokens or 1)
        chunk_tokens = self.context_tokens - overhead - max_new
        if chunk_tokens < _MIN_CHUNK_TOKENS:
            raise SummarizationFailedError(
                f"the prompt and an answer of {max_new} tokens leave no room for the document in the"
                f" {self.context_tokens}-token context"
            )
        return _Job(
            index=index,
            params=params,
            language=language,
            chunk_tokens=chunk_tokens,
            chunks=self._chunks(text, chunk_tokens, self.overlap_tokens),
            input_tokens=self.count_tokens(text),
        )

    def _chunks(self, text: str, limit: int, overlap: int) -> list[str]:
        """``text`` in chunks of at most ``limit`` tokens, cut between sentences where possible."""
        pieces: list[tuple[str, int]] = []
        for match in _PIECE.finditer(text):
            piece = match.group(0)
            if not piece:
                continue
            tokens = self.count_tokens(piece)
            if tokens <= limit:
                pieces.append((piece, tokens))
                continue
            # A sentence longer than a chunk: cut it between words.
            for word in _WORD.findall(piece):
                pieces.append((word, self.count_tokens(word)))
        chunks: list[str] = []
        current: list[tuple[str, int]] = []
        size = 0
        for piece, tokens in pieces:
            if current and size + tokens > limit:
                chunks.append("".join(part for part, _ in current))
                carry: list[tuple[str, int]] = []
                carried = 0
                for previous in reversed(current):
                    if carried + previous[1] > min(overlap, limit // 2):
                        break
                    carry.insert(0, previous)
                    carried += previous[1]
                current, size = carry, carried
            current.append((piece, tokens))
            size += tokens
        if current:
            chunks.append("".join(part for part, _ in current))
        return [chunk for chunk in chunks if chunk.strip()] or [text]

    # -- requests ------------------------------------------------------------------------------

    def _run_level(
        self,
        pool: ThreadPoolExecutor,
        jobs: dict[int, _Job],
        results: list[SummaryResult | SummarizerError | None],
        on_progress: ProgressCallback | None,
        should_cancel: CancelCheck | None,
    ) -> None:
        pending: list[tuple[int, int, Future[str]]] = []
        for index, job in jobs.items():
            if should_cancel is not None and should_cancel(index):
                results[index] = CanceledError("canceled between chunks")
                continue
            for number, chunk in enumerate(job.chunks):
                pending.append((index, number, pool.submit(self._complete, job, chunk)))
        for index, number, future in pending:
            job = jobs[index]
            try:
                text = future.result()
            except SummarizerError as exc:
                if results[index] is None:
                    results[index] = exc
                continue
            if results[index] is not None:
                continue
            job.outputs[number] = text
            job.done += 1
            if on_progress is not None:
                on_progress(index, job.done, job.total_estimate())

    def _complete(self, job: _Job, chunk: str) -> str:
        params = job.params
        max_words = int(params.max_words or self.settings.default_max_words)
        body: dict[str, Any] = {
            "model": self.settings.openai.model,
            "messages": messages(self.settings.prompt, chunk, max_words=max_words, language=job.language),
            "max_tokens": job.max_new_tokens(),
            "temperature": float(params.temperature or 0.0),
            # Servers that honour a seed then sample the same answer again on a retry.
            "seed": int.from_bytes(hashlib.sha256(chunk.encode()).digest()[:4], "big"),
        }
        if params.top_p is not None:
            body["top_p"] = params.top_p
        if params.stop:
            body["stop"] = list(params.stop)
        if params.repetition_penalty is not None:
            # Not in OpenAI's API; vLLM and TGI read it, others ignore unknown keys.
            body["repetition_penalty"] = params.repetition_penalty
        began = time.perf_counter()
        httpx = self.httpx
        try:
            response = self.client.post(self.url, json=body)
        except httpx.TimeoutException as exc:
            raise SummarizerUnavailableError(
                f"the summarization server did not answer within {self.settings.openai.timeout_s}s"
            ) from exc
        except httpx.HTTPError as exc:
            raise SummarizerUnavailableError(
                f"cannot reach the summarization server: {type(exc).__name__}"
            ) from exc
        finally:
            job.timings["generate_s"] = job.timings.get("generate_s", 0.0) + time.perf_counter() - began
        status = response.status_code
        if status == 429 or status >= 500:
            raise SummarizerUnavailableError(
                f"the summarization server answered {status}: {_reason(response)}"
            )
        if status >= 400:
            raise SummarizationFailedError(
                f"the summarization server refused the request ({status}): {_reason(response)}"
            )
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise SummarizationFailedError(
                "the summarization server's answer has no choices[0].message"
            ) from exc
        return clean_answer(str(content or ""), stop=params.stop)


def _reason(response: Any) -> str:
    """The server's own error message, short, for the job's error."""
    try:
        error = response.json().get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        message = None
    text = str(message or response.text or response.reason_phrase or "").strip()
    return text.splitlines()[0][:200] if text else "no message"
