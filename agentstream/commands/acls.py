"""``agentstream acls plan [--apply]``: the Kafka ACLs of each role, least privilege.

Prints, for the catalogue of the Kafka options, one ``kafka-acls`` command per
role and set of operations (run them as an administrator with Kafka's own
tool), or with ``--apply`` creates them directly (the Kafka options' login must
be allowed to alter ACLs). Each role's principal comes from ``--principal
ROLE=PRINCIPAL``, else ``AGENTSTREAM_KAFKA_PRINCIPAL_<ROLE>``, else
``User:<prefix>-<role>``. Nothing is ever removed: ACLs of an older plan stay
until deleted by hand (``kafka-acls --remove``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from typing import Any

from agentstream.commands.topics import add_kafka_arguments, guarded, settings_from_args

PRINCIPAL_ENV = "AGENTSTREAM_KAFKA_PRINCIPAL_"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "acls",
        help="print (or apply) the Kafka ACLs each role needs",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    plan = actions.add_parser("plan", help="kafka-acls commands per role; --apply creates the ACLs")
    plan.add_argument(
        "--principal", action="append", default=[], metavar="ROLE=PRINCIPAL",
        help=f"a role's principal, e.g. engine=User:engine (or {PRINCIPAL_ENV}ENGINE); "
        "roles: api, engine, llm, tools, projector",
    )  # fmt: skip
    plan.add_argument("--roles", help="only these roles, comma-separated (default: all of them)")
    plan.add_argument(
        "--command-config", default="admin.properties",
        help="the --command-config file named in the printed commands",
    )  # fmt: skip
    plan.add_argument("--json", action="store_true", help="one JSON object per grant")
    plan.add_argument(
        "--apply", action="store_true",
        help="create the ACLs now, logged in with the Kafka options (an administrator)",
    )  # fmt: skip
    add_kafka_arguments(plan)
    plan.set_defaults(func=run_plan)


def principals(args: argparse.Namespace, prefix: str) -> dict[str, str]:
    """role -> principal: flags over ``AGENTSTREAM_KAFKA_PRINCIPAL_<ROLE>`` over the default."""
    from streams.acls import ROLES, default_principals, principal_name
    from streams.errors import KafkaSettingsError

    chosen = default_principals(prefix)
    for role in ROLES:
        value = os.environ.get(PRINCIPAL_ENV + role.upper(), "").strip()
        if value:
            chosen[role] = principal_name(value)
    for item in args.principal:
        role, sep, value = item.partition("=")
        if not sep or role not in ROLES:
            raise KafkaSettingsError(
                f"--principal {item!r}: use ROLE=PRINCIPAL with ROLE one of {', '.join(ROLES)}"
            )
        chosen[role] = principal_name(value)
    if args.roles:
        wanted = [r.strip() for r in args.roles.split(",") if r.strip()]
        unknown = [r for r in wanted if r not in ROLES]
        if unknown:
            raise KafkaSettingsError(f"--roles: unknown {unknown}; use {', '.join(ROLES)}")
        chosen = {role: chosen[role] for role in ROLES if role in wanted}
    return chosen


@guarded
def run_plan(args: argparse.Namespace) -> int:
    from streams.acls import apply_acls, kafka_acls_commands, plan_acls
    from streams.catalogue import Catalogue

    settings = settings_from_args(args)
    grants = plan_acls(Catalogue.from_settings(settings), principals(args, settings.topic_prefix))
    if args.apply:
        sent = asyncio.run(apply_acls(settings, grants))
        roles = ", ".join(dict.fromkeys(f"{g.role} ({g.principal})" for g in grants))
        print(f"applied {sent} ACLs on {settings.bootstrap} for {roles}")
        return 0
    if args.json:
        for g in grants:
            print(
                json.dumps(
                    {
                        "role": g.role,
                        "principal": g.principal,
                        "resource_type": g.resource_type,
                        "name": g.name,
                        "pattern": "prefixed" if g.prefixed else "literal",
                        "operations": list(g.operations),
                        "why": g.why,
                    }
                )
            )
        return 0
    print(f"# Kafka ACLs for the agentstream catalogue {settings.topic_prefix!r}; run as an")
    print(f"# administrator. {args.command_config} holds its login, e.g.:")
    for line in settings.security.java_properties():
        print(f"#   {line}")
    for line in kafka_acls_commands(grants, settings.bootstrap, args.command_config):
        print(line)
    return 0
