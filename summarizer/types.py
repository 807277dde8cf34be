"""The engine's public data types and the :class:`Summarizer` interface every implementation follows."""

from __future__ import annotations

import abc
import functools
import hashlib
import importlib.metadata
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from summarizer.errors import InvalidParamsError, SummarizerError
from summarizer.manifest import ManifestCheck

Kind = Literal["extractive", "abstractive", "causal"]

#: Parameters each model family understands; a key of another family is refused by name.
EXTRACTIVE_PARAMS = frozenset({"max_words", "max_sentences"})
ABSTRACTIVE_PARAMS = frozenset(
    {"max_new_tokens", "min_length", "num_beams", "no_repeat_ngram_size", "length_penalty"}
)
#: Instruct (decoder-only) models: the summary's length is asked for in words and bounded in tokens.
CAUSAL_PARAMS = frozenset(
    {"max_new_tokens", "max_words", "temperature", "top_p", "repetition_penalty", "stop", "adapter"}
)
FAMILY_PARAMS: dict[str, frozenset[str]] = {
    "extractive": EXTRACTIVE_PARAMS,
    "abstractive": ABSTRACTIVE_PARAMS,
    "causal": CAUSAL_PARAMS,
}
MAX_STOP_STRINGS = 4
StopString = Annotated[str, StringConstraints(min_length=1, max_length=32)]

ProgressCallback = Callable[[int, int, int], None]
CancelCheck = Callable[[int], bool]


def settings_digest(*parts: BaseModel) -> str:
    """A short, stable digest of settings sections (their JSON with sorted keys)."""
    text = "\0".join(json.dumps(part.model_dump(mode="json"), sort_keys=True) for part in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@functools.cache
def package_version() -> str:
    try:
        return importlib.metadata.version("condense")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class ModelInfo:
    """What produced a summary; stored with every result so that outputs stay traceable.

    ``engine_version`` (the condense release, the backend and its quantization recipe) beside the
    weights' ``sha256`` names what decides a summary's bytes, short of the processor's instruction
    set: results that agree on both and on ``device`` came from the same computation.
    """

    name: str
    sha256: str
    backend: str
    quantization: str
    kind: Kind
    device: str
    #: The LoRA adapter a summary was written with and the SHA-256 of its files; None without one.
    adapter: str | None = None
    adapter_sha256: str | None = None
    #: Digest of the engine settings that decide a summary's bytes besides the weights (the
    #: extractive selection rules, an instruct model's prompt); None where there are none.
    settings_sha256: str | None = None
    engine_version: str = field(init=False)
    #: Digest of the manifest of every file the model was loaded from (summarizer.manifest); empty
    #: when no manifest was taken (test doubles).
    manifest_sha256: str = ""

    def __post_init__(self) -> None:
        # Derived, not passed in, so that no engine can report a version its recipe does not match.
        version = f"condense-{package_version()}/{self.backend}/{self.quantization}"
        object.__setattr__(self, "engine_version", version)

    def as_dict(self) -> dict[str, str]:
        # Unset adapter fields are left out, so results of adapter-less models keep their old shape.
        return {key: str(value) for key, value in asdict(self).items() if value is not None}


@dataclass
class SummaryResult:
    """One document's summary. ``timings`` holds seconds by phase; ``total_s`` is always present."""

    summary: str
    model: ModelInfo
    timings: dict[str, float] = field(default_factory=dict)
    chunks: int = 1
    input_tokens: int = 0
    #: BCP 47 language of the document ("en", "zh", ... or "und"); None where the model does not tell.
    language: str | None = None


class SummaryParams(BaseModel):
    """Validated per-document parameters; build them with :meth:`Summarizer.validate_params`.

    Fields of the family the loaded model does not use stay ``None``; ``model_dump(exclude_none=True)``
    gives a dict that ``validate_params`` accepts again unchanged (jobs store it that way).
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    # extractive
    max_words: int | None = Field(default=None, ge=1, le=5_000, description="Word budget of the summary.")
    max_sentences: int | None = Field(default=None, ge=1, le=500, description="Most sentences picked.")
    # abstractive
    max_new_tokens: int | None = Field(default=None, ge=1, le=1_024, description="Longest summary, tokens.")
    min_length: int | None = Field(default=None, ge=0, le=1_024, description="Shortest summary, tokens.")
    num_beams: int | None = Field(default=None, ge=1, le=8, description="Beam search width.")
    no_repeat_ngram_size: int | None = Field(default=None, ge=0, le=10, description="Blocked n-gram size.")
    length_penalty: float | None = Field(default=None, ge=0, le=5, description="Beam length exponent.")
    # causal (instruct models); max_new_tokens and max_words above apply too
    temperature: float | None = Field(
        default=None, ge=0, le=2, description="Sampling temperature; 0 is greedy (reproducible)."
    )
    top_p: float | None = Field(default=None, gt=0, le=1, description="Nucleus sampling mass.")
    repetition_penalty: float | None = Field(
        default=None, ge=1, le=2, description="Penalty on tokens already in the prompt or the answer."
    )
    stop: tuple[StopString, ...] | None = Field(
        default=None, max_length=MAX_STOP_STRINGS, description="Strings that end the summary (cut)."
    )
    adapter: str | None = Field(
        default=None, min_length=1, max_length=64, description="LoRA adapter to summarize with."
    )

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_from_json(cls, value: Any) -> Any:
        # JSON has lists; a tuple keeps the frozen params hashable.
        return tuple(value) if isinstance(value, list) else value

    @model_validator(mode="after")
    def _min_below_max(self) -> SummaryParams:
        if (
            self.min_length is not None
            and self.max_new_tokens is not None
            and self.min_length > self.max_new_tokens
        ):
            raise ValueError("min_length must not exceed max_new_tokens")
        return self


def parse_params(
    params: Mapping[str, Any] | None, *, kind: Kind, model_name: str, defaults: Mapping[str, Any]
) -> SummaryParams:
    """Validate ``params`` for a model of ``kind``, filling ``defaults`` for keys not given."""
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise InvalidParamsError(f"params must be a JSON object, not {type(params).__name__}")
    own = FAMILY_PARAMS[kind]
    for key in params:
        if key in own:
            continue
        other_kind = next((name for name, keys in FAMILY_PARAMS.items() if key in keys), None)
        if other_kind is not None:
            raise InvalidParamsError(
                f"parameter '{key}' applies to {other_kind} models; the model '{model_name}' is {kind}"
                f" and accepts {', '.join(sorted(own))}"
            )
        raise InvalidParamsError(
            f"unknown parameter '{key}'; the model '{model_name}' accepts {', '.join(sorted(own))}"
        )
    merged = {**{k: v for k, v in defaults.items() if k not in params}, **params}
    try:
        return SummaryParams.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "params"
        raise InvalidParamsError(f"parameter '{key}': {first['msg']}") from exc


class Summarizer(abc.ABC):
    """A loaded model. Thread-compatible: one call at a time per instance (inference is already
    parallel inside), which is how the gateway's micro-batcher and the workers use it."""

    info: ModelInfo
    #: The files the model came from against their manifest; set by :func:`load_summarizer`.
    manifest: ManifestCheck | None = None

    @property
    def adapters(self) -> Mapping[str, str]:
        """LoRA adapters this model can summarize with: name -> SHA-256 of the adapter's files."""
        return {}

    @abc.abstractmethod
    def validate_params(self, params: Mapping[str, Any] | None) -> SummaryParams:
        """Check ``params`` for this model and fill defaults; raises :class:`InvalidParamsError`."""

    @abc.abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` for this model (fast; no inference)."""

    @abc.abstractmethod
    def summarize_batch(
        self,
        docs: Sequence[str],
        params: Sequence[SummaryParams] | SummaryParams,
        *,
        on_progress: ProgressCallback | None = None,
        should_cancel: CancelCheck | None = None,
    ) -> list[SummaryResult | SummarizerError]:
        """Summarize ``docs``; one entry per document, in order.

        A document that cannot be summarized gets its own error entry (:class:`InvalidDocumentError`,
        :class:`CanceledError`, ...) and the others still succeed. ``on_progress(doc_index, chunks_done,
        chunks_total)`` reports progress; ``should_cancel(doc_index)`` is asked between chunks.
        Raises :class:`OutOfMemoryError` when the batch as a whole did not fit on the device.
        """

    def unknown_token_share(self, text: str) -> float | None:
        """Share of the text's tokens that the vocabulary does not know (a drift statistic); None
        where the model cannot tell, as byte-level vocabularies never meet an unknown token."""
        return None

    def summarize(self, text: str, **params: Any) -> str:
        """Convenience for scripts: summarize one text or raise its error."""
        (result,) = self.summarize_batch([text], self.validate_params(params))
        if isinstance(result, SummarizerError):
            raise result
        return result.summary


def broadcast_params(
    docs: Sequence[str], params: Sequence[SummaryParams] | SummaryParams
) -> list[SummaryParams]:
    """One params object per document; a single object applies to all."""
    if isinstance(params, SummaryParams):
        return [params] * len(docs)
    params = list(params)
    if len(params) != len(docs):
        raise InvalidParamsError(f"got {len(params)} params for {len(docs)} documents")
    return params
