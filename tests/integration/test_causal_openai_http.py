"""The openai-http backend against a real OpenAI-compatible server started here.

The server (``http.server`` in a thread, on a free port) serves the tiny random Llama of
``test_causal_engine`` greedily, so the remote summary of a short text must equal the local
engine's, byte for byte. Model names ``overloaded`` and ``refused`` make it answer 503 and 400.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from summarizer import (
    InvalidParamsError,
    SummarizationFailedError,
    SummarizerConfigError,
    SummarizerSettings,
    SummarizerUnavailableError,
    SummaryResult,
    load_summarizer,
)
from summarizer.openai_http import OpenAIHTTPSummarizer
from summarizer.params import params_validator
from tests.fixtures.models import build_tiny_causal, corpus_words

pytestmark = pytest.mark.slow


class _TinyModelServer:
    """Chat completions from a local model directory; records the requests it saw."""

    def __init__(self, model_dir: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True).eval()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[str | None] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.lock = threading.Lock()
        self.model_lock = threading.Lock()

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if body.get("model") == "overloaded":
            return 503, {"error": {"message": "server overloaded"}}
        if body.get("model") == "refused":
            return 400, {"error": {"message": "this model does not exist"}}
        ids = self.tokenizer.apply_chat_template(body["messages"], add_generation_prompt=True, tokenize=True)
        with self.model_lock, self.torch.inference_mode():
            output = self.model.generate(
                input_ids=self.torch.tensor([ids]),
                max_new_tokens=int(body["max_tokens"]),
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        text = self.tokenizer.decode(output[0, len(ids) :], skip_special_tokens=True)
        return 200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}


@pytest.fixture(scope="module")
def tiny_causal_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_causal(tmp_path_factory.mktemp("tiny-llama-http"))


@pytest.fixture(scope="module")
def server(tiny_causal_dir: Path) -> Iterator[tuple[str, _TinyModelServer]]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    backend = _TinyModelServer(tiny_causal_dir)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with backend.lock:
                backend.requests.append(body)
                backend.headers.append(self.headers.get("Authorization"))
                backend.in_flight += 1
                backend.most_in_flight = max(backend.most_in_flight, backend.in_flight)
            try:
                status, payload = (
                    backend.answer(body) if self.path == "/v1/chat/completions" else (404, {"error": "no"})
                )
            finally:
                with backend.lock:
                    backend.in_flight -= 1
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", backend
    finally:
        torch.set_num_threads(threads)
        httpd.shutdown()
        httpd.server_close()


def _settings(url: str, model: str = "tiny", **extra: Any) -> SummarizerSettings:
    openai = {"base_url": url, "model": model, "max_concurrency": 2, "timeout_s": 30.0} | extra.pop(
        "openai", {}
    )
    return SummarizerSettings(backend="openai-http", openai=openai, **extra)  # type: ignore[arg-type]


def _long_text(sentences: int) -> str:
    words = corpus_words()
    return " ".join(
        " ".join(words[(number * 7 + k) % len(words)] for k in range(10)).capitalize() + "."
        for number in range(sentences)
    )


def test_remote_summary_equals_the_local_engine(
    server: tuple[str, _TinyModelServer], tiny_causal_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, backend = server
    monkeypatch.setenv("TINY_KEY", "sk-test")
    remote = load_summarizer(
        _settings(url, openai={"api_key_env": "TINY_KEY", "tokenizer_dir": str(tiny_causal_dir)})
    )
    assert isinstance(remote, OpenAIHTTPSummarizer)
    assert (remote.info.kind, remote.info.backend, remote.info.name) == ("causal", "openai-http", "tiny")
    local = load_summarizer(
        SummarizerSettings(model=str(tiny_causal_dir), backend="torch-fp32", device="cpu", num_threads=1)
    )
    docs = ["The gateway answers short texts at once.", "Workers pull jobs from the queue in batches."]
    params = remote.validate_params({"max_new_tokens": 12})
    remote_results = remote.summarize_batch(docs, params)
    local_results = local.summarize_batch(docs, local.validate_params({"max_new_tokens": 12}))
    assert all(isinstance(result, SummaryResult) for result in remote_results + local_results)
    assert [r.summary for r in remote_results] == [r.summary for r in local_results]  # type: ignore[union-attr]
    assert backend.headers[-1] == "Bearer sk-test"
    sent = backend.requests[-2:]
    assert all(body["max_tokens"] == 12 and body["temperature"] == 0.0 for body in sent)
    assert all(body["messages"][0]["role"] == "system" for body in sent)
    assert sorted(doc in body["messages"][-1]["content"] for doc in docs for body in sent) == [0, 0, 1, 1]


def test_long_document_is_reduced_with_bounded_concurrency(server: tuple[str, _TinyModelServer]) -> None:
    url, backend = server
    # Words estimate: no tokenizer configured.
    remote = load_summarizer(_settings(url, max_context_tokens=160))
    progress: list[tuple[int, int, int]] = []
    text = _long_text(40)
    (result,) = remote.summarize_batch(
        [text], remote.validate_params({"max_new_tokens": 16}), on_progress=lambda *e: progress.append(e)
    )
    assert isinstance(result, SummaryResult) and result.chunks > 2
    assert progress[-1][1] == progress[-1][2] == result.chunks
    assert 1 <= backend.most_in_flight <= 2
    # Every sentence of the document went to the server in some chunk.
    sent = " ".join(request["messages"][-1]["content"] for request in backend.requests)
    assert all(sentence.strip() in sent for sentence in text.split(".") if sentence.strip())


def test_503_is_retryable_and_400_permanent(server: tuple[str, _TinyModelServer]) -> None:
    url, _backend = server
    overloaded = load_summarizer(_settings(url, model="overloaded"))
    (entry,) = overloaded.summarize_batch(["Some text."], overloaded.validate_params({}))
    assert isinstance(entry, SummarizerUnavailableError) and entry.retryable and "503" in entry.message
    refused = load_summarizer(_settings(url, model="refused"))
    (entry,) = refused.summarize_batch(["Some text."], refused.validate_params({}))
    assert isinstance(entry, SummarizationFailedError) and not entry.retryable
    assert "does not exist" in entry.message


def test_unreachable_server_is_retryable() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    remote = load_summarizer(_settings(f"http://127.0.0.1:{port}"))
    (entry,) = remote.summarize_batch(["Some text."], remote.validate_params({}))
    assert isinstance(entry, SummarizerUnavailableError) and entry.retryable


def test_settings_and_params(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MISSING_KEY", raising=False)
    with pytest.raises(SummarizerConfigError, match="MISSING_KEY"):
        load_summarizer(_settings("http://127.0.0.1:9", openai={"api_key_env": "MISSING_KEY"}))
    with pytest.raises(SummarizerConfigError, match=r"openai\.model"):
        load_summarizer(_settings("http://127.0.0.1:9", model=""))
    validator = params_validator(_settings("http://127.0.0.1:9"))
    assert validator.kind == "causal"
    with pytest.raises(InvalidParamsError, match="adapter"):
        validator.validate({"adapter": "legal"})
    assert validator.validate({"temperature": 0.7}).temperature == 0.7
