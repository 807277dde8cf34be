"""End-to-end runs: the real gateway, relay, workers and broker as separate processes."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from condense.stack import Stack, free_port

REPO = Path(__file__).resolve().parents[2]
# Shared by every test process so the ONNX export of the default model happens once per machine.
MODEL_CACHE = REPO / "var" / "models"

_WORDS = (
    "queue batch worker broker partition offset summary document token model latency throughput "
    "database transaction commit retry webhook signature tenant gateway relay consumer producer "
    "sentence paragraph abstract evaluation quantization encoder embedding centroid chunk budget"
).split()


def make_document(seed: int, sentences: int = 60) -> str:
    rng = random.Random(seed)
    lines = []
    for _ in range(sentences):
        words = rng.sample(_WORDS, rng.randint(8, 16))
        lines.append(" ".join(words).capitalize() + ".")
    return f"Document {seed}. " + " ".join(lines)


class Pipeline:
    def __init__(self, stack: Stack, port: int) -> None:
        self.stack = stack
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.client = httpx.Client(base_url=self.base, timeout=30)

    def submit(self, text: str, **fields: Any) -> dict[str, Any]:
        response = self.client.post("/v1/summaries", json={"text": text, **fields})
        assert response.status_code in (200, 202), response.text
        job: dict[str, Any] = response.json()
        return job

    def wait_all_final(self, ids: list[str], timeout_s: float) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        final: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            for job_id in ids:
                if job_id in final:
                    continue
                job = self.client.get(f"/v1/summaries/{job_id}").json()
                if job["status"] in ("succeeded", "failed", "canceled"):
                    final[job_id] = job
            if len(final) == len(ids):
                return final
            time.sleep(0.5)
        logs = "\n".join(
            f"--- {child.name}\n{child.log_path.read_text(errors='replace')[-3000:]}"
            for child in self.stack.children
        )
        raise AssertionError(
            f"{len(ids) - len(final)} of {len(ids)} jobs not final after {timeout_s}s\n{logs}"
        )

    def wait_for_status(self, job_ids: list[str], status: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for job_id in job_ids:
                if self.client.get(f"/v1/summaries/{job_id}").json()["status"] == status:
                    return job_id
            time.sleep(0.05)
        raise AssertionError(f"no job reached {status} within {timeout_s}s")


PipelineFactory = Callable[..., Pipeline]


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[PipelineFactory]:
    stacks: list[Stack] = []

    def start(database_url: str, *, workers: int = 1, env: dict[str, str] | None = None) -> Pipeline:
        port = free_port()
        stack = Stack(
            tmp_path,
            {
                "CONDENSE_DATABASE__URL": database_url,
                "CONDENSE_DATA_DIR": str(tmp_path),
                "CONDENSE_CELERY__BROKER_URL": f"sqla+sqlite:///{tmp_path}/celery.db",
                "CONDENSE_SUMMARIZER__CACHE_DIR": str(MODEL_CACHE),
                "CONDENSE_KAFKA__SESSION_TIMEOUT_MS": "6000",
                "CONDENSE_KAFKA__HEARTBEAT_INTERVAL_MS": "500",
                "CONDENSE_KAFKA__TOPIC": f"jobs-{port}",
                "CONDENSE_KAFKA__BULK_TOPIC": f"bulk-{port}",
                "CONDENSE_KAFKA__CONSUMER_GROUP": f"workers-{port}",
                "CONDENSE_NOTIFIER__ALLOW_LOOPBACK": "true",
                **(env or {}),
            },
        )
        stacks.append(stack)
        stack.broker()
        stack.condense("gateway", "gateway", "--port", str(port))
        stack.condense("relay", "relay")
        for index in range(workers):
            stack.condense(f"worker-{index}", "worker")
        stack.wait_ready(port)
        return Pipeline(stack, port)

    yield start
    for stack in stacks:
        stack.stop()
