"""What operators see of a running stack: metrics, probes and logs of every real process.

One stack (broker, gateway, relay, one worker, the notifier) with JSON logs. The test scrapes each
process before and after real jobs, checks that the documented metrics exist and move, that every
process answers its probes, that the worker writes one JSON line per finished job, and that no log
holds document text or a signing secret. Stopping the broker at the end shows the relay's outbox
gauge and readiness follow a publish outage.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from condense.stack import free_port
from tests.fixtures.pipeline import Pipeline, PipelineFactory, expect_json, make_document
from tests.fixtures.receivers import WebhookReceiver

pytestmark = pytest.mark.slow

# Documented metric -> (type, the process that must expose it).
DOCUMENTED: dict[str, tuple[str, str]] = {
    "condense_http_requests_total": ("counter", "gateway"),
    "condense_http_request_duration_seconds": ("histogram", "gateway"),
    "condense_submissions_total": ("counter", "gateway"),
    "condense_jobs_total": ("counter", "worker"),
    "condense_job_failures_total": ("counter", "worker"),
    "condense_kafka_consumer_lag": ("gauge", "worker"),
    "condense_batch_documents": ("histogram", "worker"),
    "condense_batch_tokens": ("histogram", "worker"),
    "condense_inference_seconds": ("histogram", "worker"),
    "condense_queue_wait_seconds": ("histogram", "worker"),
    "condense_outbox_pending": ("gauge", "relay"),
    "condense_notifications_total": ("counter", "notifier"),
}
GOOD_JOBS = 6
# Words that occur in no log message, so finding one in a log means document text leaked.
MARKER = "xylomarker"


class Scrape:
    def __init__(self, text: str) -> None:
        self.families = list(text_string_to_metric_families(text))
        self.samples: list[Sample] = [s for family in self.families for s in family.samples]

    def has(self, name: str, kind: str) -> bool:
        # The parser names a counter's family without its _total suffix.
        family = name.removesuffix("_total") if kind == "counter" else name
        return any(f.name == family and f.type == kind for f in self.families)

    def total(self, name: str, **labels: str) -> float:
        return sum(s.value for s in self.samples if s.name == name and labels.items() <= s.labels.items())

    def count(self, name: str) -> int:
        return sum(1 for s in self.samples if s.name == name)


def _scrape(base: str) -> Scrape:
    response = httpx.get(f"{base}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape(response.text)


def _wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, run: Pipeline) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            logs = "\n".join(
                f"--- {c.name}\n{c.log_path.read_text(errors='replace')[-3000:]}" for c in run.stack.children
            )
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}\n{logs}")
        time.sleep(0.25)


def _document(seed: int) -> str:
    # The marker sits in every sentence, so any sentence (or summary) that reaches a log shows.
    return make_document(seed, sentences=40).replace(". ", f" {MARKER}{seed}. ")


def _json_lines(path: Path, after: str | None = None) -> list[dict[str, Any]]:
    """Every line of the log as JSON; with ``after``, only from the first line holding that text.

    The worker's Celery prints its banner to stdout before the consumer starts; from the
    consumer's first line on, everything must be JSON.
    """
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if after is not None:
        lines = lines[next(i for i, line in enumerate(lines) if after in line) :]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"{path.name}: not a JSON line: {line[:200]}") from None
    return parsed


def test_metrics_probes_and_logs_of_every_process(
    pipeline: PipelineFactory, sqlite_url: str, webhook_receiver: WebhookReceiver
) -> None:
    ports = {"worker": free_port(), "relay": free_port(), "notifier": free_port()}
    run = pipeline(
        sqlite_url,
        env={
            "CONDENSE_WORKER__METRICS_PORT": str(ports["worker"]),
            "CONDENSE_RELAY__METRICS_PORT": str(ports["relay"]),
            "CONDENSE_NOTIFIER__METRICS_PORT": str(ports["notifier"]),
            "CONDENSE_NOTIFIER__SWEEP_INTERVAL_S": "1",
            "CONDENSE_LOGGING__FORMAT": "json",
            # A stopped broker must fail the relay's publish within seconds, not the default 15.
            "CONDENSE_KAFKA__REQUEST_TIMEOUT_MS": "3000",
        },
    )
    run.stack.condense("notifier", "notifier")
    bases = {"gateway": run.base} | {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    for port in ports.values():
        run.stack.wait_ready(port)

    # -- probes --------------------------------------------------------------------------------
    for name, base in bases.items():
        health = httpx.get(f"{base}/healthz", timeout=10)
        assert health.status_code == 200, (name, health.text)
        ready = httpx.get(f"{base}/readyz", timeout=10)
        assert ready.status_code == 200, (name, ready.text)
        body = ready.json()
        assert body["ready"] is True and set(body["checks"].values()) <= {"ok", "ready"}, (name, body)
        missing = httpx.get(f"{base}/no-such-path", timeout=10)
        assert missing.status_code == 404, name
        assert missing.json()["error"]["code"] == "not_found", name
    assert set(expect_json(httpx.get(f"{bases['notifier']}/readyz"))["checks"]) == {"db", "broker"}
    assert set(expect_json(httpx.get(f"{bases['relay']}/readyz"))["checks"]) == {"db", "publish"}

    before = {name: _scrape(base) for name, base in bases.items()}
    for name, (kind, owner) in DOCUMENTED.items():
        assert before[owner].has(name, kind), f"{owner} does not expose {name} ({kind})"

    # -- jobs: some succeed, one fails in the worker, each with a signed webhook ------------------
    hook = {"url": webhook_receiver.url, "secret": webhook_receiver.secret}
    good = [run.submit(_document(seed), mode="async", webhook=hook)["id"] for seed in range(GOOD_JOBS)]
    # Only a fenced code block: the gateway queues it, the engine finds no sentence to summarize.
    code_only = "```python\n" + "\n".join(f"{MARKER}_{i} = {i}" for i in range(200)) + "\n```\n"
    bad = run.submit(code_only, mode="async", webhook=hook)["id"]
    final = run.wait_all_final([*good, bad], timeout_s=240)
    assert {final[job_id]["status"] for job_id in good} == {"succeeded"}
    assert final[bad]["status"] == "failed"
    failure_code = final[bad]["error"]["code"]

    deliveries = webhook_receiver.wait_for(GOOD_JOBS + 1, timeout_s=60)
    assert all(request.verified for request in deliveries)
    _wait_until(
        lambda: (
            _scrape(bases["notifier"]).total(
                "condense_notifications_total", channel="webhook", outcome="succeeded"
            )
            >= GOOD_JOBS + 1
        ),
        30,
        "the notifier to count its deliveries",
        run,
    )

    # -- metrics moved ----------------------------------------------------------------------------
    after = {name: _scrape(base) for name, base in bases.items()}
    gateway_b, gateway_a = before["gateway"], after["gateway"]
    assert (
        gateway_a.total("condense_submissions_total", route="async")
        - gateway_b.total("condense_submissions_total", route="async")
        == GOOD_JOBS + 1
    )
    assert (
        gateway_a.total("condense_http_requests_total", route="/v1/summaries", method="POST")
        - (gateway_b.total("condense_http_requests_total", route="/v1/summaries", method="POST"))
        == GOOD_JOBS + 1
    )
    assert gateway_a.total("condense_http_request_duration_seconds_count") > gateway_b.total(
        "condense_http_request_duration_seconds_count"
    )

    worker_b, worker_a = before["worker"], after["worker"]

    def moved(name: str, **labels: str) -> float:
        return worker_a.total(name, **labels) - worker_b.total(name, **labels)

    assert moved("condense_jobs_total", status="succeeded", route="async") == GOOD_JOBS
    assert moved("condense_jobs_total", status="failed", route="async") == 1
    assert moved("condense_job_failures_total", code=failure_code) == 1
    assert moved("condense_queue_wait_seconds_count") == GOOD_JOBS + 1
    assert moved("condense_batch_documents_count") >= 1
    assert moved("condense_batch_documents_sum") == GOOD_JOBS + 1
    assert moved("condense_batch_tokens_count") >= 1
    assert moved("condense_batch_tokens_sum") > 0
    assert moved("condense_inference_seconds_count", path="async") >= 1
    lag = [s for s in worker_a.samples if s.name == "condense_kafka_consumer_lag"]
    assert lag and {s.labels["topic"] for s in lag} <= {f"jobs-{run.port}", f"bulk-{run.port}"}
    assert all(s.value >= 0 for s in lag)

    notifier_b, notifier_a = before["notifier"], after["notifier"]
    assert (
        notifier_a.total("condense_notifications_total", channel="webhook", outcome="succeeded")
        - (notifier_b.total("condense_notifications_total", channel="webhook", outcome="succeeded"))
        == GOOD_JOBS + 1
    )
    assert notifier_a.count("condense_notification_attempt_seconds_count") >= 1

    # -- logs -------------------------------------------------------------------------------------
    worker_lines = _json_lines(run.stack.child("worker-0").log_path, after="model of variant")
    assert worker_lines and all(line["component"] == "worker" for line in worker_lines)
    finished = {line["job_id"]: line for line in worker_lines if "job_id" in line and "status" in line}
    assert set(finished) == {*good, bad}
    assert {finished[job_id]["status"] for job_id in good} == {"succeeded"}
    assert finished[bad]["status"] == "failed" and finished[bad]["error_code"] == failure_code
    for line in finished.values():
        assert line["level"] == "INFO" and line["tenant"] and line["duration_s"] >= 0
    for name in ("gateway", "relay", "notifier"):
        lines = _json_lines(run.stack.child(name).log_path)
        assert lines and {line["component"] for line in lines} == {name}, name
    for child in run.stack.children:
        text = child.log_path.read_text(errors="replace")
        assert MARKER not in text, f"document text in the {child.name} log"
        assert webhook_receiver.secret not in text, f"a signing secret in the {child.name} log"
        summary = final[good[0]]["summary"]
        assert summary[:60] not in text, f"a summary in the {child.name} log"

    # -- a publish outage shows on the relay ------------------------------------------------------
    broker = run.stack.child("broker")
    broker.stop()
    stranded = run.submit(_document(100), mode="async")["id"]
    assert stranded
    relay = bases["relay"]
    _wait_until(
        lambda: (
            _scrape(relay).total("condense_outbox_pending") >= 1
            and httpx.get(f"{relay}/readyz", timeout=10).status_code == 503
        ),
        60,
        "the relay to report the stranded job and fail readiness",
        run,
    )
    checks = expect_json(httpx.get(f"{relay}/readyz", timeout=10), 503)["checks"]
    assert checks["db"] == "ok" and checks["publish"].startswith("error")
    assert httpx.get(f"{relay}/healthz", timeout=10).status_code == 200, "alive while not ready"
    broker.start(run.stack.env)
    _wait_until(
        lambda: (
            httpx.get(f"{relay}/readyz", timeout=10).status_code == 200
            and _scrape(relay).total("condense_outbox_pending") == 0
        ),
        90,
        "the relay to publish the outbox once the broker is back",
        run,
    )
