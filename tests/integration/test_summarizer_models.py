"""The engine on real weights: a tiny random seq2seq model built here, and the bundled MiniLM encoder.

Nothing is downloaded. The ONNX exports are session-scoped; the whole file runs in about a minute
on two cores.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from condense.cli import build_parser
from schema.settings import Settings
from summarizer import (
    CanceledError,
    InvalidDocumentError,
    InvalidParamsError,
    Summarizer,
    SummarizerConfigError,
    SummarizerSettings,
    SummaryResult,
    load_summarizer,
)
from summarizer.abstractive import Seq2SeqSummarizer
from summarizer.cli import evaluate, summarize_files
from summarizer.encoder import INT8_RECIPE, calibration_digest
from summarizer.extractive import ExtractiveSummarizer
from summarizer.types import package_version
from tests.fixtures.models import TINY_CONTEXT_TOKENS, build_tiny_seq2seq, corpus_words

pytestmark = pytest.mark.slow


def _long_text(sentences: int) -> str:
    words = corpus_words()
    out = []
    for number in range(sentences):
        picked = [words[(number * 7 + k) % len(words)] for k in range(10)]
        out.append(" ".join(picked).capitalize() + ".")
    return " ".join(out)


@pytest.fixture(scope="session")
def summarizer_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("summarizer-cache")


@pytest.fixture(scope="session")
def tiny_seq2seq_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_seq2seq(tmp_path_factory.mktemp("tiny-bart"))


def _seq2seq(model_dir: Path, cache_dir: Path, backend: str, **extra: Any) -> Seq2SeqSummarizer:
    settings = SummarizerSettings(
        model=str(model_dir), backend=backend, cache_dir=str(cache_dir), chunk_overlap_tokens=8, **extra
    )
    loaded = load_summarizer(settings)
    assert isinstance(loaded, Seq2SeqSummarizer)
    return loaded


@pytest.fixture(scope="session")
def tiny_fp32(tiny_seq2seq_dir: Path, summarizer_cache_dir: Path) -> Seq2SeqSummarizer:
    return _seq2seq(tiny_seq2seq_dir, summarizer_cache_dir, "torch-fp32")


@pytest.fixture(scope="session")
def minilm(summarizer_cache_dir: Path) -> ExtractiveSummarizer:
    loaded = load_summarizer(SummarizerSettings(cache_dir=str(summarizer_cache_dir)))
    assert isinstance(loaded, ExtractiveSummarizer)
    return loaded


# -- loading -----------------------------------------------------------------------------------


def test_missing_or_broken_model_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(SummarizerConfigError, match="neither 'minilm' nor an existing"):
        load_summarizer(SummarizerSettings(model=str(tmp_path / "absent")))
    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(SummarizerConfigError) as caught:
        load_summarizer(SummarizerSettings(model=str(tmp_path)))
    assert "\n" not in caught.value.message
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bart", "is_encoder_decoder": True}))
    with pytest.raises(SummarizerConfigError):
        load_summarizer(SummarizerSettings(model=str(tmp_path), cache_dir=str(tmp_path / "cache")))


def test_tiny_seq2seq_loads_and_generates(tiny_fp32: Seq2SeqSummarizer) -> None:
    info = tiny_fp32.info
    assert (info.kind, info.backend, info.device) == ("abstractive", "torch-fp32", "cpu")
    assert len(info.sha256) == 64 and info.as_dict()["kind"] == "abstractive"
    assert tiny_fp32.context_tokens == TINY_CONTEXT_TOKENS
    params = tiny_fp32.validate_params({"max_new_tokens": 12, "min_length": 4, "num_beams": 2})
    (result,) = tiny_fp32.summarize_batch(["Workers pull jobs from the queue in batches."], params)
    assert isinstance(result, SummaryResult)
    assert result.chunks == 1 and result.input_tokens > 0
    assert 4 <= len(result.summary.split()) <= 12
    assert result.timings["total_s"] >= result.timings["generate_s"] > 0
    assert tiny_fp32.count_tokens("the engine splits long documents") == 5


def test_abstractive_params_validation(tiny_fp32: Seq2SeqSummarizer) -> None:
    with pytest.raises(InvalidParamsError, match="max_words"):
        tiny_fp32.validate_params({"max_words": 10})
    with pytest.raises(InvalidParamsError, match="max_new_tokens"):
        tiny_fp32.validate_params({"max_new_tokens": 500})  # the tiny decoder has 64 positions


def test_long_document_is_chunked_and_reduced_not_truncated(tiny_fp32: Seq2SeqSummarizer) -> None:
    text = _long_text(60)
    tokens = tiny_fp32.count_tokens(text)
    assert tokens > 5 * TINY_CONTEXT_TOKENS
    fed: list[list[int]] = []
    real_generate = tiny_fp32._generate

    def spy(chunks: Any, kwargs: dict[str, Any]) -> list[str]:
        fed.extend(list(chunk) for chunk in chunks)
        return real_generate(chunks, kwargs)

    tiny_fp32._generate = spy  # type: ignore[method-assign]
    try:
        progress: list[tuple[int, int, int]] = []
        params = tiny_fp32.validate_params({"max_new_tokens": 20, "min_length": 5})
        (result,) = tiny_fp32.summarize_batch([text], params, on_progress=lambda *a: progress.append(a))
    finally:
        del tiny_fp32._generate
    assert isinstance(result, SummaryResult)
    assert all(len(chunk) <= tiny_fp32.chunk_tokens for chunk in fed)
    # Every token of the document reached the model in the first (map) level.
    document_ids = [t for unit in tiny_fp32._units(text) for t in unit]
    map_level = fed[: len(fed) - 1]
    assert sum(len(chunk) for chunk in map_level) >= len(document_ids)
    seen_words = set()
    for chunk in map_level:
        seen_words.update(tiny_fp32.tokenizer.decode(chunk).split())
    assert set(tiny_fp32.tokenizer.decode(document_ids).split()) <= seen_words
    assert result.chunks == len(fed) > 2
    assert progress[-1] == (0, result.chunks, result.chunks)
    assert all(done <= total for _, done, total in progress)


def test_bad_document_fails_alone_and_cancellation(tiny_fp32: Seq2SeqSummarizer) -> None:
    params = tiny_fp32.validate_params({"max_new_tokens": 8})
    docs = ["Summaries keep the main points.", "   ", _long_text(40), "\ud800 broken"]
    results = tiny_fp32.summarize_batch(docs, params, should_cancel=lambda index: index == 2)
    assert isinstance(results[0], SummaryResult)
    assert isinstance(results[1], InvalidDocumentError) and results[1].code == "invalid_document"
    assert isinstance(results[2], CanceledError) and results[2].code == "canceled"
    assert isinstance(results[3], InvalidDocumentError)


def test_torch_int8_quantizes_linear_layers(tiny_seq2seq_dir: Path, summarizer_cache_dir: Path) -> None:
    import torch

    loaded = _seq2seq(tiny_seq2seq_dir, summarizer_cache_dir, "torch-int8")
    assert loaded.info.quantization == "dynamic-int8"
    kinds = {type(module) for module in loaded.model.modules()}
    assert torch.ao.nn.quantized.dynamic.Linear in kinds
    (result,) = loaded.summarize_batch([_long_text(12)], loaded.validate_params({"max_new_tokens": 10}))
    assert isinstance(result, SummaryResult) and result.chunks > 1


def test_onnx_int8_export_is_cached(tiny_seq2seq_dir: Path, summarizer_cache_dir: Path) -> None:
    first = _seq2seq(tiny_seq2seq_dir, summarizer_cache_dir, "onnx-int8")
    assert first.exported_now and first.cache_path is not None
    assert first.info.quantization.startswith("dynamic-int8-per-channel")
    params = first.validate_params({"max_new_tokens": 10, "min_length": 3})
    results = first.summarize_batch(["Quantized models run faster.", _long_text(12)], params)
    assert all(isinstance(r, SummaryResult) and r.summary for r in results)
    second = _seq2seq(tiny_seq2seq_dir, summarizer_cache_dir, "onnx-int8")
    assert not second.exported_now and second.cache_path == first.cache_path


# -- the extractive default on MiniLM ----------------------------------------------------------

ARTICLE = """Batch processing
================

Batch processing runs many jobs together so that the hardware stays busy. Workers pull jobs from a
queue, group them by size and run each group through the model at once. Grouping by size reduces
the padding that a batch of mixed lengths would need.

Quantization stores model weights as 8-bit integers instead of 32-bit floats. It makes inference on
the CPU two to three times faster, e.g. for sentence encoders. The loss in quality is small when
scales are chosen per channel.

The weather was pleasant on the day the system was deployed. Lunch was served at noon.
"""


def test_minilm_default_summarizes_in_document_order(minilm: ExtractiveSummarizer) -> None:
    info = minilm.info
    assert (info.kind, info.backend, info.device) == ("extractive", "onnx-int8", "cpu")
    # Static int8 calibrated on the shipped text: the recipe and the text's hash name the export.
    assert info.quantization == f"{INT8_RECIPE}-calib-{calibration_digest()}"
    assert info.as_dict()["engine_version"] == f"condense-{package_version()}/onnx-int8/{info.quantization}"
    params = minilm.validate_params({"max_words": 45})
    progress: list[tuple[int, int, int]] = []
    (result,) = minilm.summarize_batch([ARTICLE], params, on_progress=lambda *a: progress.append(a))
    assert isinstance(result, SummaryResult)
    assert 0 < len(result.summary.split()) <= 45
    sentences = ARTICLE.replace("\n", " ").split(". ")
    positions = [" ".join(ARTICLE.split()).find(part) for part in result.summary.split(". ")[:2]]
    assert positions == sorted(positions) and -1 not in positions
    assert "Lunch" not in result.summary and "Batch processing ===" not in result.summary
    assert progress[-1] == (0, result.chunks, result.chunks)
    assert sentences and result.input_tokens > 50
    assert set(result.timings) >= {"segment_s", "encode_s", "select_s", "total_s"}
    with pytest.raises(InvalidParamsError, match="num_beams"):
        minilm.validate_params({"num_beams": 2})
    assert minilm.validate_params({"max_sentences": 1}).max_sentences == 1


def test_minilm_export_cache_is_reused(minilm: ExtractiveSummarizer, summarizer_cache_dir: Path) -> None:
    assert minilm.cache_path is not None
    assert sorted(path.name for path in minilm.cache_path.iterdir()) == ["done.json", "model_int8.onnx"]
    stamp = max(p.stat().st_mtime_ns for p in minilm.cache_path.iterdir())
    again = load_summarizer(SummarizerSettings(cache_dir=str(summarizer_cache_dir)))
    assert isinstance(again, ExtractiveSummarizer)
    assert not again.exported_now and again.cache_path == minilm.cache_path
    assert max(p.stat().st_mtime_ns for p in again.cache_path.iterdir()) == stamp
    assert again.info == minilm.info


def test_minilm_long_document_is_covered_whole(minilm: ExtractiveSummarizer) -> None:
    filler = " ".join(f"Paragraph {i} repeats routine filler about queues and workers." for i in range(600))
    needle = "The decisive finding is that int8 quantization triples encoder throughput on the CPU."
    text = "Routine notes follow here. " + filler + " " + needle + " " + filler
    params = minilm.validate_params({"max_words": 200})
    progress: list[tuple[int, int, int]] = []
    results = minilm.summarize_batch(
        [text, "", "One short sentence only here."], params, on_progress=lambda *a: progress.append(a)
    )
    long_result, empty, short = results
    assert isinstance(long_result, SummaryResult) and isinstance(short, SummaryResult)
    assert isinstance(empty, InvalidDocumentError)
    assert long_result.input_tokens > 10_000  # every sentence was read, far past the encoder's limit
    assert short.summary == "One short sentence only here."
    assert {index for index, _, _ in progress} == {0, 2}


def test_minilm_cancellation_and_one_sentence_longer_than_budget(minilm: ExtractiveSummarizer) -> None:
    params = minilm.validate_params({"max_words": 5})
    results = minilm.summarize_batch(
        ["This single sentence has many more words than the tiny budget allows.", ARTICLE],
        params,
        should_cancel=lambda index: index == 1,
    )
    assert isinstance(results[0], SummaryResult) and len(results[0].summary.split()) == 5
    assert isinstance(results[1], CanceledError)


# -- CLI helpers -------------------------------------------------------------------------------


def test_cli_summarize_files_and_eval(
    minilm: ExtractiveSummarizer, summarizer_cache_dir: Path, tmp_path: Path
) -> None:
    settings = SummarizerSettings(cache_dir=str(summarizer_cache_dir))
    good = tmp_path / "good.md"
    good.write_text(ARTICLE, encoding="utf-8")
    empty = tmp_path / "empty.txt"
    empty.write_text("  ", encoding="utf-8")
    out = io.StringIO()
    assert summarize_files(settings, [str(good)], params={"max_words": 30}, out=out) == 0
    assert "Batch processing" in out.getvalue() or "Quantization" in out.getvalue()
    assert summarize_files(settings, [str(good), str(empty)], params={}, out=io.StringIO()) == 1
    assert summarize_files(settings, [str(good)], params={"num_beams": 3}, out=io.StringIO()) == 2

    data = tmp_path / "eval.jsonl"
    with data.open("w", encoding="utf-8") as handle:
        for _ in range(2):
            handle.write(
                json.dumps({"id": "a", "document": ARTICLE, "reference": "Batching keeps hardware busy."})
            )
            handle.write("\n")
    out = io.StringIO()
    assert evaluate(settings, [str(data)], words=30, out=out) == 0
    table = out.getvalue()
    for system in (
        "lead",
        "textrank-tfidf",
        f"{minilm.info.name} (onnx-int8)",
        "margin over the better baseline",
    ):
        assert f"| eval | 2 | {system} |" in table


def test_condense_summarize_hands_the_engine_its_settings_section(
    minilm: ExtractiveSummarizer,
    summarizer_cache_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = tmp_path / "article.md"
    text.write_text(ARTICLE, encoding="utf-8")
    args = build_parser().parse_args(["summarize", str(text), "--max-words", "12"])
    settings = Settings(summarizer=SummarizerSettings(cache_dir=str(summarizer_cache_dir)))
    assert args.handler(settings, args) == 0

    absent = tmp_path / "absent"
    assert args.handler(Settings(summarizer=SummarizerSettings(model=str(absent))), args) == 2
    assert f"{str(absent)!r} is neither 'minilm' nor an existing model directory" in capsys.readouterr().err


def test_summarizer_is_the_protocol(minilm: ExtractiveSummarizer, tiny_fp32: Seq2SeqSummarizer) -> None:
    assert isinstance(minilm, Summarizer) and isinstance(tiny_fp32, Summarizer)


def test_two_exports_of_one_model_keep_separate_manifests(
    minilm: ExtractiveSummarizer, summarizer_cache_dir: Path
) -> None:
    # Switching the backend of the same source model is not a changed model: before manifests were
    # keyed on the export flavour, the fp32 export was compared with the int8 one and refused.
    assert minilm.manifest is not None and minilm.manifest.ok
    fp32 = load_summarizer(SummarizerSettings(cache_dir=str(summarizer_cache_dir), backend="onnx-fp32"))
    assert fp32.manifest is not None
    assert fp32.manifest.ok, fp32.manifest.differences
    assert fp32.manifest.path != minilm.manifest.path
    back = load_summarizer(SummarizerSettings(cache_dir=str(summarizer_cache_dir)))
    assert back.manifest is not None and back.manifest.ok and not back.manifest.written_now
    assert back.manifest.path == minilm.manifest.path
