"""Model variants: their settings, the routing of job ids by weight, and a worker's models per variant."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from common.errors import ConfigError
from condense.models_cli import models_table
from schema.models import new_id
from schema.settings import DEFAULT_VARIANT, Settings, load_settings
from schema.store.jobs import new_job
from schema.variants import pick_by_weight, split_model_param, variant_specs
from summarizer import Summarizer, SummarizerSettings
from summarizer.errors import InvalidParamsError, SummarizerConfigError, SummarizerUnavailableError
from summarizer.testing import FakeSummarizer
from workers.app import record_metrics
from workers.execution import BatchOutcome, EndedJob, VariantRun
from workers.variants import VariantModels


def three_way() -> Settings:
    return load_settings(
        None,
        {
            "CONDENSE_SUMMARIZER__DEFAULT_MAX_WORDS": "80",
            "CONDENSE_VARIANTS__CONTROL__WEIGHT": "0.7",
            "CONDENSE_VARIANTS__SHORT__WEIGHT": "0.2",
            "CONDENSE_VARIANTS__SHORT__SUMMARIZER__DEFAULT_MAX_WORDS": "20",
            "CONDENSE_VARIANTS__LONG__WEIGHT": "0.1",
            "CONDENSE_VARIANTS__LONG__SUMMARIZER__DEFAULT_MAX_WORDS": "300",
            "CONDENSE_VARIANTS__CANARY__WEIGHT": "0",
        },
    )


def test_without_variants_the_summarizer_section_is_the_one_default_variant() -> None:
    (spec,) = variant_specs(Settings())
    assert spec.name == DEFAULT_VARIANT
    assert spec.share == 1.0
    assert spec.summarizer == Settings().summarizer


def test_variants_from_environment_variables_override_the_base_section() -> None:
    specs = {spec.name: spec for spec in variant_specs(three_way())}
    assert list(specs) == ["control", "short", "long", "canary"]
    assert specs["control"].summarizer.default_max_words == 80
    assert specs["short"].summarizer.default_max_words == 20
    assert specs["long"].summarizer.default_max_words == 300
    # Keys a variant does not override come from the summarizer section.
    assert {spec.summarizer.model for spec in specs.values()} == {"minilm"}
    assert specs["short"].share == pytest.approx(0.2)
    assert specs["canary"].share == 0.0


def test_variants_load_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "condense.yaml"
    path.write_text(
        "summarizer:\n  max_batch_tokens: 8192\n"
        "variants:\n"
        "  minilm: {weight: 3}\n"
        "  bart:\n    weight: 1\n    summarizer: {backend: torch-fp32, default_max_new_tokens: 64}\n"
    )
    settings = load_settings(path, environ={})
    resolved = settings.variant_summarizers()
    assert resolved["bart"].backend == "torch-fp32"
    assert resolved["bart"].max_batch_tokens == 8192
    assert resolved["minilm"].backend == "auto"
    assert [spec.share for spec in variant_specs(settings)] == [0.75, 0.25]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CONDENSE_VARIANTS": '{"Not A Slug": {}}'}, "is not a slug"),
        ({"CONDENSE_VARIANTS__A__WEIGHT": "0", "CONDENSE_VARIANTS__B__WEIGHT": "0"}, "add up to more than 0"),
        ({"CONDENSE_VARIANTS__A__WEIGHT": "-1"}, "variants.a.weight"),
        ({"CONDENSE_VARIANTS__A__SUMMARIZER__MODLE": "x"}, "did you mean 'model'"),
        ({"CONDENSE_VARIANTS__A__SUMMARIZER__MAX_BATCH_TOKENS": "3"}, "max_batch_tokens"),
        ({"CONDENSE_VARIANTS__A__WIEGHT": "1"}, "variants.a.wieght"),
    ],
)
def test_bad_variant_settings_are_refused_by_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(None, env)


def test_weights_split_ten_thousand_job_ids_within_two_percent_of_the_shares() -> None:
    specs = variant_specs(three_way())
    ids = [new_id() for _ in range(10_000)]
    counts = Counter(pick_by_weight(job_id, specs) for job_id in ids)
    assert counts["canary"] == 0, "a weight of 0 only serves requests that name the variant"
    for spec in specs:
        assert abs(counts[spec.name] / len(ids) - spec.share) < 0.02, (spec.name, counts)


def test_routing_by_id_is_stable_across_calls_and_processes() -> None:
    specs = variant_specs(three_way())
    job_id = "01890a5d-ac96-774b-bcce-b302099a8057"
    first = pick_by_weight(job_id, specs)
    assert all(pick_by_weight(job_id, specs) == first for _ in range(100))
    # Fixed by the id's hash, not by this process: the same id maps the same everywhere.
    assert first == "control"


def test_the_model_param_is_split_from_the_engine_params() -> None:
    assert split_model_param({"model": "short", "max_words": 5}) == ("short", {"max_words": 5})
    assert split_model_param({"max_words": 5}) == (None, {"max_words": 5})
    with pytest.raises(InvalidParamsError, match="must be a string"):
        split_model_param({"model": 3})


class Loads:
    """A loader keyed on default_max_words, so each variant gets a model it can be told by."""

    def __init__(self, fail_for: int | None = None) -> None:
        self.loaded: list[int] = []
        self.fail_for = fail_for

    def __call__(self, settings: SummarizerSettings) -> Summarizer:
        self.loaded.append(settings.default_max_words)
        if settings.default_max_words == self.fail_for:
            raise SummarizerConfigError("summarizer.model: the weights are gone")
        return FakeSummarizer(default_max_words=settings.default_max_words)


def test_a_worker_loads_each_variant_once_on_first_use() -> None:
    loads = Loads()
    models = VariantModels(variant_specs(three_way()), load=loads)
    assert loads.loaded == []
    short = models.get("short")
    assert models.get("short") is short
    assert short.validate_params({}).max_words == 20
    assert models.get("long").validate_params({}).max_words == 300
    assert loads.loaded == [20, 300]


def test_a_variant_that_fails_to_load_fails_its_jobs_retryably_and_spares_the_others() -> None:
    loads = Loads(fail_for=20)
    models = VariantModels(variant_specs(three_way()), load=loads)
    statuses = models.load_all()
    assert statuses["control"] == "ok" and statuses["long"] == "ok"
    assert "failed to load" in statuses["short"]
    with pytest.raises(SummarizerUnavailableError) as raised:
        models.get("short")
    assert raised.value.retryable
    # The failure is remembered: no reload per batch.
    assert loads.loaded.count(20) == 1
    with pytest.raises(SummarizerUnavailableError, match="not configured on this worker"):
        models.get("retired")


def test_a_worker_with_no_loadable_variant_refuses_to_start() -> None:
    (spec,) = variant_specs(Settings())
    with pytest.raises(
        SummarizerConfigError, match=r"no model variant could be loaded \(default: .*weights are gone"
    ):
        VariantModels.at_start([spec], load=Loads(fail_for=spec.summarizer.default_max_words))
    loads = Loads(fail_for=20)
    models = VariantModels.at_start(variant_specs(three_way()), load=loads)
    assert sorted(loads.loaded) == [20, 80, 80, 300]
    assert models.get("control").validate_params({}).max_words == 80


def test_old_rows_without_a_variant_are_routed_by_their_id() -> None:
    specs = variant_specs(three_way())
    models = VariantModels(specs, load=Loads())
    old = new_job(tenant="t", text="x")
    assert old.variant is None
    assert models.variant_of(old) == pick_by_weight(old.id, specs)
    assert models.variant_of(new_job(tenant="t", text="x", variant="canary")) == "canary"


def test_models_table_shows_every_variant_and_its_load_error() -> None:
    table = models_table(
        [
            {
                "name": "control",
                "weight": 3.0,
                "share": 0.75,
                "status": "ready",
                "loaded": True,
                "kind": "extractive",
                "backend": "onnx-int8",
                "quantization": "int8-dynamic",
                "model": "all-MiniLM-L6-v2",
                "sha256": "ab" * 32,
                "engine_version": "condense-0.1.0/onnx-int8/int8-dynamic",
                "adapters": {"legal": "cd" * 32},
            },
            {
                "name": "bart",
                "weight": 1.0,
                "share": 0.25,
                "status": "error",
                "loaded": False,
                "error": "cannot load summarizer model '/models/bart'",
                "kind": None,
                "backend": "auto",
                "model": "/models/bart",
                "sha256": None,
                "adapters": {},
            },
        ]
    )
    lines = table.splitlines()
    assert lines[0].split() == [
        "NAME", "WEIGHT", "SHARE", "STATUS", "KIND", "BACKEND", "QUANT", "MODEL", "SHA256", "ENGINE", "ADAPTERS"
    ]  # fmt: skip
    assert lines[1].split()[:4] == ["control", "3", "75.0%", "ready"]
    assert "abababababab" in lines[1] and "legal@cdcdcdcd" in lines[1]
    assert lines[2].split()[:5] == ["bart", "1", "25.0%", "error", "-"]
    assert lines[3] == "bart: cannot load summarizer model '/models/bart'"


def test_worker_metrics_carry_the_variant() -> None:
    outcome = BatchOutcome(
        documents=3,
        tokens=300,
        inference_s=0.5,
        runs=[VariantRun("short", 2, 200, 0.25), VariantRun("long", 1, 100, 0.25)],
        ended=[
            EndedJob("short", "async", "succeeded", None, 2.0, 20),
            EndedJob("long", "async", "failed", "invalid_document", 1.0, None),
        ],
    )

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = {
        "failures": value("condense_job_failures_total", code="invalid_document", variant="long"),
        "latency": value(
            "condense_job_latency_seconds_count", variant="short", route="async", status="succeeded"
        ),
        "words": value("condense_summary_words_sum", variant="short"),
        "speed": value("condense_engine_tokens_per_second_sum", variant="short", path="async"),
    }
    record_metrics(outcome)
    assert (
        value("condense_job_failures_total", code="invalid_document", variant="long")
        == before["failures"] + 1
    )
    assert (
        value("condense_job_latency_seconds_count", variant="short", route="async", status="succeeded")
        == before["latency"] + 1
    )
    assert value("condense_summary_words_sum", variant="short") == before["words"] + 20
    assert (
        value("condense_engine_tokens_per_second_sum", variant="short", path="async") == before["speed"] + 800
    )
