"""Upload memory: a 500 MB batch upload must be refused with < 20 MB of extra gateway memory.

Starts a real gateway process (SQLite, the default model) and, once it is ready and settled,
sends 500 MB multipart uploads to ``POST /v1/batches`` over a raw socket:

- with a ``Content-Length`` header: refused from the header alone, before a byte of the body;
- chunked (no length): one 500 MB file, and the same 500 MB as thousands of small files, which a
  parser that keeps small parts in memory would hold up to the body limit (~210 MB by default).

For each upload it resets the gateway's peak RSS (``/proc/PID/clear_refs``), sends until the
gateway answers, and reports the peak RSS growth over the settled baseline beside the target.

    python -m benchmarks upload
    python -m benchmarks.upload --total-mb 300   # quicker; still over the ~210 MB default limit

Linux only (/proc).
"""

from __future__ import annotations

import argparse
import select
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import MODEL_CACHE, print_table
from condense.stack import Stack, free_port
from schema.db import upgrade

TARGET_MB = 20.0
_BLOCK = 1 << 20
_BOUNDARY = "condense-bench-boundary"
_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Shape:
    name: str
    files: int
    chunked: bool


@dataclass(frozen=True)
class Outcome:
    status: str
    sent_mb: float
    seconds: float
    peak_growth_mb: float


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


def _reset_peak(pid: int) -> None:
    # Writing 5 resets VmHWM to the current RSS, so the next read is the peak of what follows.
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _part_head(index: int) -> bytes:
    return (
        f"--{_BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="files"; filename="doc{index}.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()


_CLOSING = f"--{_BOUNDARY}--\r\n".encode()


def _multipart(total_bytes: int, files: int) -> Iterator[bytes]:
    per_file = max(1, total_bytes // files)
    line = b"Uploads stream to disk, never to memory. " * 24 + b"\n"
    for index in range(files):
        yield _part_head(index)
        left = per_file
        while left > 0:
            size = min(left, _BLOCK)
            yield (line * (size // len(line) + 1))[:size]
            left -= size
        yield b"\r\n"
    yield _CLOSING


def _body_size(total_bytes: int, files: int) -> int:
    per_file = max(1, total_bytes // files)
    return sum(len(_part_head(index)) + per_file + 2 for index in range(files)) + len(_CLOSING)


def _coalesce(pieces: Iterator[bytes]) -> Iterator[bytes]:
    buffer = bytearray()
    for piece in pieces:
        buffer += piece
        if len(buffer) >= _BLOCK:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


def send_upload(port: int, total_bytes: int, shape: Shape) -> tuple[str, int]:
    """Send until the gateway answers or the body ends; the status line and the bytes sent."""
    headers = [
        "POST /v1/batches HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        f"Content-Type: multipart/form-data; boundary={_BOUNDARY}",
    ]
    if shape.chunked:
        headers.append("Transfer-Encoding: chunked")
    else:
        headers.append(f"Content-Length: {_body_size(total_bytes, shape.files)}")
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=_TIMEOUT_S) as sock:
        sock.sendall(("\r\n".join(headers) + "\r\n\r\n").encode())
        try:
            for block in _coalesce(_multipart(total_bytes, shape.files)):
                # Stop as soon as an answer is waiting: the gateway has made up its mind.
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break
                sock.sendall(f"{len(block):x}\r\n".encode() + block + b"\r\n" if shape.chunked else block)
                sent += len(block)
            else:
                if shape.chunked:
                    sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            while b"\r\n" not in answer:
                data = sock.recv(4096)
                if not data:
                    break
                answer += data
        except (ConnectionResetError, TimeoutError):
            pass
    status = answer.split(b"\r\n", 1)[0].decode(errors="replace") or "(connection closed, no answer)"
    return status, sent


def measure(total_mb: int, shapes: list[Shape]) -> list[tuple[Shape, Outcome]]:
    with tempfile.TemporaryDirectory(prefix="condense-upload-") as tmp:
        workdir = Path(tmp)
        url = f"sqlite:///{workdir / 'condense.db'}"
        upgrade(url)
        port = free_port()
        env = {
            "CONDENSE_DATABASE__URL": url,
            "CONDENSE_DATA_DIR": str(workdir),
            "CONDENSE_SUMMARIZER__CACHE_DIR": str(MODEL_CACHE),
            "CONDENSE_LOGGING__LEVEL": "WARNING",
            # Spooled uploads land here, not in the machine's shared /tmp.
            "TMPDIR": str(workdir),
        }
        results = []
        with Stack(workdir, env) as stack:
            gateway = stack.condense("gateway", "gateway", "--port", str(port))
            stack.wait_ready(port)
            assert gateway.process is not None
            pid = gateway.process.pid
            # The first requests after readiness allocate lazily (imports, pools); let that happen.
            send_upload(port, 1 << 20, Shape("warm-up", 1, chunked=True))
            time.sleep(2)
            for shape in shapes:
                baseline_kb = _status_kb(pid, "VmRSS")
                _reset_peak(pid)
                began = time.perf_counter()
                status, sent = send_upload(port, total_mb << 20, shape)
                seconds = time.perf_counter() - began
                peak_kb = _status_kb(pid, "VmHWM")
                results.append(
                    (shape, Outcome(status, sent / (1 << 20), seconds, max(0, peak_kb - baseline_kb) / 1024))
                )
                # Let the gateway drop what the refused request left, so uploads do not add up.
                time.sleep(1)
    return results


def main(argv: list[str] | None = None) -> list[list[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--total-mb", type=int, default=500, help="size of each upload")
    parser.add_argument("--small-files", type=int, default=5_000, help="files in the many-files upload")
    args = parser.parse_args(argv)
    if not Path("/proc/self/status").exists():
        print("upload: needs Linux /proc", file=sys.stderr)
        return []
    shapes = [
        Shape("Content-Length, one file", 1, chunked=False),
        Shape("chunked, one file", 1, chunked=True),
        Shape(f"chunked, {args.small_files} files", args.small_files, chunked=True),
    ]
    rows = [["upload", "answer", "MB sent", "seconds", "peak RSS growth MB", f"target < {TARGET_MB:g} MB"]]
    for shape, outcome in measure(args.total_mb, shapes):
        refused = outcome.status.startswith("HTTP/1.1 413")
        verdict = "met" if refused and outcome.peak_growth_mb < TARGET_MB else "MISSED"
        rows.append(
            [
                f"{args.total_mb} MB, {shape.name}",
                outcome.status.removeprefix("HTTP/1.1 "),
                f"{outcome.sent_mb:.0f}",
                f"{outcome.seconds:.1f}",
                f"{outcome.peak_growth_mb:.1f}",
                verdict,
            ]
        )
    print_table("Gateway memory while refusing an oversized batch upload", rows)
    return rows


if __name__ == "__main__":
    main()
