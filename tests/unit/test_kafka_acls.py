"""The ACL plan: each role gets what it does, no role gets what another does alone."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest

from agentstream.cli import main
from streams.acls import (
    ROLES,
    Grant,
    default_principals,
    group_ids,
    kafka_acls_commands,
    plan_acls,
    worker_app_id,
)
from streams.catalogue import Catalogue
from streams.errors import StreamsError
from streams.settings import KafkaSettings

CATALOGUE = Catalogue("prod", 12, 3)
PRINCIPALS = {role: f"User:{role}" for role in ROLES}


def allowed(grants: list[Grant], operation: str, name: str) -> set[str]:
    """Roles that may do ``operation`` on the topic or group ``name``."""
    return {
        g.role
        for g in grants
        if operation in g.operations and (name.startswith(g.name) if g.prefixed else name == g.name)
    }


def test_only_the_engine_writes_the_log_the_work_items_and_its_progress() -> None:
    grants = plan_acls(CATALOGUE, PRINCIPALS)
    c = CATALOGUE
    for topic in (c.events, c.llm_calls, c.tool_calls, c.engine_progress):
        assert allowed(grants, "Write", topic.name) == {"engine"}, topic.name
    assert allowed(grants, "Write", c.inbox.name) == {"api", "engine", "llm", "tools"}
    assert allowed(grants, "Write", c.deltas.name) == {"llm"}
    assert allowed(grants, "Write", c.dlq.name) == {"engine", "llm", "tools", "projector"}


def test_each_role_reads_what_it_consumes_and_nothing_else() -> None:
    grants = plan_acls(CATALOGUE, PRINCIPALS)
    c = CATALOGUE
    assert allowed(grants, "Read", c.inbox.name) == {"engine"}
    assert allowed(grants, "Read", c.events.name) == {"api", "engine", "projector"}
    assert allowed(grants, "Read", c.llm_calls.name) == {"llm"}
    assert allowed(grants, "Read", c.tool_calls.name) == {"tools"}
    assert allowed(grants, "Read", c.deltas.name) == {"api"}
    assert allowed(grants, "Read", c.engine_progress.name) == {"engine"}
    for role, group in group_ids(c.prefix).items():
        assert allowed(grants, "Read", group) == {role}, group
    # every role may see which topics exist and their configs (checked at start)
    for spec in c.all():
        assert allowed(grants, "DescribeConfigs", spec.name) == set(ROLES)


def test_the_engines_transactional_ids_are_its_alone() -> None:
    grants = plan_acls(CATALOGUE, PRINCIPALS)
    (txn,) = [g for g in grants if g.resource_type == "transactional-id"]
    assert (txn.role, txn.prefixed, txn.operations) == ("engine", True, ("Write",))
    assert f"{CATALOGUE.inbox.name}.engine.7.b".startswith(txn.name)
    assert not [g for g in grants if g.resource_type == "cluster"]


def test_the_plan_names_the_groups_and_ids_the_code_uses(tmp_path: Path) -> None:
    from agentstream.worker_app import Components, build_app
    from processors.agents.catalog import builtin_catalog
    from processors.engine.service import SessionEngine
    from processors.executors.work_executor import WorkExecutor
    from processors.settings import EngineSettings

    kafka = KafkaSettings(topic_prefix="prod")
    groups = group_ids("prod")
    engine = SessionEngine(kafka=kafka, settings=EngineSettings(), agents=builtin_catalog())
    assert engine.group_id == groups["engine"]

    async def handler(name: str, record: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        return None

    for name in ("llm", "tools"):
        executor = WorkExecutor(name=name, kafka=kafka, topic=CATALOGUE.tool_calls, handler=handler)
        assert executor.group_id == groups[name]
    app = build_app(Components(kafka, builtin_catalog(), ()), web_port=6998, data_dir=tmp_path)
    assert app.conf.id == worker_app_id("prod")
    assert f"{kafka.topic_prefix}.inbox.engine." in {
        g.name for g in plan_acls(CATALOGUE, {"engine": "e"})
    }


def test_kafka_acls_commands_merge_a_roles_resources_per_operation_set() -> None:
    grants = plan_acls(CATALOGUE, {"tools": "tools"})
    lines = kafka_acls_commands(grants, "b:9096", "admin.properties")
    commands = [shlex.split(line) for line in lines if not line.startswith("#")]
    assert all(argv[:5] == ["kafka-acls", "--bootstrap-server", "b:9096",
                            "--command-config", "admin.properties"] for argv in commands)  # fmt: skip
    write = next(argv for argv in commands if argv.count("--operation") == 1 and "Write" in argv)
    assert write[write.index("--operation") + 1] == "Write"
    assert {write[i + 1] for i, a in enumerate(write) if a == "--topic"} == {
        CATALOGUE.inbox.name,
        CATALOGUE.dlq.name,
    }
    assert all("User:tools" in argv for argv in commands)
    prefixed = [argv for argv in commands if "--resource-pattern-type" in argv]
    assert [argv[argv.index("--topic") + 1] for argv in prefixed] == ["prod."]
    # one command per operation set: the same (operations, pattern) never repeats
    keys = [(tuple(a for a in argv if a[0].isupper()), "--resource-pattern-type" in argv)
            for argv in commands]  # fmt: skip
    assert len(keys) == len(set(keys))


def test_principals_default_per_role_and_unknown_roles_are_refused() -> None:
    assert default_principals("prod")["engine"] == "User:prod-engine"
    grants = plan_acls(CATALOGUE, {"api": "User:CN=gateway,O=acme"})
    assert {g.principal for g in grants} == {"User:CN=gateway,O=acme"}
    with pytest.raises(StreamsError, match="unknown role"):
        plan_acls(CATALOGUE, {"gateway": "x"})


def test_the_cli_prints_the_plan_for_the_chosen_roles(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTSTREAM_KAFKA_PRINCIPAL_PROJECTOR", "reader")
    code = main(["acls", "plan", "--prefix", "prod", "--roles", "projector,api",
                 "--principal", "api=User:gw", "--bootstrap", "k:9092"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "--allow-principal User:reader" in out and "--allow-principal User:gw" in out
    roles = [line.split()[2].rstrip(":") for line in out.splitlines() if line.startswith("# role")]
    assert roles == ["api", "projector"]
    assert "security.protocol=PLAINTEXT" in out


def test_the_cli_refuses_a_malformed_principal(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["acls", "plan", "--principal", "gateway=User:x"]) == 1
    assert "ROLE=PRINCIPAL" in capsys.readouterr().err
