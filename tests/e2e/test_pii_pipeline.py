"""mask_stored end to end: planted personal data never rests anywhere the pipeline writes.

Real gateway, relay, worker and notifier processes, the broker, PostgreSQL, a webhook receiver and
an SMTP server. After the jobs finish and both notifications arrive, every text and JSON column of
every table, every process log, every webhook body and every e-mail is searched for the values.
"""

from __future__ import annotations

import json

from sqlalchemy import JSON, String, Text, create_engine, select

from schema.db import sync_url
from schema.models import Base, JobStats, ModelAuditEvent
from tests.fixtures.pipeline import PipelineFactory, make_document
from tests.fixtures.receivers import SmtpServer, WebhookReceiver

PLANTED = {
    "EMAIL": "marguerite.dupont@example.fr",
    "PHONE": "+33 6 12 34 56 78",
    "CREDIT_CARD": "4539 1488 0343 6467",
    "IBAN": "DE89 3704 0044 0532 0130 00",
    "CN_RESIDENT_ID": "11010519491231002X",
    "US_SSN": "536-22-8714",
    "IPV4": "203.0.113.77",
    "SECRET": "sk-live4f9K2mQ8zR1tX7vB3nL6pW0",
}
JOBS = 3


def _document(seed: int) -> str:
    # Every sentence carries a planted value, so whichever sentences the summary picks carry one.
    values = list(PLANTED.values())
    sentences = make_document(seed, sentences=48).split(". ")
    return ". ".join(
        f"{sentence} (contact {values[i % len(values)]})" for i, sentence in enumerate(sentences)
    )


def _leaks(text: str) -> list[str]:
    return [kind for kind, value in PLANTED.items() if value in text]


def test_mask_stored_leaves_no_planted_value_anywhere(
    pipeline: PipelineFactory,
    pg_url: str,
    webhook_receiver: WebhookReceiver,
    smtp_server: SmtpServer,
) -> None:
    run = pipeline(
        pg_url,
        env={
            "CONDENSE_GOVERNANCE__PII__DEFAULT_MODE": "mask_stored",
            "CONDENSE_NOTIFIER__SWEEP_INTERVAL_S": "1",
            "CONDENSE_NOTIFIER__SMTP__HOST": smtp_server.host,
            "CONDENSE_NOTIFIER__SMTP__PORT": str(smtp_server.port),
            "CONDENSE_LOGGING__LEVEL": "DEBUG",
        },
    )
    run.stack.condense("notifier", "notifier")
    hook = {"url": webhook_receiver.url, "secret": webhook_receiver.secret}
    ids = [
        run.submit(_document(seed), mode="async", webhook=hook, email="ops@example.com")["id"]
        for seed in range(JOBS)
    ]
    final = run.wait_all_final(ids, timeout_s=300)
    assert {job["status"] for job in final.values()} == {"succeeded"}
    for job in final.values():
        assert job["pii"] == "mask_stored"
        assert "<" in job["summary"] and _leaks(job["summary"]) == []
        # The real model was loaded against its manifest, and the result names both digests.
        assert len(job["model"]["manifest_sha256"]) == 64 and len(job["model"]["sha256"]) == 64
    webhooks = webhook_receiver.wait_for(JOBS, timeout_s=60)
    emails = smtp_server.wait_for(JOBS, timeout_s=60)

    # -- the database: every text or JSON column of every table ---------------------------------
    engine = create_engine(sync_url(pg_url))
    scanned = 0
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            columns = [c for c in table.columns if isinstance(c.type, String | Text | JSON)]
            if not columns:
                continue
            for row in conn.execute(select(*columns)):
                for column, value in zip(columns, row, strict=True):
                    if value is None:
                        continue
                    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
                    scanned += 1
                    assert _leaks(text) == [], f"{table.name}.{column.name} holds {_leaks(text)}"
        stats = dict(conn.execute(select(JobStats.job_id, JobStats.unknown_token_share)).all())
        loads = conn.execute(select(ModelAuditEvent.component, ModelAuditEvent.event)).all()
    engine.dispose()
    assert scanned > JOBS * 5
    # The worker kept drift statistics of each job and put its model load on record.
    assert set(ids) <= set(stats)
    # MiniLM's WordPiece vocabulary has [UNK]: the share is known (and small for English).
    assert all(stats[job_id] is not None and 0 <= stats[job_id] < 0.2 for job_id in ids)
    assert ("worker", "load") in {tuple(row) for row in loads}

    # -- what left the system, and what the processes wrote -------------------------------------
    for request in webhooks:
        assert _leaks(request.body.decode()) == [], "a planted value in a webhook"
    for message in emails:
        assert _leaks(message.message.as_string()) == [], "a planted value in an e-mail"
    for child in run.stack.children:
        text = child.log_path.read_text(errors="replace")
        assert _leaks(text) == [], f"{_leaks(text)} in the {child.name} log"
