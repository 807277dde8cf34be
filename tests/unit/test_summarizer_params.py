"""summarizer.params: the configured model's parameter rules from the settings, without loading it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from summarizer.errors import InvalidParamsError, SummarizerConfigError
from summarizer.params import params_validator, validate_params
from summarizer.settings import SummarizerSettings
from summarizer.testing import FakeSummarizer


def model_dir(tmp_path: Path, config: dict[str, Any]) -> Path:
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"max_words": 40},
        {"max_sentences": 3, "max_words": 5_000},
        {"max_words": 0},
        {"max_words": 5_001},
        {"max_words": "40"},
        {"max_words": True},
        {"max_new_tokens": 20},
        {"temperature": 0.5},
    ],
)
def test_the_default_model_takes_what_the_extractive_engine_takes(params: dict[str, Any]) -> None:
    # FakeSummarizer validates through the same parse_params as the real extractive model.
    engine = FakeSummarizer(default_max_words=77)
    settings = SummarizerSettings(default_max_words=77)
    try:
        expected = engine.validate_params(params)
    except InvalidParamsError as refused:
        with pytest.raises(InvalidParamsError) as caught:
            validate_params(settings, params)
        assert caught.value.message.split(";")[0] == refused.message.split(";")[0]
        return
    assert validate_params(settings, params) == expected


def test_an_encoder_directory_is_extractive(tmp_path: Path) -> None:
    (tmp_path / "my-encoder").mkdir()
    directory = model_dir(tmp_path / "my-encoder", {"model_type": "bert"})
    validator = params_validator(SummarizerSettings(model=str(directory)))
    assert (validator.kind, validator.model_name) == ("extractive", "my-encoder")
    assert validator.validate({}).max_words == 100


def test_a_seq2seq_directory_gets_the_decoders_ceiling(tmp_path: Path) -> None:
    directory = model_dir(
        tmp_path, {"model_type": "bart", "is_encoder_decoder": True, "max_position_embeddings": 64}
    )
    validator = params_validator(SummarizerSettings(model=str(directory), default_max_new_tokens=128))
    assert validator.kind == "abstractive"
    # 64 learned decoder positions leave 62 tokens; the default is cut to fit like the engine does.
    assert validator.max_new_tokens == 62
    assert validator.validate({}).max_new_tokens == 62
    assert validator.validate({"max_new_tokens": 30, "num_beams": 2}).num_beams == 2
    with pytest.raises(InvalidParamsError, match="at most 62 tokens"):
        validator.validate({"max_new_tokens": 63})
    with pytest.raises(InvalidParamsError, match="max_words"):
        validator.validate({"max_words": 10})


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda path: path / "absent", "neither 'minilm' nor an existing"),
        (lambda path: path, "has no config.json"),
        (lambda path: (path / "config.json").write_text("{not json") and path, "not valid JSON"),
        (lambda path: (path / "config.json").write_text("[1]") and path, "not a JSON object"),
    ],
)
def test_a_model_setting_that_names_nothing_loadable_is_a_config_error(
    tmp_path: Path, setup: Any, message: str
) -> None:
    with pytest.raises(SummarizerConfigError, match=message):
        params_validator(SummarizerSettings(model=str(setup(tmp_path))))
