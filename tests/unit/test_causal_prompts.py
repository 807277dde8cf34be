"""Prompts of instruct models and the cleaning of their answers; the causal params family."""

from __future__ import annotations

import pytest

from summarizer import InvalidParamsError, SummarizerConfigError
from summarizer.params import answer_ceiling, is_causal_config
from summarizer.prompts import check_prompt, clean_answer, language_name, messages
from summarizer.settings import PromptSettings
from summarizer.types import ModelInfo, parse_params


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (
            "<|im_start|>assistant\nSure! Here is a summary of the document:\n\nThe engine splits text."
            " It stores results. And then the",
            "The engine splits text. It stores results.",
        ),
        ("Here's a concise summary in English:\nWorkers pull jobs.</s>", "Workers pull jobs."),
        (
            "Summary: The gateway answers at once.\n\nIt sends long ones away.",
            "The gateway answers at once.\n\nIt sends long ones away.",
        ),
        ("### Response:\nCertainly.\nThe text is short.", "The text is short."),
        ("[INST] [/INST] Assistant: Jobs are retried.<end_of_turn>", "Jobs are retried."),
        ("no punctuation at all and cut", "no punctuation at all and cut"),
        ("网关立即回答。长文本进入队列。然后", "网关立即回答。长文本进入队列。"),
        ("Below is the summary:  Two   spaces.\nOne line.", "Two spaces. One line."),
    ],
)
def test_chat_artefacts_are_cleaned(raw: str, clean: str) -> None:
    assert clean_answer(raw) == clean


def test_stop_strings_cut_the_answer() -> None:
    assert clean_answer("First point. Second point.\n###\nUser: more", stop=["###", "User:"]) == (
        "First point. Second point."
    )
    # A sentence that mentions a summary is no lead-in.
    assert clean_answer("The summary of a chunk is kept. Nothing else.") == (
        "The summary of a chunk is kept. Nothing else."
    )


def test_messages_fill_the_template() -> None:
    chat = messages(PromptSettings(), "Body text.", max_words=42, language="de")
    assert [message["role"] for message in chat] == ["system", "user"]
    assert "about 42 words" in chat[1]["content"] and "German" in chat[1]["content"]
    assert chat[1]["content"].endswith("Body text.")
    assert language_name("und") == "the language of the document"
    no_system = messages(PromptSettings(system=""), "x", max_words=1, language="en")
    assert [message["role"] for message in no_system] == ["user"]


@pytest.mark.parametrize(
    "prompt",
    [
        PromptSettings(user="Summarize please."),
        PromptSettings(user="{text} {unknown}"),
        PromptSettings(system="{"),
    ],
)
def test_bad_templates_are_refused_at_load(prompt: PromptSettings) -> None:
    with pytest.raises(SummarizerConfigError, match=r"summarizer\.prompt"):
        check_prompt(prompt)


def test_causal_family_params() -> None:
    defaults = {"max_new_tokens": 64, "max_words": 80}
    params = parse_params(
        {"temperature": 0.7, "stop": ["\n\n"]}, kind="causal", model_name="m", defaults=defaults
    )
    assert (params.max_new_tokens, params.max_words, params.temperature) == (64, 80, 0.7)
    stored = params.model_dump(exclude_none=True)
    assert parse_params(stored, kind="causal", model_name="m", defaults={}) == params
    with pytest.raises(InvalidParamsError, match="applies to abstractive models"):
        parse_params({"num_beams": 2}, kind="causal", model_name="m", defaults={})
    with pytest.raises(InvalidParamsError, match="applies to causal models"):
        parse_params({"adapter": "x"}, kind="abstractive", model_name="m", defaults={})
    assert answer_ceiling(4096) == 1024 and answer_ceiling(192) == 96


def test_causal_configs_are_recognized() -> None:
    assert is_causal_config({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"})
    assert is_causal_config({"model_type": "mistral"})
    assert not is_causal_config(
        {"architectures": ["BartForConditionalGeneration"], "is_encoder_decoder": True}
    )
    assert not is_causal_config({"model_type": "bert"})


def test_model_info_names_the_adapter_only_when_there_is_one() -> None:
    info = ModelInfo(
        name="m", sha256="0" * 64, backend="torch-fp32", quantization="none", kind="causal", device="cpu"
    )
    assert "adapter" not in info.as_dict()
    import dataclasses

    tuned = dataclasses.replace(info, adapter="legal", adapter_sha256="a" * 64)
    assert tuned.as_dict()["adapter"] == "legal" and tuned.engine_version == info.engine_version


def test_fake_summarizer_speaks_the_causal_contract() -> None:
    from summarizer.testing import FakeSummarizer

    fake = FakeSummarizer(kind="causal", adapters={"legal": "ab" * 32})
    assert dict(fake.adapters) == {"legal": "ab" * 32}
    with pytest.raises(InvalidParamsError, match="adapter"):
        fake.validate_params({"adapter": "news"})
    (result,) = fake.summarize_batch(["one two three"], fake.validate_params({"adapter": "legal"}))
    assert not isinstance(result, Exception)
    assert result.model.as_dict()["adapter_sha256"] == "ab" * 32
