"""An instruct model with LoRA adapters through the whole pipeline: the API, a batch upload, the worker.

The model is the tiny random Llama of tests/fixtures/models.py (its summaries are gibberish), served
as one variant beside the bundled MiniLM; the jobs name the variant and an adapter in their params.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from summarizer.causal import hash_files
from tests.fixtures.models import build_lora_adapter, build_tiny_causal, corpus_words
from tests.fixtures.pipeline import Pipeline, PipelineFactory, expect_json

# Short answers: the cost of a job is its generated tokens, and random weights never stop early.
MAX_NEW_TOKENS = 6


def _document(seed: int, sentences: int = 6) -> str:
    # Words the tiny tokenizer knows, so the prompt is real tokens rather than <unk>.
    words = corpus_words()
    return " ".join(
        " ".join(words[(seed * 13 + number * 7 + k) % len(words)] for k in range(9)).capitalize() + "."
        for number in range(sentences)
    )


@pytest.fixture
def instruct(tmp_path: Path) -> tuple[dict[str, str], str]:
    """The variants' environment (MiniLM "brief", the tiny Llama "llm" with adapter "legal") and
    the SHA-256 of that adapter's files."""
    model_dir = build_tiny_causal(tmp_path / "tiny-llama")
    adapter = build_lora_adapter(model_dir, tmp_path / "legal", seed=1)
    llm = "CONDENSE_VARIANTS__LLM__"
    env = {
        "CONDENSE_VARIANTS__BRIEF__WEIGHT": "1",
        "CONDENSE_VARIANTS__BRIEF__SUMMARIZER__DEFAULT_MAX_WORDS": "25",
        f"{llm}WEIGHT": "1",
        f"{llm}SUMMARIZER__MODEL": str(model_dir),
        f"{llm}SUMMARIZER__BACKEND": "torch-fp32",
        f"{llm}SUMMARIZER__DEVICE": "cpu",
        # One thread: on a tiny model more only wait for each other on a shared machine.
        f"{llm}SUMMARIZER__NUM_THREADS": "1",
        f"{llm}SUMMARIZER__DEFAULT_MAX_NEW_TOKENS": str(MAX_NEW_TOKENS),
        # Its manifest goes with this run's model, not into the cache the other tests share.
        f"{llm}SUMMARIZER__CACHE_DIR": str(tmp_path / "llm-cache"),
        f"{llm}SUMMARIZER__ADAPTERS__LEGAL": str(adapter),
    }
    return env, hash_files(adapter)


def test_an_instruct_variant_with_an_adapter_runs_through_the_api_and_a_batch_upload(
    pipeline: PipelineFactory, sqlite_url: str, instruct: tuple[dict[str, str], str]
) -> None:
    env, adapter_sha = instruct
    run = pipeline(sqlite_url, env=env)
    params = {"model": "llm", "adapter": "legal", "max_new_tokens": MAX_NEW_TOKENS}

    # An unknown adapter is refused at submit, single or in an upload, and nothing is stored.
    refused = run.client.post(
        "/v1/summaries", json={"text": _document(0), "mode": "async", "params": {**params, "adapter": "nope"}}
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "invalid_params"
    assert "nope" in refused.json()["error"]["message"]
    refused_upload = run.client.post(
        "/v1/batches",
        files=[("files", ("doc.txt", _document(1).encode()))],
        data={"params": json.dumps({**params, "adapter": "nope"})},
    )
    assert refused_upload.status_code == 422, refused_upload.text
    assert refused_upload.json()["error"]["code"] == "invalid_params"
    assert expect_json(run.client.get("/v1/summaries"))["data"] == []
    assert expect_json(run.client.get("/v1/batches"))["data"] == []

    single = run.submit(_document(2), mode="async", params=params)
    assert single["variant"] == "llm"
    upload = run.client.post(
        "/v1/batches",
        files=[("files", (f"doc-{i}.txt", _document(10 + i).encode())) for i in range(3)],
        data={"params": json.dumps(params)},
    )
    batch = expect_json(upload, 202)

    done = run.wait_all_final([single["id"]], timeout_s=120)[single["id"]]
    deadline = time.monotonic() + 120
    while (current := run.batch(batch["id"]))["status"] == "in_progress":
        assert time.monotonic() < deadline, f"batch not complete: {current['counts']}"
        time.sleep(0.5)
    assert current["counts"]["succeeded"] == 3, current["counts"]
    results = [done, *(run.job(job_id) for job_id in _result_ids(run, batch["id"]))]

    models = {row["name"]: row for row in expect_json(run.client.get("/v1/models"))["data"]}
    assert (models["brief"]["kind"], models["llm"]["kind"]) == ("extractive", "causal")
    assert models["llm"]["adapters"] == {"legal": adapter_sha}
    for job in results:
        assert (job["status"], job["variant"]) == ("succeeded", "llm"), job
        assert job["summary"] and job["summary"].strip()
        assert job["params"]["adapter"] == "legal"
        assert job["params"]["max_new_tokens"] == MAX_NEW_TOKENS
        model = job["model"]
        assert (model["kind"], model["backend"]) == ("causal", "torch-fp32")
        assert model["sha256"] == models["llm"]["sha256"]
        assert (model["adapter"], model["adapter_sha256"]) == ("legal", adapter_sha)


def _result_ids(run: Pipeline, batch_id: str) -> list[str]:
    lines = [json.loads(line) for line in run.client.get(f"/v1/batches/{batch_id}/results").text.splitlines()]
    assert {(line["status"], line["variant"], line["adapter"]) for line in lines} == {
        ("succeeded", "llm", "legal")
    }
    assert all(line["summary"] for line in lines)
    return [line["job_id"] for line in lines]
