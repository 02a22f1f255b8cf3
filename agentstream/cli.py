"""The ``agentstream`` command line.

Each sub-command lives in its own module under :mod:`agentstream.commands` and
exposes ``register(subparsers)``, which adds its parser and sets ``func`` to a
callable taking the parsed namespace and returning the exit code. Keeping the
commands apart keeps this module small and lets each one import only what it
needs (``agentstream infra status`` must not pay for importing faust).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import cast

# Module names under agentstream.commands, in the order `--help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "infra",
    "topics",
    "acls",
    "produce",
    "tail",
    "dlq",
    "replay",
    "backfill",
    "offsets",
    "worker",
    "demo",
    "api",
    "tenants",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentstream",
        description="Run very many LLM agent sessions on Kafka, event-sourced.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"agentstream.commands.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = cast(Callable[[argparse.Namespace], int], args.func)
    try:
        return func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
