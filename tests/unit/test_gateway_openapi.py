"""/openapi.json describes exactly the app's routes, and is a valid OpenAPI 3.0 document."""

from __future__ import annotations

import re

from agentstream.gateway.app import build_app
from agentstream.gateway.context import Gateway
from agentstream.gateway.openapi import openapi_document
from agentstream.gateway.settings import GatewaySettings
from processors.agents.loader import load_agents
from streams.settings import KafkaSettings


def routes() -> set[tuple[str, str]]:
    gateway = Gateway(GatewaySettings(), KafkaSettings(), load_agents(None), migrate=False)
    app = build_app(gateway)
    found = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if route.method in ("HEAD", "*"):
            continue
        found.add((route.method, str(path)))
    return found


def test_every_route_is_documented_and_nothing_else() -> None:
    document = openapi_document(GatewaySettings(), ["demo"])
    documented = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    assert routes() == documented


def test_only_operations_endpoints_are_open() -> None:
    document = openapi_document(GatewaySettings(), ["demo"])
    assert document["security"] == [{"bearer": []}]
    open_paths = {
        path for path, item in document["paths"].items()
        if any(op.get("security") == [] for op in item.values())
    }  # fmt: skip
    assert open_paths == {"/livez", "/healthz", "/readyz", "/metrics", "/openapi.json"}


def test_the_document_is_valid_and_refers_to_defined_schemas() -> None:
    import schemathesis

    document = openapi_document(GatewaySettings(batch_max=7), ["demo", "support"])
    schema = schemathesis.openapi.from_dict(document)
    assert len(list(schema.get_all_operations())) == len(routes())
    text = str(document)
    for name in set(re.findall(r"#/components/schemas/(\w+)", text)):
        assert name in document["components"]["schemas"]
    start = document["components"]["schemas"]["StartSession"]
    assert start["properties"]["agent"]["enum"] == ["demo", "support"]
    assert (
        document["components"]["schemas"]["StartBatch"]["properties"]["sessions"]["maxItems"] == 7
    )
