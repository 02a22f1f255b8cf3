"""The parts of ``infra.registry`` that need no registry: which Java runs it, where its
database is, and what ``infra up`` does for each value of the registry variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra import registry
from infra.procs import InfraError
from infra.registry_app import find_java


def _jdk(root: Path, name: str, version: str) -> Path:
    (root / name / "bin").mkdir(parents=True)
    (root / name / "bin" / "java").write_text("#!/bin/sh\nexit 1\n")
    (root / name / "release").write_text(f'IMPLEMENTOR="X"\nJAVA_VERSION="{version}"\n')
    return root / name / "bin" / "java"


@pytest.fixture
def no_java(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))


@pytest.mark.usefixtures("no_java")
def test_the_newest_jdk_21_or_later_is_found_past_an_older_java_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jvm = tmp_path / "jvm"
    seventeen = _jdk(jvm, "java-17-openjdk", "17.0.15")
    _jdk(jvm, "temurin-21-jdk", "21.0.4")
    newest = _jdk(jvm, "temurin-25-jdk", "25.0.3")
    monkeypatch.setenv("JAVA_HOME", str(seventeen.parent.parent))  # the broker's
    assert find_java(jvm) == newest
    chosen = _jdk(tmp_path / "own", "jdk-22", "22")
    monkeypatch.setenv("JAVA_HOME", str(chosen.parent.parent))
    assert find_java(jvm) == chosen  # JAVA_HOME wins when it is recent enough


@pytest.mark.usefixtures("no_java")
def test_no_recent_java_is_an_error_naming_what_was_found(tmp_path: Path) -> None:
    jvm = tmp_path / "jvm"
    _jdk(jvm, "java-17-openjdk", "17.0.15")
    _jdk(jvm, "java-8", "1.8.0_392")
    with pytest.raises(InfraError, match="needs Java 21") as raised:
        find_java(jvm)
    assert "java-17-openjdk/bin/java (17)" in str(raised.value)
    assert "java-8/bin/java (8)" in str(raised.value)
    assert "AGENTSTREAM_SCHEMA_REGISTRY_URL=local" in str(raised.value)
    with pytest.raises(InfraError, match="no java at all"):
        find_java(tmp_path / "nothing")


def test_the_registry_gets_its_own_database_on_the_same_server() -> None:
    url, user, password = registry.jdbc_settings(
        "postgresql+asyncpg://app:p%40ss@db.internal:6543/agentstream?sslmode=require&x=1"
    )
    assert url == "jdbc:postgresql://db.internal:6543/apicurio_registry?sslmode=require"
    assert (user, password) == ("app", "p@ss")
    local = registry.jdbc_settings("postgres://agentstream:agentstream@127.0.0.1:55432/agentstream")
    assert local[0] == "jdbc:postgresql://127.0.0.1:55432/apicurio_registry"
    with pytest.raises(InfraError, match="postgresql://"):
        registry.jdbc_settings("mysql://x@y/z")


def test_up_starts_ours_unless_the_variable_says_local_or_names_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = registry.layout(tmp_path)
    said: list[str] = []
    monkeypatch.delenv("AGENTSTREAM_SCHEMA_REGISTRY_URL", raising=False)
    assert registry.plan(reg, said.append) == registry.Plan(reg.url, True)
    monkeypatch.setenv("AGENTSTREAM_SCHEMA_REGISTRY_URL", reg.url + "/")
    assert registry.plan(reg, said.append) == registry.Plan(reg.url, True)
    monkeypatch.setenv("AGENTSTREAM_SCHEMA_REGISTRY_URL", "local")
    assert registry.plan(reg, said.append) == registry.Plan(None, False)
    assert "local fingerprint ids" in said[-1]
    monkeypatch.setenv("AGENTSTREAM_SCHEMA_REGISTRY_URL", "http://127.0.0.1:9/nothing")
    with pytest.raises(InfraError, match="no schema registry answers there"):
        registry.plan(reg, said.append)


def test_status_of_a_registry_never_started_is_fine_and_of_a_recorded_one_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AGENTSTREAM_SCHEMA_REGISTRY_URL", raising=False)
    reg = registry.layout(tmp_path)
    assert registry.status(reg).ok  # components use the local ids: that works
    reg.root.mkdir()
    reg.record.write_text('{"url": "http://127.0.0.1:8081/apis/ccompat/v7"}')
    gone = registry.status(reg)  # recorded, so components will ask it, but it is not there
    assert not gone.ok
    assert "run `infra up`" in "\n".join(registry.format_status(gone))
