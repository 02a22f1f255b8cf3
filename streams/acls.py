"""Least privilege on the cluster: the Kafka ACLs each role needs, and nothing more.

A role is a kind of process with its own principal (Kafka user)::

    api        `agentstream api`: writes commands to the inbox, streams events and deltas
    engine     `agentstream worker --role engine`: the only writer of events, work items
               and engine-progress (in transactions)
    llm        `agentstream worker --role llm`: reads llm-calls, writes results and deltas
    tools      `agentstream worker --role tools`: reads tool-calls, writes results
    projector  the projector (in `agentstream api` unless --no-projector): reads events

Every worker also runs faust's chassis (its DLQ watcher is a consumer group of its
own, and faust keeps a leader topic). Every role may see which catalogue topics
exist and their configs: `agentstream api` and `worker` check the catalogue at
start. ``DESCRIBE`` is left out where Kafka implies it (by ``READ`` or ``WRITE``).

:func:`plan_acls` computes the grants, :func:`kafka_acls_commands` prints them as
``kafka-acls`` commands, :func:`apply_acls` creates them (CreateAcls, as the
settings' principal, who must be allowed to alter ACLs). Operators' commands
(``topics create``, ``dlq redrive``, ``backfill``, ``replay``) are meant to run
as an administrator and are not part of the plan.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from streams.catalogue import Catalogue
from streams.errors import KafkaAuthorizationError, StreamsError
from streams.settings import KafkaSettings

ROLES = ("api", "engine", "llm", "tools", "projector")
WORKER_ROLES = ("engine", "llm", "tools")


def worker_app_id(prefix: str) -> str:
    """The faust App id of every worker: its consumer group and topic names start with it."""
    return f"{prefix}.worker"


def group_ids(prefix: str) -> dict[str, str]:
    """Consumer group of each role (as the engine, executors and projector name theirs)."""
    return {
        "engine": f"{prefix}.engine",
        "llm": f"{prefix}.llm",
        "tools": f"{prefix}.tools",
        "projector": f"{prefix}.projector",
    }


@dataclass(frozen=True)
class Grant:
    """Operations a principal may do on one resource (a literal name or a name prefix)."""

    role: str
    principal: str
    resource_type: str
    """``topic``, ``group`` or ``transactional-id`` (the ``kafka-acls`` option)."""
    name: str
    operations: tuple[str, ...]
    """Kafka's names: ``Read``, ``Write``, ``Create``, ``Describe``, ``DescribeConfigs``."""
    why: str
    prefixed: bool = False


def principal_name(value: str) -> str:
    """``engine`` -> ``User:engine``; a value with a type (``User:CN=x``) is kept."""
    value = value.strip()
    if not value:
        raise StreamsError("a principal must not be empty")
    return value if ":" in value else f"User:{value}"


def default_principals(prefix: str) -> dict[str, str]:
    return {role: f"User:{prefix}-{role}" for role in ROLES}


def plan_acls(catalogue: Catalogue, principals: Mapping[str, str]) -> list[Grant]:
    """Every grant of every role in ``principals`` (role -> principal), in a stable order."""
    unknown = sorted(set(principals) - set(ROLES))
    if unknown:
        raise StreamsError(f"unknown role(s) {unknown}; the roles are {', '.join(ROLES)}")
    c = catalogue
    groups = group_ids(c.prefix)
    app = worker_app_id(c.prefix)
    grants: list[Grant] = []

    def grant(role: str, kind: str, name: str, ops: str, why: str, prefixed: bool = False) -> None:
        principal = principal_name(principals[role])
        grants.append(Grant(role, principal, kind, name, tuple(ops.split()), why, prefixed))

    for role in (r for r in ROLES if r in principals):
        seen = "see the catalogue's topics and configs (checked at start)"
        grant(role, "topic", f"{c.prefix}.", "Describe DescribeConfigs", seen, prefixed=True)
        if role == "api":
            grant(role, "topic", c.inbox.name, "Write", "commands from the HTTP API")
            grant(role, "topic", c.events.name, "Read", "SSE: a session's events")
            grant(role, "topic", c.deltas.name, "Read", "SSE: token deltas")
            grant(role, "group", groups["engine"], "Describe", "backpressure: the engine's lag")
        elif role == "engine":
            grant(role, "topic", c.inbox.name, "Read Write", "commands in; timers fire into it")
            grant(role, "topic", c.events.name, "Read Write", "appends the log, replays it")
            grant(role, "topic", c.engine_progress.name, "Read Write", "its inbox position")
            for spec in (c.llm_calls, c.tool_calls):
                grant(role, "topic", spec.name, "Write", "work items for the executors")
            grant(role, "topic", c.dlq.name, "Write", "commands it cannot apply")
            grant(role, "group", groups["engine"], "Read", "owns inbox partitions")
            txn = "its transactions: two ids per inbox partition"
            grant(role, "transactional-id", f"{c.inbox.name}.engine.", "Write", txn, prefixed=True)
        elif role in ("llm", "tools"):
            work = c.llm_calls if role == "llm" else c.tool_calls
            grant(role, "topic", work.name, "Read", "work items")
            grant(role, "group", groups[role], "Read", "shares the work items")
            grant(role, "topic", c.inbox.name, "Write", "results back to the engine")
            grant(role, "topic", c.dlq.name, "Write", "work items it cannot read")
            if role == "llm":
                grant(role, "topic", c.deltas.name, "Write", "token deltas while a call runs")
        elif role == "projector":
            grant(role, "topic", c.events.name, "Read", "folds events into the read models")
            grant(role, "group", groups["projector"], "Read", "its consumer group")
            grant(role, "topic", c.dlq.name, "Write", "events it cannot fold")
        if role in WORKER_ROLES:
            grant(role, "topic", c.dlq.name, "Read", "faust's DLQ watcher (dead-letter metrics)")
            grant(role, "group", app, "Read", "faust's consumer group")
            leader = "faust's leader topic (made by the first worker)"
            grant(role, "topic", f"{app}-__assignor-__leader", "Create Read", leader)
    return grants


def kafka_acls_commands(
    grants: Iterable[Grant], bootstrap: str, command_config: str = "admin.properties"
) -> list[str]:
    """The grants as ``kafka-acls`` commands: one per principal, pattern and operation set.

    Grants of a role with the same operations are merged into one command (its
    resources are listed together); every line is a shell command.
    """
    merged: dict[tuple[str, str, bool, tuple[str, ...]], list[Grant]] = {}
    for g in grants:
        merged.setdefault((g.role, g.principal, g.prefixed, g.operations), []).append(g)
    lines: list[str] = []
    base = ["kafka-acls", "--bootstrap-server", bootstrap, "--command-config", command_config]
    role = None
    for (grant_role, principal, prefixed, operations), same in merged.items():
        if grant_role != role:
            role = grant_role
            lines.append(f"# role {role}: {principal}")
        argv = [*base, "--add", "--allow-principal", principal]
        for operation in operations:
            argv += ["--operation", operation]
        for g in same:
            argv += [f"--{g.resource_type}", g.name]
        if prefixed:
            argv += ["--resource-pattern-type", "prefixed"]
        whys = "; ".join(dict.fromkeys(g.why for g in same))
        lines.append(f"#   {whys}")
        lines.append(shlex.join(argv))
    return lines


# Kafka protocol codes (org.apache.kafka.common.acl / resource).
_RESOURCE_TYPES = {"topic": 2, "group": 3, "transactional-id": 5}
_LITERAL, _PREFIXED = 3, 4
_OPERATIONS = {"Read": 3, "Write": 4, "Create": 5, "Describe": 8, "DescribeConfigs": 10}
_ALLOW = 3
_CLUSTER_AUTHORIZATION_FAILED = 31


async def apply_acls(settings: KafkaSettings, grants: Sequence[Grant]) -> int:
    """Create every ACL of ``grants`` (CreateAcls; one that exists already is kept).

    Returns how many ACLs were sent. ``KafkaAuthorizationError`` when the
    settings' principal may not alter ACLs; nothing is removed, ever.
    """
    from aiokafka.protocol.admin import CreateAclsRequest

    from streams.clients import started_client

    sent = 0
    async with started_client(settings) as client:
        node = client.get_random_node()
        for g in grants:
            for operation in g.operations:
                request = CreateAclsRequest(
                    _RESOURCE_TYPES[g.resource_type],
                    g.name,
                    _PREFIXED if g.prefixed else _LITERAL,
                    g.principal,
                    "*",
                    _OPERATIONS[operation],
                    _ALLOW,
                )
                response = await client.send(node, request)
                for code, message in response.creation_responses:
                    if code == _CLUSTER_AUTHORIZATION_FAILED:
                        raise KafkaAuthorizationError(
                            f"Kafka at {settings.bootstrap} does not let "
                            f"{settings.security.principal} alter ACLs: apply them as an "
                            "administrator (a super user, or ALTER on the cluster)"
                        )
                    if code:
                        raise StreamsError(
                            f"Kafka refused the ACL {operation} on {g.resource_type} {g.name} "
                            f"for {g.principal}: error {code} {message or ''}".rstrip()
                        )
                sent += 1
    return sent
