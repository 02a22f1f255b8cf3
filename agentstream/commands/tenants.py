"""``agentstream tenants create | key | revoke | list``: tenants and their API keys.

``create NAME`` makes the tenant and prints its first API key, once: only its
SHA-256 is stored. ``key NAME`` issues another key (rotation); ``revoke``
takes a tenant name (every key of it) or a key id, and running gateways stop
accepting the key at once. ``limits NAME`` shows or sets the tenant's limits
(command rate and burst, LLM requests and tokens per minute), each the limit
of the whole deployment.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import urllib.parse
from collections.abc import Callable
from typing import Any

from agentstream.errors import AgentstreamError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "tenants",
        help="create tenants, issue, revoke and list API keys",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = actions.add_parser(name, help=help_text)
        sub.add_argument("--database-url", help="Postgres URL (AGENTSTREAM_DATABASE_URL)")
        return sub

    create = add("create", "create a tenant and print its API key (shown once)")
    create.add_argument("name")
    create.add_argument("--rate", type=float, help="commands per second (default: the API's)")
    create.add_argument("--burst", type=int, help="rate-limit bucket size")
    create.set_defaults(func=run_create)
    key = add("key", "issue another API key for a tenant")
    key.add_argument("name")
    key.set_defaults(func=run_key)
    revoke = add("revoke", "revoke a tenant's keys (by name) or one key (by key id)")
    revoke.add_argument("target", metavar="NAME|KEY-ID")
    revoke.set_defaults(func=run_revoke)
    list_ = add("list", "tenants and their keys (never the secrets)")
    list_.add_argument("--json", action="store_true", help="one JSON object per tenant")
    list_.set_defaults(func=run_list)
    limits = add("limits", "show or set a tenant's limits for the whole deployment")
    limits.add_argument("name")
    for flag, field, kind, text in (
        ("--rate", "rate_per_s", float, "commands per second over every API process"),
        ("--burst", "burst", int, "command bucket size over every API process"),
        ("--llm-rpm", "llm_rpm", int, "model requests per minute over every LLM executor"),
        ("--llm-tpm", "llm_tpm", int, "model tokens per minute over every LLM executor"),
    ):
        # SUPPRESS: a flag not given leaves its limit alone; 'none' clears it.
        limits.add_argument(
            flag,
            dest=field,
            type=_or_none(kind),
            default=argparse.SUPPRESS,
            help=text + "; 'none' = the default",
        )
    limits.set_defaults(func=run_limits)


def _or_none(kind: type) -> Any:
    def parse(text: str) -> Any:
        return None if text.lower() == "none" else kind(text)

    parse.__name__ = kind.__name__
    return parse


class DatabaseUnavailable(AgentstreamError):
    """Postgres refused or did not answer (the message says which and why)."""


def _run(args: argparse.Namespace, action: Any) -> Any:
    import asyncio

    import asyncpg
    from sqlalchemy.exc import DBAPIError

    from agentstream.gateway.settings import GatewaySettings
    from agentstream.gateway.tenants import TenantStore
    from projections.db import create_engine, libpq_url
    from projections.migrate import upgrade

    url = args.database_url or GatewaySettings.from_env().database_url
    host = urllib.parse.urlsplit(libpq_url(url)).hostname  # checks the URL first

    async def main() -> Any:
        await upgrade(url)
        engine = create_engine(url, pool_size=2)
        try:
            return await action(TenantStore(engine))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, DBAPIError) as error:
        raise DatabaseUnavailable(
            f"cannot use Postgres at {host}: {type(error).__name__}: {error}"
        ) from error


def _failed(error: Exception) -> int:
    print(f"error: {error}", file=sys.stderr)
    return 1


def _reported(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A refused URL or an unreachable Postgres: one line on stderr and exit 1."""

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except AgentstreamError as error:
            return _failed(error)

    return run


@_reported
def run_create(args: argparse.Namespace) -> int:
    from agentstream.gateway.tenants import TenantError

    try:
        key_id, key = _run(
            args, lambda store: store.create(args.name, rate_per_s=args.rate, burst=args.burst)
        )
    except TenantError as error:
        return _failed(error)
    print(f"tenant {args.name} created; key id {key_id}")
    print("API key (shown once, store it now):", file=sys.stderr)
    print(key)
    return 0


@_reported
def run_key(args: argparse.Namespace) -> int:
    from agentstream.gateway.tenants import TenantError

    try:
        key_id, key = _run(args, lambda store: store.issue_key(args.name))
    except TenantError as error:
        return _failed(error)
    print(f"key id {key_id} for tenant {args.name}")
    print("API key (shown once, store it now):", file=sys.stderr)
    print(key)
    return 0


@_reported
def run_revoke(args: argparse.Namespace) -> int:
    revoked = _run(args, lambda store: store.revoke(args.target))
    if not revoked:
        print(f"error: no active key of tenant or key id {args.target!r}", file=sys.stderr)
        return 1
    print(f"revoked {len(revoked)} key(s): {', '.join(revoked)}")
    return 0


@_reported
def run_list(args: argparse.Namespace) -> int:
    tenants = _run(args, lambda store: store.list())
    for name, rate, burst, keys in tenants:
        if args.json:
            print(
                json.dumps(
                    {
                        "tenant": name,
                        "rate_per_s": rate,
                        "burst": burst,
                        "keys": [
                            {
                                "key_id": k.key_id,
                                "created_at": k.created_at.isoformat(),
                                "revoked_at": None
                                if k.revoked_at is None
                                else k.revoked_at.isoformat(),
                            }
                            for k in keys
                        ],
                    }
                )
            )
            continue
        active = [k.key_id for k in keys if k.revoked_at is None]
        revoked = [k.key_id for k in keys if k.revoked_at is not None]
        limits = f" rate={rate:g}/s" if rate else ""
        limits += f" burst={burst}" if burst else ""
        print(f"{name:<32} active: {', '.join(active) or '-'}  revoked: {len(revoked)}{limits}")
    return 0


def run_limits(args: argparse.Namespace) -> int:
    from agentstream.gateway.tenants import LIMIT_FIELDS, TenantError

    changes = {f: getattr(args, f) for f in LIMIT_FIELDS if hasattr(args, f)}
    try:
        limits = _run(args, lambda store: store.set_limits(args.name, changes))
    except TenantError as error:
        return _failed(error)
    shown = {f: getattr(limits, f) for f in LIMIT_FIELDS}
    print(json.dumps({"tenant": args.name, **shown}))
    return 0
