"""The agents-file fields the LLM pool reads: ``cacheable`` and ``priority`` (additive)."""

from __future__ import annotations

from pathlib import Path

import pytest

from processors.agents.catalog import AgentsFileError, builtin_catalog
from processors.agents.loader import load_agents


def _write(tmp_path: Path, body: str) -> str:
    path = tmp_path / "agents.yaml"
    path.write_text(body, encoding="utf-8")
    return str(path)


def test_defaults_keep_old_files_meaning() -> None:
    demo = builtin_catalog().agents["demo"]
    assert demo.cacheable is False
    assert demo.priority == "normal"


def test_fields_are_read(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "agents:\n"
        "  faq: {model: sim, cacheable: true, priority: interactive}\n"
        "  backfill: {model: sim, priority: batch}\n",
    )
    catalog = load_agents(path)
    assert catalog.agents["faq"].cacheable is True
    assert catalog.agents["faq"].priority == "interactive"
    assert catalog.agents["backfill"].cacheable is False
    assert catalog.agents["backfill"].priority == "batch"


@pytest.mark.parametrize(
    ("line", "key", "reason"),
    [
        ("cacheable: yes-please", "agents.a.cacheable", "must be true or false"),
        ("cacheable: 1", "agents.a.cacheable", "must be true or false"),
        ("priority: urgent", "agents.a.priority", "bad priority 'urgent'"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, line: str, key: str, reason: str) -> None:
    path = _write(tmp_path, f"agents:\n  a:\n    model: sim\n    {line}\n")
    with pytest.raises(AgentsFileError) as caught:
        load_agents(path)
    assert caught.value.key == key
    assert reason in caught.value.reason
