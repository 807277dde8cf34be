"""``condense batch submit|status|results``: a client of the gateway's batch API."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from schema.settings import Settings

_UPLOADABLE = {".txt", ".md", ".rst", ".html", ".htm", ".pdf", ".zip", ".jsonl"}


def _base_url(settings: Settings, args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url).rstrip("/")
    host = "127.0.0.1" if settings.gateway.host in ("0.0.0.0", "::") else settings.gateway.host  # noqa: S104
    return f"http://{host}:{settings.gateway.port}"


def _api_key(args: argparse.Namespace) -> str | None:
    return args.api_key or os.environ.get("CONDENSE_API_KEY") or None


def _client(settings: Settings, args: argparse.Namespace) -> httpx.Client:
    key = _api_key(args)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=_base_url(settings, args), headers=headers, timeout=300)


def collect_files(paths: list[str]) -> list[Path]:
    """Files to upload: folders are walked (in name order) for the formats the API accepts."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _UPLOADABLE)
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {raw}")
    return found


def _fail(response: httpx.Response, api_key: str | None = None) -> int:
    try:
        error = response.json()["error"]
        print(f"condense: {error['code']}: {error['message']}", file=sys.stderr)
    except (ValueError, KeyError, TypeError):
        print(f"condense: HTTP {response.status_code}: {response.text[:500]}", file=sys.stderr)
    hint = failure_hint(response.status_code, api_key)
    if hint:
        print(hint, file=sys.stderr)
    return 1


def failure_hint(status: int, api_key: str | None) -> str | None:
    """What to do about an answer a newcomer is likely to meet, or None."""
    if status == 401 and not api_key:
        return (
            "hint: this gateway needs an API key. Pass --api-key KEY or set CONDENSE_API_KEY=KEY;\n"
            "      `condense keys create --tenant NAME` makes one."
        )
    if status == 401:
        return "hint: the gateway refused this API key (revoked, mistyped, or made for another database?)."
    if status == 404 and api_key:
        return (
            "hint: each key sees only its tenant's batches. Those uploaded before the first key was\n"
            "      created belong to tenant 'default': read them with a key from\n"
            "      `condense keys create --tenant default`."
        )
    return None


def _wait(client: httpx.Client, batch: dict[str, Any], poll_s: float) -> dict[str, Any]:
    total = batch["counts"]["total"]
    with tqdm(total=total, unit="doc", desc=f"batch {batch['id'][:8]}", file=sys.stderr) as bar:
        while True:
            counts = batch["counts"]
            done = counts["succeeded"] + counts["failed"] + counts["canceled"]
            bar.update(done - bar.n)
            bar.set_postfix(failed=counts["failed"], running=counts["running"])
            if batch["status"] != "in_progress":
                return batch
            time.sleep(poll_s)
            response = client.get(f"/v1/batches/{batch['id']}")
            response.raise_for_status()
            batch = response.json()


def submit(settings: Settings, args: argparse.Namespace) -> int:
    try:
        files = collect_files(args.paths)
    except FileNotFoundError as exc:
        print(f"condense: {exc}", file=sys.stderr)
        return 2
    if not files:
        print("condense: nothing to upload", file=sys.stderr)
        return 2
    form: dict[str, str] = {}
    if args.params:
        form["params"] = args.params
    if args.webhook_url:
        form["webhook_url"] = args.webhook_url
    if args.webhook_secret:
        form["webhook_secret"] = args.webhook_secret
    if args.email:
        form["email"] = args.email
    with _client(settings, args) as client:
        uploads = [("files", (path.name, path.read_bytes())) for path in files]
        response = client.post("/v1/batches", files=uploads, data=form)
        if response.status_code != 202:
            return _fail(response, _api_key(args))
        batch = response.json()
        print(batch["id"])
        if args.wait:
            batch = _wait(client, batch, args.poll_s)
            counts = batch["counts"]
            print(
                f"{batch['status']}: {counts['succeeded']} succeeded, {counts['failed']} failed, "
                f"{counts['canceled']} canceled",
                file=sys.stderr,
            )
            return 0 if counts["failed"] == 0 else 1
    return 0


def status(settings: Settings, args: argparse.Namespace) -> int:
    with _client(settings, args) as client:
        response = client.get(f"/v1/batches/{args.batch_id}")
        if response.status_code != 200:
            return _fail(response, _api_key(args))
        print(response.text if args.json else describe_batch(response.json()))
    return 0


_BAR_WIDTH = 30


def describe_batch(batch: dict[str, Any]) -> str:
    """A batch as a person reads it: status, a progress bar, the counts."""
    counts = batch["counts"]
    total = counts["total"]
    done = counts["succeeded"] + counts["failed"] + counts["canceled"]
    share = done / total if total else 1.0
    filled = round(share * _BAR_WIDTH)
    status = batch["status"].replace("_", " ")
    lines = [
        f"batch     {batch['id']}",
        f"status    {status}",
        f"progress  [{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {share:.0%}  {done} of {total} documents done",
        f"          {counts['succeeded']} succeeded, {counts['failed']} failed, {counts['canceled']} canceled,"
        f" {counts['running']} running, {counts['queued']} queued",
        f"created   {batch['created_at']}",
    ]
    if batch.get("finished_at"):
        lines.append(f"finished  {batch['finished_at']}")
    if batch.get("metadata"):
        lines.append(f"metadata  {json.dumps(batch['metadata'], ensure_ascii=False)}")
    return "\n".join(lines)


def results(settings: Settings, args: argparse.Namespace) -> int:
    with (
        _client(settings, args) as client,
        client.stream("GET", f"/v1/batches/{args.batch_id}/results") as response,
    ):
        if response.status_code != 200:
            response.read()
            return _fail(response, _api_key(args))
        out = Path(args.output).open("w", encoding="utf-8") if args.output else sys.stdout
        try:
            for line in response.iter_lines():
                if line:
                    out.write(line + "\n")
        finally:
            if out is not sys.stdout:
                out.close()
    return 0


def add_arguments(commands: argparse._SubParsersAction[Any]) -> None:
    batch = commands.add_parser("batch", help="upload documents in bulk and collect the results")
    sub = batch.add_subparsers(dest="sub", required=True)

    def client_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--url", default=None, help="gateway base URL (default: from the settings)")
        parser.add_argument("--api-key", default=None, help="API key (default: $CONDENSE_API_KEY)")

    submit_parser = sub.add_parser("submit", help="upload a folder, files, a zip or a JSONL")
    submit_parser.add_argument("paths", nargs="+")
    submit_parser.add_argument("--wait", action="store_true", help="show progress until every document ended")
    submit_parser.add_argument("--params", default=None, help='JSON parameters, e.g. {"max_words": 80}')
    submit_parser.add_argument("--webhook-url", default=None)
    submit_parser.add_argument("--webhook-secret", default=None)
    submit_parser.add_argument("--email", default=None)
    submit_parser.add_argument("--poll-s", type=float, default=1.0)
    client_options(submit_parser)
    submit_parser.set_defaults(handler=submit)

    status_parser = sub.add_parser("status", help="counts and progress of a batch")
    status_parser.add_argument("batch_id")
    status_parser.add_argument("--json", action="store_true", help="print the API's JSON, for scripts")
    client_options(status_parser)
    status_parser.set_defaults(handler=status)

    results_parser = sub.add_parser("results", help="write the results as JSON lines")
    results_parser.add_argument("batch_id")
    results_parser.add_argument("-o", "--output", default=None, help="file to write (default: stdout)")
    client_options(results_parser)
    results_parser.set_defaults(handler=results)
