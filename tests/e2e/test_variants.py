"""Two model variants through the whole pipeline: the API, a batch upload, the worker, `condense models`."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from tests.fixtures.pipeline import Pipeline, PipelineFactory, expect_json, make_document

# Both variants run the bundled MiniLM (one load each, no model to build) with their own word budget.
VARIANTS = {
    "CONDENSE_VARIANTS__BRIEF__WEIGHT": "1",
    "CONDENSE_VARIANTS__BRIEF__SUMMARIZER__DEFAULT_MAX_WORDS": "25",
    "CONDENSE_VARIANTS__FULL__WEIGHT": "1",
    "CONDENSE_VARIANTS__FULL__SUMMARIZER__DEFAULT_MAX_WORDS": "150",
}


def test_a_named_variant_runs_through_the_api_and_a_batch_upload(
    pipeline: PipelineFactory, sqlite_url: str
) -> None:
    run = pipeline(sqlite_url, env=VARIANTS)
    single = run.submit(make_document(1, sentences=80), mode="async", params={"model": "brief"})
    assert single["variant"] == "brief"
    upload = run.client.post(
        "/v1/batches",
        files=[("files", (f"doc-{i}.txt", make_document(10 + i, sentences=40).encode())) for i in range(3)],
        data={"params": '{"model": "full"}'},
    )
    batch = expect_json(upload, 202)

    done = run.wait_all_final([single["id"]], timeout_s=120)[single["id"]]
    assert (done["status"], done["variant"]) == ("succeeded", "brief")
    assert done["summary"] and len(done["summary"].split()) <= 25
    assert done["params"] == {"max_words": 25}

    deadline = time.monotonic() + 120
    while (current := run.batch(batch["id"]))["status"] == "in_progress":
        assert time.monotonic() < deadline, f"batch not complete: {current['counts']}"
        time.sleep(0.5)
    assert current["counts"]["succeeded"] == 3
    results = [
        expect_json(run.client.get(f"/v1/summaries/{line_id}")) for line_id in _result_ids(run, batch["id"])
    ]
    assert {(job["variant"], job["params"]["max_words"]) for job in results} == {("full", 150)}
    assert all(job["summary"] and len(job["summary"].split()) > 25 for job in results)

    listed = subprocess.run(
        [sys.executable, "-m", "condense", "models", "--url", run.base],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:]}
    assert set(rows) == {"brief", "full"}
    assert rows["brief"][1:4] == ["1", "50.0%", "ready"]
    assert rows["brief"][4] == "extractive"


def _result_ids(run: Pipeline, batch_id: str) -> list[str]:
    lines = [json.loads(line) for line in run.client.get(f"/v1/batches/{batch_id}/results").text.splitlines()]
    assert {line["variant"] for line in lines} == {"full"}
    return [line["job_id"] for line in lines]
