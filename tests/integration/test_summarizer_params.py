"""The settings-only parameter rules agree with a loaded seq2seq model on every input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from summarizer import SummarizerSettings, load_summarizer
from summarizer.errors import InvalidParamsError
from summarizer.params import params_validator
from summarizer.types import Summarizer, SummaryParams
from tests.fixtures.models import build_tiny_seq2seq

pytestmark = pytest.mark.slow

CASES: list[dict[str, Any]] = [
    {},
    {"max_new_tokens": 12},
    {"max_new_tokens": 62},
    {"max_new_tokens": 63},
    {"max_new_tokens": 500},
    {"max_new_tokens": 0},
    {"min_length": 20, "max_new_tokens": 10},
    {"min_length": 4, "num_beams": 2, "no_repeat_ngram_size": 3, "length_penalty": 1.5},
    {"num_beams": 9},
    {"length_penalty": "1"},
    {"max_words": 10},
    {"top_k": 5},
]


def outcome(validate: Any, params: dict[str, Any]) -> SummaryParams | str:
    try:
        validated: SummaryParams = validate(params)
    except InvalidParamsError as exc:
        return exc.code
    return validated


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[SummarizerSettings, Summarizer]:
    directory: Path = build_tiny_seq2seq(tmp_path_factory.mktemp("tiny-bart"))
    settings = SummarizerSettings(
        model=str(directory), backend="torch-fp32", cache_dir=str(tmp_path_factory.mktemp("cache"))
    )
    return settings, load_summarizer(settings)


@pytest.mark.parametrize("params", CASES)
def test_settings_rules_match_the_loaded_seq2seq_model(
    tiny_model: tuple[SummarizerSettings, Summarizer], params: dict[str, Any]
) -> None:
    settings, loaded = tiny_model
    validator = params_validator(settings)
    assert validator.model_name == loaded.info.name
    assert outcome(validator.validate, params) == outcome(loaded.validate_params, params)
