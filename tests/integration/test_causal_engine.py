"""The instruct-model engine on real weights: a tiny random Llama with a chat template, built here.

Nothing is downloaded. Its summaries are gibberish, but every path is the real one: chat-template
prompts, left-padded batches, map-reduce over a long input, seeded sampling, LoRA adapters through
peft and dynamic int8 quantization.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from summarizer import (
    CanceledError,
    InvalidParamsError,
    SummarizerConfigError,
    SummarizerSettings,
    SummaryResult,
    load_summarizer,
)
from summarizer.causal import CausalLMSummarizer
from summarizer.params import params_validator
from tests.fixtures.models import (
    TINY_CAUSAL_CONTEXT_TOKENS,
    build_lora_adapter,
    build_tiny_causal,
    corpus_words,
)

pytestmark = pytest.mark.slow

DOCS = [
    "The gateway answers short texts at once and sends long ones to the queue.",
    "Workers pull jobs from the queue in batches. They store each result in the database.",
    "A summary keeps the main points of the text.",
    "Quantized models run faster on the CPU. Tokens are counted before the work is routed."
    " Progress is reported after every chunk.",
]


def _long_text(sentences: int) -> str:
    words = corpus_words()
    out = []
    for number in range(sentences):
        picked = [words[(number * 7 + k) % len(words)] for k in range(10)]
        out.append(" ".join(picked).capitalize() + ".")
    return " ".join(out)


@pytest.fixture(scope="module", autouse=True)
def _torch_threads_restored() -> Iterator[None]:
    # The engines here run on one thread (num_threads=1 sets torch's process-wide count, faster for
    # tiny models on a shared machine); the tests after this module get the count they had.
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_causal_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_causal(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_adapters(tiny_causal_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("adapters")
    return {
        name: str(build_lora_adapter(tiny_causal_dir, root / name, seed=seed))
        for name, seed in (("legal", 1), ("news", 2))
    }


def _settings(model_dir: Path, backend: str = "torch-fp32", **extra: Any) -> SummarizerSettings:
    # One thread: on a tiny model, threads only wait for each other (15x slower on a busy 2-core box).
    return SummarizerSettings(
        model=str(model_dir), backend=backend, device="cpu", chunk_overlap_tokens=0, num_threads=1, **extra
    )


@pytest.fixture(scope="session")
def causal(tiny_causal_dir: Path, tiny_adapters: dict[str, str]) -> CausalLMSummarizer:
    summarizer = load_summarizer(_settings(tiny_causal_dir, adapters=tiny_adapters))
    assert isinstance(summarizer, CausalLMSummarizer)
    return summarizer


def _summaries(results: list[Any]) -> list[str]:
    assert all(isinstance(result, SummaryResult) for result in results), results
    return [result.summary for result in results]


def test_loader_picks_the_causal_engine_from_the_config(
    causal: CausalLMSummarizer, tiny_causal_dir: Path, tiny_adapters: dict[str, str]
) -> None:
    info = causal.info
    assert (info.kind, info.backend, info.quantization, info.device) == (
        "causal",
        "torch-fp32",
        "none",
        "cpu",
    )
    assert info.engine_version.endswith("/torch-fp32/none")
    assert set(causal.adapters) == {"legal", "news"}
    assert all(len(sha) == 64 for sha in causal.adapters.values())
    assert causal.adapters["legal"] != causal.adapters["news"]
    # The gateway validates before any model is loaded, by the same rules.
    validator = params_validator(_settings(tiny_causal_dir, adapters=tiny_adapters))
    assert validator.kind == "causal" and validator.adapters == {"legal", "news"}
    assert validator.validate({"adapter": "news"}) == causal.validate_params({"adapter": "news"})


def test_batched_greedy_output_equals_one_at_a_time(causal: CausalLMSummarizer) -> None:
    params = causal.validate_params({"max_new_tokens": 12})
    batched = _summaries(causal.summarize_batch(DOCS, params))
    alone = [_summaries(causal.summarize_batch([doc], params))[0] for doc in DOCS]
    assert batched == alone
    assert any(batched) and len(set(batched)) > 1


def test_the_padded_batch_mask_is_transformers_own(causal: CausalLMSummarizer) -> None:
    import torch
    from transformers.masking_utils import sdpa_mask

    from summarizer.causal import PADDED_SDPA, _padded_causal_mask

    assert causal.model.config._attn_implementation == PADDED_SDPA
    left_padded = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 1, 1, 1, 1]], dtype=torch.bool)
    unpadded = torch.ones((3, 6), dtype=torch.bool)
    decode_step = torch.cat([left_padded, torch.ones((3, 1), dtype=torch.bool)], dim=1)
    # The prompt (every position at once), a decoding step over the cache, a batch with no padding.
    for attention_mask, cache_position in (
        (left_padded, torch.arange(5)),
        (decode_step, torch.tensor([5])),
        (unpadded, torch.arange(6)),
    ):
        shape = {"batch_size": 3, "cache_position": cache_position, "kv_length": attention_mask.shape[1]}
        ours = _padded_causal_mask(**shape, attention_mask=attention_mask)
        theirs = sdpa_mask(**shape, attention_mask=attention_mask)
        if theirs is None:
            assert ours is None
        else:
            assert ours.dtype == theirs.dtype and torch.equal(ours, theirs)


def test_a_long_document_is_chunked_to_the_context_and_nothing_is_dropped(causal: CausalLMSummarizer) -> None:
    text = _long_text(60)
    params = causal.validate_params({"max_new_tokens": 16})
    job = causal._job(0, text, params)
    # Every input token lands in exactly one chunk (no overlap here), in order.
    whole = causal.tokenizer(text, add_special_tokens=False).input_ids
    assert [token for chunk in job.chunks for token in chunk] == whole
    assert len(job.chunks) > 1
    for number in range(len(job.chunks)):
        assert len(job.row(number)) + 16 <= TINY_CAUSAL_CONTEXT_TOKENS
    progress: list[tuple[int, int, int]] = []
    (result,) = causal.summarize_batch([text], params, on_progress=lambda *event: progress.append(event))
    assert isinstance(result, SummaryResult)
    assert result.chunks > len(job.chunks) and result.input_tokens == len(whole)
    assert progress[-1][1] == result.chunks and progress[-1][1] == progress[-1][2]


def test_cancel_is_asked_between_chunks(causal: CausalLMSummarizer) -> None:
    asked: list[int] = []

    def cancel(index: int) -> bool:
        asked.append(index)
        return len(asked) > 1

    params = causal.validate_params({"max_new_tokens": 8})
    (result,) = causal.summarize_batch([_long_text(60)], params, should_cancel=cancel)
    assert isinstance(result, CanceledError) and len(asked) == 2


def test_sampling_is_seeded_per_document(causal: CausalLMSummarizer) -> None:
    sampled = causal.validate_params({"max_new_tokens": 12, "temperature": 1.5, "top_p": 0.95})
    first = _summaries(causal.summarize_batch(DOCS, sampled))
    assert _summaries(causal.summarize_batch(DOCS, sampled)) == first
    assert _summaries(causal.summarize_batch(DOCS[1:2], sampled)) == first[1:2]
    greedy = _summaries(causal.summarize_batch(DOCS, causal.validate_params({"max_new_tokens": 12})))
    assert greedy != first


def test_stop_strings_and_repetition_penalty(causal: CausalLMSummarizer) -> None:
    plain = _summaries(causal.summarize_batch(DOCS, causal.validate_params({"max_new_tokens": 16})))
    stopped = _summaries(
        causal.summarize_batch(DOCS, causal.validate_params({"max_new_tokens": 16, "stop": ["the", "."]}))
    )
    for before, after in zip(plain, stopped, strict=True):
        assert " the " not in f" {after} " and "." not in after
        assert before.startswith(after)
    penalized = causal.validate_params({"max_new_tokens": 16, "repetition_penalty": 2.0})
    assert _summaries(causal.summarize_batch(DOCS, penalized)) != plain


def test_adapters_change_the_output_and_mixed_batches_match_per_adapter_runs(
    causal: CausalLMSummarizer,
) -> None:
    names = [None, "legal", "news", "legal"]
    per_doc = [
        causal.validate_params({"max_new_tokens": 12} | ({"adapter": name} if name else {})) for name in names
    ]
    mixed = causal.summarize_batch(DOCS, per_doc)
    separately = [causal.summarize_batch([doc], params)[0] for doc, params in zip(DOCS, per_doc, strict=True)]
    assert _summaries(mixed) == _summaries(separately)
    by_adapter = {
        name: _summaries(
            causal.summarize_batch(DOCS[:1], causal.validate_params({"max_new_tokens": 12, **extra}))
        )
        for name, extra in (("base", {}), ("legal", {"adapter": "legal"}), ("news", {"adapter": "news"}))
    }
    assert len({summary[0] for summary in by_adapter.values()}) == 3
    # Grouping per adapter gives the same bytes as one mixed batch.
    causal.mixed_adapter_batches = not causal.mixed_adapter_batches
    try:
        assert _summaries(causal.summarize_batch(DOCS, per_doc)) == _summaries(mixed)
    finally:
        causal.mixed_adapter_batches = not causal.mixed_adapter_batches
    base, legal = mixed[0], mixed[1]
    assert isinstance(base, SummaryResult) and isinstance(legal, SummaryResult)
    assert "adapter" not in base.model.as_dict()
    stored = legal.model.as_dict()
    assert stored["adapter"] == "legal" and stored["adapter_sha256"] == causal.adapters["legal"]
    assert stored["engine_version"] == causal.info.engine_version


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"adapter": "medical"}, "adapter"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"repetition_penalty": 0.5}, "repetition_penalty"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": [""]}, "stop"),
        ({"stop": "."}, "stop"),
        ({"max_new_tokens": TINY_CAUSAL_CONTEXT_TOKENS}, "max_new_tokens"),
        ({"num_beams": 2}, "num_beams"),
        ({"max_sentences": 2}, "max_sentences"),
    ],
)
def test_bad_params_are_refused(causal: CausalLMSummarizer, params: dict[str, Any], key: str) -> None:
    with pytest.raises(InvalidParamsError) as caught:
        causal.validate_params(params)
    assert key in caught.value.message and caught.value.code == "invalid_params"


def test_int8_backend_runs_with_adapters(tiny_causal_dir: Path, tiny_adapters: dict[str, str]) -> None:
    summarizer = load_summarizer(_settings(tiny_causal_dir, "torch-int8", adapters=tiny_adapters))
    assert (summarizer.info.backend, summarizer.info.quantization) == ("torch-int8", "dynamic-int8")
    params = [
        summarizer.validate_params({"max_new_tokens": 8, "adapter": name}) for name in ("legal", "news")
    ]
    results = summarizer.summarize_batch(DOCS[:2], params)
    assert [result.model.adapter for result in results if isinstance(result, SummaryResult)] == [
        "legal",
        "news",
    ]


@pytest.mark.parametrize("backend", ["torch-fp16", "torch-bf16", "torch-8bit", "torch-4bit", "onnx-int8"])
def test_backends_this_machine_cannot_run_are_refused(tiny_causal_dir: Path, backend: str) -> None:
    with pytest.raises(SummarizerConfigError, match=backend):
        load_summarizer(_settings(tiny_causal_dir, backend))


def test_a_model_without_chat_template_is_refused(tiny_causal_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "plain"
    shutil.copytree(tiny_causal_dir, copy)
    config = copy / "tokenizer_config.json"
    config.write_text(config.read_text().replace('"chat_template"', '"unused_template"'))
    (copy / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(SummarizerConfigError, match="chat template"):
        load_summarizer(_settings(copy))


def test_unknown_adapter_directory_is_a_config_error(tiny_causal_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(SummarizerConfigError, match=r"adapters\.broken"):
        load_summarizer(_settings(tiny_causal_dir, adapters={"broken": str(tmp_path)}))


def test_sampling_defaults_of_the_checkpoint_are_ignored(
    causal: CausalLMSummarizer, tiny_causal_dir: Path, tmp_path: Path
) -> None:
    import json
    import shutil

    copy = tmp_path / "sampling-defaults"
    shutil.copytree(tiny_causal_dir, copy)
    generation = json.loads((copy / "generation_config.json").read_text())
    # What instruct checkpoints ship: sampling on, and a batch-wide penalty that would hit padding.
    generation |= {"do_sample": True, "temperature": 0.9, "top_k": 5, "repetition_penalty": 1.3}
    (copy / "generation_config.json").write_text(json.dumps(generation))
    shipped = load_summarizer(_settings(copy))
    params = shipped.validate_params({"max_new_tokens": 12})
    expected = _summaries(causal.summarize_batch(DOCS, causal.validate_params({"max_new_tokens": 12})))
    assert _summaries(shipped.summarize_batch(DOCS, params)) == expected


def test_batches_stay_within_the_token_budget_answer_included(causal: CausalLMSummarizer) -> None:
    params = causal.validate_params({"max_new_tokens": 12})
    expected = _summaries(causal.summarize_batch(DOCS, params))
    shapes: list[tuple[int, int]] = []
    original = causal.model.generate

    def recorded(*args: Any, **kwargs: Any) -> Any:
        shapes.append(tuple(kwargs["input_ids"].shape))  # type: ignore[arg-type]
        return original(*args, **kwargs)

    budget = 200
    causal.model.generate = recorded
    causal.max_batch_tokens = budget
    try:
        assert _summaries(causal.summarize_batch(DOCS, params)) == expected
    finally:
        causal.max_batch_tokens = causal.settings.max_batch_tokens
        del causal.model.generate
    assert len(shapes) > 1 and sum(rows for rows, _ in shapes) == len(DOCS)
    assert all(rows == 1 or rows * (width + 12) <= budget for rows, width in shapes)
