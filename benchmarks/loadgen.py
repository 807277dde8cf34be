"""A lean HTTP/1.1 load generator: N keep-alive connections on raw asyncio streams.

A general-purpose client (httpx, aiohttp) spends more CPU per request than the server under test
on a 2-core machine, which would cap what we measure; this one only writes a prepared request and
reads back the status line, headers and body by Content-Length.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    requests: int
    seconds: float
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_s:
            return float("nan")
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies_s) * 1000 if self.latencies_s else float("nan")


def build_request(host: str, port: int, path: str, body: dict[str, object]) -> bytes:
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode() + payload


async def _read_response(reader: asyncio.StreamReader) -> int:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("server closed the connection")
    status = int(status_line.split()[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return status


async def run_load(
    host: str,
    port: int,
    make_request: Callable[[int], bytes],
    *,
    clients: int,
    total: int | None = None,
    duration_s: float | None = None,
) -> LoadResult:
    """Send requests from ``clients`` connections until ``total`` are done or ``duration_s`` passed."""
    if total is None and duration_s is None:
        raise ValueError("give total or duration_s")
    counter = 0
    result = LoadResult(requests=0, seconds=0.0)
    deadline = time.perf_counter() + duration_s if duration_s is not None else float("inf")

    async def client() -> None:
        nonlocal counter
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < deadline:
                if total is not None and counter >= total:
                    return
                index = counter
                counter += 1
                began = time.perf_counter()
                writer.write(make_request(index))
                status = await _read_response(reader)
                result.latencies_s.append(time.perf_counter() - began)
                result.statuses[status] = result.statuses.get(status, 0) + 1
        finally:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    result.seconds = time.perf_counter() - began
    result.requests = len(result.latencies_s)
    return result
