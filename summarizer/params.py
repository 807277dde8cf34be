"""Parameter validation from the settings alone, for callers that must not wait for the model.

The gateway loads its model for about half a minute after start, yet async jobs and batch uploads
need only their ``params`` checked before they are queued: the worker that runs them has its own
model. :func:`params_validator` reads what validation depends on (the model family, its defaults,
the output ceiling and the configured LoRA adapters) from the settings and the model's
``config.json``, without loading weights, and applies the same rules as the loaded model's
``validate_params`` through :func:`summarizer.types.parse_params`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from summarizer.errors import InvalidParamsError, SummarizerConfigError
from summarizer.settings import SummarizerSettings
from summarizer.types import Kind, SummaryParams, parse_params

DEFAULT_MODEL = "minilm"
# Sentence encoders the loader runs as the extractive model; every other model directory is seq2seq.
ENCODER_MODEL_TYPES = frozenset({"bert", "mpnet", "xlm-roberta"})
# Decoder-only model types the loader runs as instruct models even when ``architectures`` is absent.
CAUSAL_MODEL_TYPES = frozenset(
    {
        "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "phi", "phi3",
        "gemma", "gemma2", "gemma3_text", "olmo", "olmo2", "granite", "smollm3", "stablelm",
        "starcoder2", "gpt2", "gpt_neox", "gptj", "falcon", "cohere",
    }
)  # fmt: skip
# Seq2SeqSummarizer never writes more than this many tokens, whatever the decoder allows.
_MAX_TARGET_TOKENS = 1_024
# An instruct model's answer may take at most this share of its context: the rest is prompt and
# document, and a map-reduce level must leave room for the next.
_ANSWER_SHARE = 0.5


@dataclass(frozen=True)
class ParamsValidator:
    """The parameter rules of the configured model; ``validate`` behaves like its ``validate_params``."""

    kind: Kind
    model_name: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    #: Longest summary a seq2seq or instruct model can write, in tokens; None for extractive models.
    max_new_tokens: int | None = None
    #: Names of the LoRA adapters ``params.adapter`` may pick (instruct models).
    adapters: frozenset[str] = frozenset()

    def validate(self, params: Mapping[str, Any] | None) -> SummaryParams:
        validated = parse_params(params, kind=self.kind, model_name=self.model_name, defaults=self.defaults)
        if validated.adapter is not None and validated.adapter not in self.adapters:
            known = ", ".join(sorted(self.adapters)) or "none configured"
            raise InvalidParamsError(
                f"parameter 'adapter': unknown adapter {validated.adapter!r} (known: {known})"
            )
        ceiling = self.max_new_tokens
        if (
            ceiling is not None
            and validated.max_new_tokens is not None
            and validated.max_new_tokens > ceiling
        ):
            raise InvalidParamsError(
                f"parameter 'max_new_tokens': this model writes at most {ceiling} tokens"
            )
        return validated


def params_validator(settings: SummarizerSettings) -> ParamsValidator:
    """The rules for ``settings.model``; reads its config.json (no weights, no inference).

    Raises :class:`SummarizerConfigError` when the model setting names nothing loadable, with the
    loader's wording, since the loader will fail on the same setting.
    """
    if settings.backend == "openai-http":
        return causal_validator(settings, settings.openai.model or "openai-http", settings.max_context_tokens)
    if settings.model == DEFAULT_MODEL:
        # Imported here: the extractive module pulls numpy, which settings-only callers do not need.
        from summarizer.extractive import MODEL_NAME

        return _extractive(settings, MODEL_NAME)
    model_dir = Path(settings.model).expanduser()
    config = read_model_config(model_dir, settings.model)
    if not config.get("is_encoder_decoder", False) and config.get("model_type") in ENCODER_MODEL_TYPES:
        return _extractive(settings, model_dir.name)
    if is_causal_config(config):
        return _causal(settings, model_dir)
    return _seq2seq(settings, model_dir)


def is_causal_config(config: Mapping[str, Any]) -> bool:
    """Whether a model's config.json describes a decoder-only (causal LM) model."""
    if config.get("is_encoder_decoder", False):
        return False
    architectures = config.get("architectures") or []
    if any(str(name).endswith("ForCausalLM") for name in architectures):
        return True
    return config.get("model_type") in CAUSAL_MODEL_TYPES


def causal_context(config: Any, cap: int) -> int:
    """An instruct model's context in tokens (prompt, document and answer), capped at ``cap``.

    The config's position limit is the real one; tokenizers' ``model_max_length`` is often unset or
    stale in instruct checkpoints, and reading it would need the tokenizer loaded here.
    """
    candidates = [getattr(config, "max_position_embeddings", None), getattr(config, "n_positions", None)]
    known = [int(value) for value in candidates if isinstance(value, int) and 0 < value < 1_000_000]
    return min(min(known) if known else 2_048, cap)


def answer_ceiling(context_tokens: int) -> int:
    """Longest answer an instruct model with ``context_tokens`` may be asked for."""
    return max(1, min(_MAX_TARGET_TOKENS, int(context_tokens * _ANSWER_SHARE)))


def causal_validator(settings: SummarizerSettings, name: str, context_tokens: int) -> ParamsValidator:
    ceiling = answer_ceiling(context_tokens)
    return ParamsValidator(
        kind="causal",
        model_name=name,
        defaults={
            "max_new_tokens": min(settings.default_max_new_tokens, ceiling),
            "max_words": settings.default_max_words,
        },
        max_new_tokens=ceiling,
        adapters=frozenset(settings.adapters),
    )


def _causal(settings: SummarizerSettings, model_dir: Path) -> ParamsValidator:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    except Exception as exc:  # a broken directory fails in many library-specific ways
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SummarizerConfigError(f"cannot load summarizer model {settings.model!r}: {first}") from exc
    context = causal_context(config, settings.max_context_tokens)
    return causal_validator(settings, getattr(config, "_name_or_path", "") or model_dir.name, context)


def validate_params(settings: SummarizerSettings, params: Mapping[str, Any] | None) -> SummaryParams:
    """One-off form of ``params_validator(settings).validate(params)``; build the validator once when
    validating many."""
    return params_validator(settings).validate(params)


def _extractive(settings: SummarizerSettings, name: str) -> ParamsValidator:
    return ParamsValidator(
        kind="extractive", model_name=name, defaults={"max_words": settings.default_max_words}
    )


def read_model_config(model_dir: Path, setting: str) -> dict[str, Any]:
    """The ``config.json`` of a local model directory, or SummarizerConfigError saying what is wrong."""
    if not model_dir.is_dir():
        raise SummarizerConfigError(
            f"summarizer.model: {setting!r} is neither 'minilm' nor an existing model directory"
        )
    config_file = model_dir / "config.json"
    if not config_file.is_file():
        raise SummarizerConfigError(f"summarizer.model: {model_dir} has no config.json")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SummarizerConfigError(f"summarizer.model: {config_file} is not valid JSON") from exc
    if not isinstance(config, dict):
        raise SummarizerConfigError(f"summarizer.model: {config_file} is not a JSON object")
    return config


def _seq2seq(settings: SummarizerSettings, model_dir: Path) -> ParamsValidator:
    # The ceiling comes from the same config object the loaded model reads: AutoConfig fills in the
    # architecture's defaults (T5's n_positions, say) that a raw config.json may leave out.
    # Imported here because transformers is slow to import and only seq2seq models need it.
    from transformers import AutoConfig

    from summarizer.abstractive import target_limit

    try:
        config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    except Exception as exc:  # a broken directory fails in many library-specific ways
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SummarizerConfigError(f"cannot load summarizer model {settings.model!r}: {first}") from exc
    ceiling = min(_MAX_TARGET_TOKENS, target_limit(config))
    return ParamsValidator(
        kind="abstractive",
        model_name=getattr(config, "_name_or_path", "") or model_dir.name,
        defaults={"max_new_tokens": min(settings.default_max_new_tokens, ceiling)},
        max_new_tokens=ceiling,
    )
