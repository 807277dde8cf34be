"""The baseline condense is measured against: a plain FastAPI endpoint calling Celery ``.delay()``.

This is what a hand-rolled setup looks like: the request publishes the whole text to Redis as a
Celery task and answers with the task id. Run with ``python -m benchmarks.celery_baseline PORT
REDIS_URL``.
"""

from __future__ import annotations

import sys

import uvicorn
from celery import Celery
from fastapi import FastAPI
from pydantic import BaseModel


class Submit(BaseModel):
    text: str
    mode: str = "auto"


def create_app(redis_url: str) -> FastAPI:
    celery = Celery("baseline", broker=redis_url)
    celery.conf.task_ignore_result = True

    @celery.task(name="baseline.summarize")
    def summarize(text: str) -> None:  # pragma: no cover - never consumed in the benchmark
        del text

    app = FastAPI()

    @app.post("/v1/summaries", status_code=202)
    def submit(body: Submit) -> dict[str, str]:
        # A sync endpoint, as most Celery integrations write it: FastAPI runs it in its thread pool.
        result = summarize.delay(body.text)
        return {"id": result.id, "status": "queued"}

    return app


def main() -> None:
    port, redis_url = int(sys.argv[1]), sys.argv[2]
    uvicorn.run(create_app(redis_url), host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
