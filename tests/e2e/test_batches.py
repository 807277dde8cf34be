"""Batch uploads through the whole pipeline, beside interactive work that must not starve."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from condense.client import Client
from tests.fixtures.pipeline import PipelineFactory, expect_json, make_document


def zip_of(documents: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in documents.items():
            archive.writestr(name, text)
    return buffer.getvalue()


@pytest.mark.drill
def test_zip_of_1000_documents_completes_without_starving_a_single_job(
    pipeline: PipelineFactory, sqlite_url: str
) -> None:
    run = pipeline(sqlite_url, env={"CONDENSE_WORKER__MAX_BATCH": "16"})
    documents = {f"docs/{index:04d}.txt": make_document(index, sentences=10) for index in range(1000)}
    response = run.client.post("/v1/batches", files=[("files", ("docs.zip", zip_of(documents)))])
    batch = expect_json(response, 202)
    assert batch["counts"]["total"] == 1000
    assert batch["status"] == "in_progress"

    # Let the workers get busy with the bulk lane, then submit one interactive job.
    deadline = time.monotonic() + 120
    while run.batch(batch["id"])["counts"]["succeeded"] < 20:
        assert time.monotonic() < deadline, "the batch never started"
        time.sleep(0.2)
    single = run.submit(make_document(5_000, sentences=80), mode="async")
    run.wait_all_final([single["id"]], timeout_s=60)
    progress = run.batch(batch["id"])
    assert progress["status"] == "in_progress", "the single job waited for the whole batch"
    assert progress["counts"]["succeeded"] < 1000

    # Partial results are readable while the batch runs.
    partial = [
        line for line in run.client.get(f"/v1/batches/{batch['id']}/results").text.splitlines() if line
    ]
    assert 0 < len(partial) < 1000

    deadline = time.monotonic() + 400
    while (current := run.batch(batch["id"]))["status"] == "in_progress":
        assert time.monotonic() < deadline, f"batch not complete: {current['counts']}"
        time.sleep(1)
    assert current["status"] == "completed"
    assert current["counts"]["succeeded"] == 1000

    lines = [
        json.loads(line) for line in run.client.get(f"/v1/batches/{batch['id']}/results").text.splitlines()
    ]
    assert len(lines) == 1000
    assert [line["custom_id"] for line in lines] == sorted(documents)
    assert {line["status"] for line in lines} == {"succeeded"}
    assert all(line["summary"] for line in lines)


def test_cli_submits_a_folder_waits_and_writes_results(
    pipeline: PipelineFactory, sqlite_url: str, tmp_path: Path
) -> None:
    run = pipeline(sqlite_url)
    folder = tmp_path / "folder"
    folder.mkdir()
    for index in range(5):
        (folder / f"note-{index}.md").write_text(f"# Note {index}\n\n" + make_document(index, sentences=12))
    submitted = subprocess.run(
        [sys.executable, "-m", "condense", "batch", "submit", str(folder), "--wait", "--url", run.base],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert submitted.returncode == 0, submitted.stderr
    batch_id = submitted.stdout.strip().splitlines()[0]
    assert "completed: 5 succeeded" in submitted.stderr
    out = tmp_path / "results.jsonl"
    fetched = subprocess.run(
        [sys.executable, "-m", "condense", "batch", "results", batch_id, "-o", str(out), "--url", run.base],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert fetched.returncode == 0, fetched.stderr
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(result["custom_id"] for result in results) == [f"note-{i}.md" for i in range(5)]
    assert {result["status"] for result in results} == {"succeeded"}
    # The Python client on the same pipeline: a long job waited on through its event stream, and
    # a batch whose results arrive one by one as the worker ends them.
    with Client(run.base) as client:
        job = client.submit(make_document(99, sentences=40), mode="async", max_words=30)
        assert job.status == "queued"
        done = client.wait(job.id, timeout_s=120)
        assert done.status == "succeeded", done.error
        assert done.summary
        batch = client.upload_batch(folder)
        arrived = list(client.iter_results(batch.id))
        assert sorted(result.custom_id or "" for result in arrived) == [f"note-{i}.md" for i in range(5)]
        assert {result.status for result in arrived} == {"succeeded"}
        assert client.get_batch(batch.id).status == "completed"
