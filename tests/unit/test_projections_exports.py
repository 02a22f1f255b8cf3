"""The public surface of projections and the gateway, pinned: changing it is a decision."""

from __future__ import annotations

import agentstream.gateway
import projections


def test_projections_surface() -> None:
    assert sorted(projections.__all__) == [
        "BatchFold",
        "CursorError",
        "PoisonEvent",
        "ProjectionSettings",
        "Projector",
        "QueryService",
        "Replay",
        "SessionRow",
        "create_engine",
        "decode_cursor",
        "encode_cursor",
        "upgrade",
    ]
    for name in projections.__all__:
        assert getattr(projections, name) is not None


def test_gateway_surface() -> None:
    assert sorted(agentstream.gateway.__all__) == ["Gateway", "GatewaySettings", "build_app"]


def test_projections_import_nothing_of_the_engine() -> None:
    """Projections depend on schemas and streams only (docs/architecture.md)."""
    import ast
    from pathlib import Path

    root = Path(projections.__file__).parent
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name == "agentstream.errors":
                    continue  # the error root, importable from every layer
                top = name.split(".")[0]
                assert top not in ("processors", "agentstream", "infra"), f"{path}: {name}"
