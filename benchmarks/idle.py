"""Idle CPU of the embedded stack: what `condense dev` costs a laptop while nothing happens.

Starts `condense dev` (SQLite, the in-memory broker, gateway, relay, worker, notifier) in a
scratch folder, waits until every component answers /readyz, lets it settle, then reads the CPU
time (user + system, all threads) of the supervisor and of every process below it from /proc at
the start and the end of an idle window. Prints one row per process and the total, as a
percentage of one core, beside the target.

    python -m benchmarks idle                  # 20 s idle window
    python -m benchmarks.idle --duration-s 60  # a steadier figure

Linux only (/proc).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import httpx

from benchmarks.common import MODEL_CACHE, peps_documents, print_table
from condense.stack import Stack, free_port

TARGET_PERCENT_OF_ONE_CORE = 2.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _children_of() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it."""
    tree = _children_of()
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of ``pid`` (all its threads), None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # utime and stime are fields 14 and 15 of stat; fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def describe(pid: int) -> str:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"pid {pid}"
    words = [arg.decode(errors="replace") for arg in args if arg]
    if "condense" in words:
        rest = words[words.index("condense") + 1 :]
        return (
            f"condense {rest[0]}" + (" (supervisor)" if rest[:1] == ["dev"] else "") if rest else "condense"
        )
    if words[1:2] == ["broker"]:
        return "broker (tansu)"
    return Path(words[0]).name if words else f"pid {pid}"


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own loopback URL
            return bool(response.status == 200)
    except OSError:
        return False


def _one_job(port: int) -> None:
    """Run one async job through, so the producer, the consumer and the notifier are connected
    and warm, as they are once somebody has used the stack."""
    text = " ".join(peps_documents(1)[0].split()[:600])
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        response = client.post("/v1/summaries", json={"text": text, "mode": "async"})
        response.raise_for_status()
        job_id = response.json()["id"]
        deadline = time.monotonic() + 180
        while client.get(f"/v1/summaries/{job_id}").json()["status"] not in {"succeeded", "failed"}:
            if time.monotonic() > deadline:
                raise RuntimeError("the warm-up job never finished")
            time.sleep(0.5)


def measure(
    workdir: Path, duration_s: float, settle_s: float, warm_up: bool = True
) -> list[tuple[str, int, float]]:
    """(process, pid, CPU seconds) over ``duration_s`` of an idle, ready `condense dev`."""
    port = free_port()
    ops = {name: free_port() for name in ("relay", "worker", "notifier")}
    env = {
        "CONDENSE_DATA_DIR": str(workdir),
        "CONDENSE_DATABASE__URL": f"sqlite:///{workdir}/condense.db",
        "CONDENSE_CELERY__BROKER_URL": f"sqla+sqlite:///{workdir}/celery.db",
        "CONDENSE_SUMMARIZER__CACHE_DIR": str(MODEL_CACHE),
        **{f"CONDENSE_{name.upper()}__METRICS_PORT": str(value) for name, value in ops.items()},
    }
    with Stack(workdir, env) as stack:
        dev = stack.condense("dev", "dev", "--port", str(port))
        urls = [f"http://127.0.0.1:{port}/readyz"] + [f"http://127.0.0.1:{p}/readyz" for p in ops.values()]
        deadline = time.monotonic() + 300
        while not all(_ready(url) for url in urls):
            if time.monotonic() > deadline or (dev.process is not None and dev.process.poll() is not None):
                raise RuntimeError(f"the stack never became ready:\n{dev.log_path.read_text()[-3000:]}")
            time.sleep(1)
        if warm_up:
            _one_job(port)
        # Consumer-group joins, first sweeps and topic creation happen just after readiness.
        time.sleep(settle_s)
        assert dev.process is not None
        pids = process_tree(dev.process.pid)
        before = {pid: cpu_seconds(pid) for pid in pids}
        began = time.monotonic()
        time.sleep(duration_s)
        wall_s = time.monotonic() - began
        rows = []
        for pid in pids:
            start, end = before[pid], cpu_seconds(pid)
            if start is None or end is None:
                continue
            rows.append((describe(pid), pid, (end - start) / wall_s))
    return rows


def main(argv: list[str] | None = None) -> list[list[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--duration-s", type=float, default=20.0, help="the idle window measured")
    parser.add_argument("--settle-s", type=float, default=5.0, help="wait after ready before measuring")
    parser.add_argument(
        "--cold", action="store_true", help="measure right after start, with no job run through first"
    )
    args = parser.parse_args(argv)
    if not Path("/proc/self/stat").exists():
        print("idle: needs Linux /proc", file=sys.stderr)
        return []
    with tempfile.TemporaryDirectory(prefix="condense-idle-") as tmp:
        shares = measure(Path(tmp), args.duration_s, args.settle_s, warm_up=not args.cold)
    total = sum(share for _, _, share in shares)
    rows = [["process", "pid", "% of one core"]]
    rows += [[name, str(pid), f"{share * 100:.2f}"] for name, pid, share in sorted(shares)]
    rows.append(["total", "", f"{total * 100:.2f}"])
    verdict = "met" if total * 100 < TARGET_PERCENT_OF_ONE_CORE else "MISSED"
    rows.append([f"target: total < {TARGET_PERCENT_OF_ONE_CORE:g}%", "", verdict])
    after = "ready" if args.cold else "ready and one job"
    print_table(f"Idle CPU of `condense dev`, {args.duration_s:g} s window after {after}", rows)
    return rows


if __name__ == "__main__":
    main()
