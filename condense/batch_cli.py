"""``condense batch submit|status|results``: a client of the gateway's batch API."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from condense.client import API_KEY_ENV_VAR, Client, ClientError, upload_files
from schema.api import BatchPublic
from schema.settings import Settings


def _base_url(settings: Settings, args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url).rstrip("/")
    host = "127.0.0.1" if settings.gateway.host in ("0.0.0.0", "::") else settings.gateway.host  # noqa: S104
    return f"http://{host}:{settings.gateway.port}"


def _api_key(args: argparse.Namespace) -> str | None:
    return args.api_key or os.environ.get(API_KEY_ENV_VAR) or None


def _client(settings: Settings, args: argparse.Namespace) -> Client:
    return Client(_base_url(settings, args), api_key=_api_key(args), timeout_s=300, poll_s=args.poll_s)


def _fail(error: ClientError, api_key: str | None = None) -> int:
    print(f"condense: {error.code}: {error.message}", file=sys.stderr)
    hint = failure_hint(error.status, api_key)
    if hint:
        print(hint, file=sys.stderr)
    return 1


def remote(
    command: Callable[[Settings, argparse.Namespace], int],
) -> Callable[[Settings, argparse.Namespace], int]:
    """A command that talks to the gateway: an error answer is one line and a hint, not a traceback."""

    def run(settings: Settings, args: argparse.Namespace) -> int:
        try:
            return command(settings, args)
        except ClientError as exc:
            return _fail(exc, _api_key(args))
        except httpx.TransportError as exc:
            print(
                f"condense: cannot reach the gateway at {_base_url(settings, args)}: {exc}", file=sys.stderr
            )
            return 1

    return run


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


def _done(batch: BatchPublic) -> int:
    return batch.counts.succeeded + batch.counts.failed + batch.counts.canceled


def _wait(client: Client, batch: BatchPublic) -> BatchPublic:
    """Show progress until the batch ends: from its event stream, or by polling where there is none."""
    with tqdm(total=batch.counts.total, unit="doc", desc=f"batch {batch.id[:8]}", file=sys.stderr) as bar:

        def show(current: BatchPublic) -> None:
            bar.update(_done(current) - bar.n)
            bar.set_postfix(failed=current.counts.failed, running=current.counts.running)

        show(batch)
        try:
            for event in client.events(f"/v1/batches/{batch.id}/events"):
                if event.event in ("status", "progress", "end"):
                    batch = BatchPublic.model_validate_json(event.data)
                    show(batch)
        except (ClientError, httpx.TransportError):
            pass  # no stream here, or it broke: polling finishes the job
        if batch.status == "in_progress":
            batch = client.wait_batch(batch.id)
            show(batch)
    return batch


@remote
def submit(settings: Settings, args: argparse.Namespace) -> int:
    try:
        files = upload_files(args.paths)
    except FileNotFoundError as exc:
        print(f"condense: {exc}", file=sys.stderr)
        return 2
    try:
        params = json.loads(args.params) if args.params else None
    except ValueError as exc:
        print(f"condense: --params is not JSON: {exc}", file=sys.stderr)
        return 2
    with _client(settings, args) as client:
        batch = client.upload_batch(
            files,
            params=params,
            webhook_url=args.webhook_url,
            webhook_secret=args.webhook_secret,
            email=args.email,
        )
        print(batch.id)
        if args.wait:
            batch = _wait(client, batch)
            counts = batch.counts
            print(
                f"{batch.status}: {counts.succeeded} succeeded, {counts.failed} failed, "
                f"{counts.canceled} canceled",
                file=sys.stderr,
            )
            return 0 if counts.failed == 0 else 1
    return 0


@remote
def status(settings: Settings, args: argparse.Namespace) -> int:
    with _client(settings, args) as client:
        batch = client.get_batch(args.batch_id)
    print(batch.model_dump_json() if args.json else describe_batch(batch.model_dump(mode="json")))
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


@remote
def results(settings: Settings, args: argparse.Namespace) -> int:
    with _client(settings, args) as client:
        lines = client.results(args.batch_id)
        first = next(lines, None)  # an error answer shows before the output file is made
        out = Path(args.output).open("w", encoding="utf-8") if args.output else sys.stdout
        try:
            for line in itertools.chain([first] if first is not None else [], lines):
                out.write(json.dumps(line, ensure_ascii=False) + "\n")
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
        parser.add_argument(
            "--poll-s", type=float, default=1.0, help="polling period where the gateway streams no events"
        )

    submit_parser = sub.add_parser("submit", help="upload a folder, files, a zip or a JSONL")
    submit_parser.add_argument("paths", nargs="+")
    submit_parser.add_argument("--wait", action="store_true", help="show progress until every document ended")
    submit_parser.add_argument("--params", default=None, help='JSON parameters, e.g. {"max_words": 80}')
    submit_parser.add_argument("--webhook-url", default=None)
    submit_parser.add_argument("--webhook-secret", default=None)
    submit_parser.add_argument("--email", default=None)
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
