"""Insert the API keys named in ``$BOOTSTRAP_API_KEYS`` unless they already exist.

Runs after ``condense db upgrade`` in the compose migrate service and in the Helm migration hook,
so that a gateway bound off loopback finds an API key at its first start. The variable holds one
``tenant:key`` pair per line (blank lines and ``#`` comments are skipped). Only the SHA-256 of a key
is stored, exactly as ``condense keys create`` stores it; a key that was revoked stays revoked.

Settings (the database URL) come from ``--config``/``$CONDENSE_CONFIG`` and ``CONDENSE_*`` variables,
as for every ``condense`` command. Exit status: 0 done, 2 malformed input.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from sqlalchemy import insert, select

from gateway.auth import hash_key
from schema.db import make_engine
from schema.models import ApiKey, new_id
from schema.settings import DatabaseSettings, load_settings

ENV_VAR = "BOOTSTRAP_API_KEYS"
MIN_KEY_LENGTH = 32
KEY_NAME = "bootstrap"


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """``tenant:key`` lines into pairs; raises ValueError naming the bad line (never the key)."""
    pairs: list[tuple[str, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tenant, sep, key = line.partition(":")
        tenant, key = tenant.strip(), key.strip()
        if not sep or not tenant or not key:
            raise ValueError(f"line {number}: expected 'tenant:key'")
        if len(key) < MIN_KEY_LENGTH:
            raise ValueError(f"line {number}: the key for tenant {tenant!r} is shorter than {MIN_KEY_LENGTH}")
        if len(tenant) > 128:
            raise ValueError(f"line {number}: tenant longer than 128 characters")
        pairs.append((tenant, key))
    return pairs


def ensure_keys(database: DatabaseSettings, pairs: Sequence[tuple[str, str]]) -> tuple[int, int]:
    """Insert each missing key; returns (created, already present)."""
    engine = make_engine(database)
    created = present = 0
    try:
        with engine.begin() as conn:
            for tenant, key in pairs:
                digest = hash_key(key)
                found = conn.execute(select(ApiKey.id).where(ApiKey.key_hash == digest)).first()
                if found is not None:
                    present += 1
                    continue
                conn.execute(
                    insert(ApiKey).values(
                        id=new_id(), tenant=tenant, prefix=key[:12], key_hash=digest, name=KEY_NAME
                    )
                )
                created += 1
    finally:
        engine.dispose()
    return created, present


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--config", metavar="PATH", help="YAML settings file (default: $CONDENSE_CONFIG)")
    args = parser.parse_args(argv)
    try:
        pairs = parse_pairs(os.environ.get(ENV_VAR, ""))
    except ValueError as exc:
        sys.stderr.write(f"bootstrap_keys: {ENV_VAR}: {exc}\n")
        return 2
    if not pairs:
        sys.stdout.write(f"bootstrap_keys: {ENV_VAR} is empty; nothing to do\n")
        return 0
    settings = load_settings(args.config)
    created, present = ensure_keys(settings.database, pairs)
    sys.stdout.write(f"bootstrap_keys: {created} key(s) created, {present} already present\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
