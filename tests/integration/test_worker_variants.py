"""A worker batch holding jobs of several variants, on SQLite and PostgreSQL.

Each variant's jobs go to that variant's model in one call, and each job stores the model info of
the variant it was routed to; retries keep the variant; a variant whose model cannot load has its
jobs retried while the others run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, update

from schema.models import jobs_table, utcnow
from schema.settings import Settings, load_settings
from schema.variants import VariantSpec, pick_by_weight, variant_specs
from summarizer import Summarizer, SummarizerSettings, load_summarizer
from summarizer.errors import SummarizerConfigError, SummarizerUnavailableError
from summarizer.testing import FakeSummarizer
from tests.builders import job_values
from tests.fixtures.models import build_tiny_seq2seq
from tests.fixtures.pipeline import MODEL_CACHE, make_document
from workers.execution import JobExecutor
from workers.retry import RetryPolicy
from workers.variants import VariantModels

POLICY = RetryPolicy(max_claims=3, max_retries=2, base_delay_s=30.0, max_delay_s=60.0, jitter=False)
TOPICS = {"interactive": "jobs", "bulk": "jobs.bulk"}


def add_job(engine: Engine, text: str, **fields: Any) -> str:
    values = job_values(input_text=text, **fields)
    with engine.begin() as conn:
        conn.execute(insert(jobs_table), [values])
    return str(values["id"])


def row(engine: Engine, job_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(select(jobs_table).where(jobs_table.c.id == job_id)).mappings().one())


def two_variants(**env: str) -> Settings:
    return load_settings(
        None,
        {
            "CONDENSE_VARIANTS__A__SUMMARIZER__DEFAULT_MAX_WORDS": "5",
            "CONDENSE_VARIANTS__B__SUMMARIZER__DEFAULT_MAX_WORDS": "9",
            **env,
        },
    )


class Fakes:
    """One FakeSummarizer per variant, told apart by default_max_words; ``fail`` names one that cannot load."""

    def __init__(self, *, fail: int | None = None, **options: Any) -> None:
        self.built: dict[int, FakeSummarizer] = {}
        self.fail = fail
        self.options = options

    def __call__(self, settings: SummarizerSettings) -> Summarizer:
        words = settings.default_max_words
        if words == self.fail:
            raise SummarizerConfigError("summarizer.model: the weights are gone")
        fake = FakeSummarizer(default_max_words=words, **self.options)
        fake.info = replace(fake.info, name=f"fake-{words}")
        self.built[words] = fake
        return fake


def executor(
    engine: Engine, specs: tuple[VariantSpec, ...], load: Callable[[SummarizerSettings], Summarizer]
) -> JobExecutor:
    return JobExecutor(engine, VariantModels(specs, load=load), policy=POLICY, topic_for=TOPICS)


def test_each_variant_runs_its_own_jobs_in_one_call_and_stores_its_model(engine: Engine) -> None:
    fakes = Fakes()
    run = executor(engine, variant_specs(two_variants()), fakes)
    ids = [add_job(engine, f"Document {i} says something. Then more.", variant="ab"[i % 2]) for i in range(6)]
    outcome = run.run(ids)
    assert sorted(outcome.succeeded) == sorted(ids)
    assert [(r.variant, r.documents) for r in outcome.runs] == [("a", 3), ("b", 3)]
    assert [len(call) for call in fakes.built[5].calls] == [3]
    assert [len(call) for call in fakes.built[9].calls] == [3]
    assert {(ended.variant, ended.status) for ended in outcome.ended} == {
        ("a", "succeeded"),
        ("b", "succeeded"),
    }
    for index, job_id in enumerate(ids):
        stored = row(engine, job_id)
        assert stored["variant"] == "ab"[index % 2]
        assert stored["model"]["name"] == ("fake-5" if index % 2 == 0 else "fake-9")


def test_a_retried_job_keeps_its_variant(engine: Engine) -> None:
    settings = two_variants()
    fakes = Fakes(failures={"FLAKY": SummarizerUnavailableError("device busy")}, fail_times=1)
    run = executor(engine, variant_specs(settings), fakes)
    job_id = add_job(engine, "FLAKY document. It works the second time.", variant="b")
    assert run.run([job_id]).retried == [job_id]
    assert (row(engine, job_id)["status"], row(engine, job_id)["variant"]) == ("queued", "b")
    with engine.begin() as conn:
        conn.execute(update(jobs_table).where(jobs_table.c.id == job_id).values(retry_at=utcnow()))
    # Another worker (new process, new models, no failures) takes the retry: same variant.
    again = executor(engine, variant_specs(settings), Fakes())
    assert again.run([job_id]).succeeded == [job_id]
    stored = row(engine, job_id)
    assert (stored["variant"], stored["model"]["name"], stored["attempts"]) == ("b", "fake-9", 2)
    # An old row without a stored variant goes where its id's hash sends it, every time.
    old = add_job(engine, "An old job from before variants. It still runs.")
    assert again.run([old]).succeeded == [old]
    expected = pick_by_weight(old, variant_specs(settings))
    assert row(engine, old)["model"]["name"] == {"a": "fake-5", "b": "fake-9"}[expected]


def test_a_variant_that_cannot_load_has_its_jobs_retried_and_the_others_run(engine: Engine) -> None:
    run = executor(engine, variant_specs(two_variants()), Fakes(fail=9))
    good = add_job(engine, "This one runs. On variant a.", variant="a")
    stuck = add_job(engine, "This one waits. On variant b.", variant="b")
    outcome = run.run([good, stuck])
    assert outcome.succeeded == [good]
    assert outcome.retried == [stuck]
    stored = row(engine, stuck)
    assert (stored["status"], stored["error_code"]) == ("queued", "summarizer_unavailable")
    assert "'b' failed to load" in stored["error_message"]


@pytest.fixture(scope="module")
def two_kinds(tmp_path_factory: pytest.TempPathFactory) -> tuple[tuple[VariantSpec, ...], VariantModels]:
    """The bundled extractive MiniLM and a tiny seq2seq model, as two variants of one worker."""
    tiny: Path = build_tiny_seq2seq(tmp_path_factory.mktemp("tiny-bart"))
    settings = load_settings(
        None,
        {
            "CONDENSE_SUMMARIZER__CACHE_DIR": str(MODEL_CACHE),
            "CONDENSE_VARIANTS__MINILM__WEIGHT": "3",
            "CONDENSE_VARIANTS__TINY__WEIGHT": "1",
            "CONDENSE_VARIANTS__TINY__SUMMARIZER__MODEL": str(tiny),
            "CONDENSE_VARIANTS__TINY__SUMMARIZER__BACKEND": "torch-fp32",
            "CONDENSE_VARIANTS__TINY__SUMMARIZER__DEFAULT_MAX_NEW_TOKENS": "8",
        },
    )
    specs = variant_specs(settings)
    models = VariantModels(specs, load=load_summarizer)
    assert models.load_all() == {"minilm": "ok", "tiny": "ok"}
    return specs, models


def test_an_extractive_and_a_seq2seq_variant_share_a_batch(
    engine: Engine, two_kinds: tuple[tuple[VariantSpec, ...], VariantModels]
) -> None:
    _specs, models = two_kinds
    run = JobExecutor(engine, models, policy=POLICY, topic_for=TOPICS)
    extractive = [add_job(engine, make_document(i, sentences=12), variant="minilm") for i in range(2)]
    abstractive = [
        add_job(engine, make_document(10 + i, sentences=4), variant="tiny", params={"max_new_tokens": 6})
        for i in range(2)
    ]
    outcome = run.run([extractive[0], abstractive[0], extractive[1], abstractive[1]])
    assert sorted(outcome.succeeded) == sorted(extractive + abstractive)
    for job_id in extractive:
        stored = row(engine, job_id)
        assert stored["variant"] == "minilm"
        assert stored["model"]["kind"] == "extractive"
        assert stored["model"]["sha256"] == models.get("minilm").info.sha256
        assert stored["summary"]
    for job_id in abstractive:
        stored = row(engine, job_id)
        assert stored["variant"] == "tiny"
        assert stored["model"]["kind"] == "abstractive"
        assert stored["model"]["sha256"] == models.get("tiny").info.sha256
    assert models.get("tiny").info.sha256 != models.get("minilm").info.sha256
