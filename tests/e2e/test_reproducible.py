"""The same text gets the same summary, byte for byte, on the gateway's sync path and from a worker.

Both call ``summarize_batch`` of the same engine, each with whatever company arrives: the
micro-batcher groups concurrent requests, the worker groups the jobs it pulls from Kafka.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

from summarizer.evaluation import load_eval_set, shipped_set
from tests.fixtures.pipeline import PipelineFactory


def test_sync_answer_and_worker_result_are_the_same_bytes(pipeline: PipelineFactory, sqlite_url: str) -> None:
    run = pipeline(sqlite_url)
    rng = random.Random(3)
    docs = [*load_eval_set(shipped_set("peps"), 6), *load_eval_set(shipped_set("keps"), 6)]
    texts = [" ".join(doc.document.split()[: rng.randint(60, 240)]) for doc in docs]
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda text: run.submit(text, mode="sync"), texts))
    assert {answer["route"] for answer in answers} == {"sync"}
    # Queued in the opposite order, so that the worker's batches mix the texts differently.
    queued = {text: run.submit(text, mode="async")["id"] for text in reversed(texts)}
    final = run.wait_all_final(list(queued.values()), timeout_s=300)
    for text, answer in zip(texts, answers, strict=True):
        job = final[queued[text]]
        assert job["status"] == "succeeded"
        assert job["summary"] == answer["summary"]
        assert job["model"] == answer["model"]
        assert job["model"]["engine_version"].endswith(job["model"]["quantization"])
