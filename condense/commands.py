"""Sub-commands that start or drive the components; each imports its component lazily."""

from __future__ import annotations

import argparse
from typing import Any

from condense.logs import configure_logging
from schema.settings import Settings


def _gateway(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_app

    if args.port is not None:
        settings.gateway.port = args.port
    if args.host is not None:
        settings.gateway.host = args.host
    configure_logging(settings.logging, "gateway")
    uvicorn.run(
        create_app(settings),
        host=settings.gateway.host,
        port=settings.gateway.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    return 0


def _relay(settings: Settings, _args: argparse.Namespace) -> int:
    from relay.app import run

    configure_logging(settings.logging, "relay")
    return run(settings)


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from workers.app import run

    if getattr(args, "allow_model_mismatch", False):
        settings.worker.allow_model_mismatch = True
    configure_logging(settings.logging, "worker")
    return run(settings)


def _notifier(settings: Settings, _args: argparse.Namespace) -> int:
    from notifier.app import run

    configure_logging(settings.logging, "notifier")
    return run(settings)


def _keys_create(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.auth import OPEN_TENANT, create_key, list_keys
    from schema.db import make_engine

    engine = make_engine(settings.database)
    first = not list_keys(engine)
    created = create_key(engine, args.tenant, args.name)
    print(f"key id:  {created.id}")
    print(f"tenant:  {created.tenant}")
    print(f"api key: {created.key}")
    print("Store the key now: only its hash is kept.")
    print()
    print(key_usage(created.key, gateway_url(settings)))
    if first:
        print()
        print("This is the first key: from now on every /v1 request needs one (the open mode has ended).")
        if created.tenant != OPEN_TENANT:
            print(
                f"Jobs and batches created before it belong to tenant '{OPEN_TENANT}'; to read them, "
                f"create a key for that tenant: condense keys create --tenant {OPEN_TENANT}"
            )
    return 0


def gateway_url(settings: Settings) -> str:
    """The gateway's address as a client on this machine reaches it."""
    host = settings.gateway.host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a bind address, turned into a client's
        host = "127.0.0.1"
    return f"http://{host}:{settings.gateway.port}"


def key_usage(key: str, base_url: str) -> str:
    """How to use ``key`` over HTTP and with the ``condense`` client commands."""
    return "\n".join(
        [
            "Use it:",
            f"  HTTP   Authorization: Bearer {key}",
            f"         curl -s {base_url}/v1/summaries -H 'Authorization: Bearer {key}' \\",
            "              -H 'content-type: application/json' -d '{\"text\": \"...\"}'",
            f"  CLI    export CONDENSE_API_KEY={key}",
            "         (or pass --api-key to condense batch submit / status / results)",
        ]
    )


def _keys_list(settings: Settings, _args: argparse.Namespace) -> int:
    from gateway.auth import list_keys
    from schema.db import make_engine

    for key in list_keys(make_engine(settings.database)):
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
        print(f"{key.id}  {key.tenant:<20} {key.prefix}…  {state}  {key.name or ''}".rstrip())
    return 0


def _keys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.auth import revoke_key
    from gateway.errors import NotFoundError
    from schema.db import make_engine

    try:
        revoke_key(make_engine(settings.database), args.key_id)
    except NotFoundError as exc:
        print(f"condense: {exc}")
        return 1
    print(f"revoked {args.key_id}")
    return 0


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add the component commands to the ``condense`` parser."""
    gateway = commands.add_parser("gateway", help="serve the HTTP API")
    gateway.add_argument("--host", default=None)
    gateway.add_argument("--port", type=int, default=None)
    gateway.set_defaults(handler=_gateway)
    commands.add_parser("relay", help="publish the outbox to Kafka and sweep stale jobs").set_defaults(
        handler=_relay
    )
    worker = commands.add_parser("worker", help="run a summarization worker (Kafka batch consumer)")
    worker.add_argument(
        "--allow-model-mismatch",
        action="store_true",
        help="start even if the model files differ from their manifest (worker.allow_model_mismatch)",
    )
    worker.set_defaults(handler=_worker)
    commands.add_parser("notifier", help="deliver webhooks and email").set_defaults(handler=_notifier)

    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(dest="sub", required=True)
    create = keys.add_parser("create", help="create a key for a tenant and print it once")
    create.add_argument("--tenant", required=True)
    create.add_argument("--name", default=None)
    create.set_defaults(handler=_keys_create)
    keys.add_parser("list", help="list keys (never the keys themselves)").set_defaults(handler=_keys_list)
    revoke = keys.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    revoke.set_defaults(handler=_keys_revoke)

    from condense import batch_cli, models_cli
    from summarizer import cli as summarizer_cli

    summarizer_cli.add_arguments(commands, lambda settings: settings.summarizer)
    batch_cli.add_arguments(commands)
    models_parser = models_cli.add_arguments(commands)

    from condense import governance_cli

    governance_cli.add_arguments(commands, models_parser)
