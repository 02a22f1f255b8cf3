"""Routing answers: a method a path does not have is 405 with ``Allow``, an unknown path 404.

Requests go through the app's own aiohttp router and route wrapper (no
Kafka or Postgres is touched on these answers); ``Allow`` must list exactly
the methods the OpenAPI document gives the path.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from agentstream.gateway.app import build_app
from agentstream.gateway.context import Gateway
from agentstream.gateway.openapi import openapi_document
from agentstream.gateway.settings import GatewaySettings
from processors.agents.loader import load_agents
from streams.settings import KafkaSettings

DOCUMENT = openapi_document(GatewaySettings(), ["demo"])


@pytest.fixture
async def app() -> AsyncIterator[web.Application]:
    gateway = Gateway(GatewaySettings(), KafkaSettings(), load_agents(None), migrate=False)
    yield build_app(gateway)
    await gateway.db.dispose()


async def answer(app: web.Application, method: str, path: str) -> web.Response:
    request = make_mocked_request(method, path, app=app)
    match = await app.router.resolve(request)
    response = await match.handler(request)
    assert isinstance(response, web.Response)
    return response


def error_code(response: web.Response) -> str:
    assert response.content_type == "application/json"
    assert isinstance(response.body, bytes)
    code: str = json.loads(response.body)["error"]["code"]
    return code


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/v1/sessions", "GET, POST"),
        ("DELETE", "/v1/sessions", "GET, POST"),
        ("PATCH", "/v1/sessions", "GET, POST"),
        ("TRACE", "/v1/sessions", "GET, POST"),
        ("TRACE", "/healthz", "GET"),
        ("DELETE", "/v1/sessions/s-1", "GET"),
        ("GET", "/v1/sessions/s-1/messages", "POST"),
        ("GET", "/v1/sessions:batch", "POST"),
    ],
)
async def test_a_method_the_path_lacks_is_405_with_allow(
    app: web.Application, method: str, path: str, allow: str
) -> None:
    response = await answer(app, method, path)
    assert (response.status, response.headers.get("Allow")) == (405, allow)
    assert error_code(response) == "method_not_allowed"


@pytest.mark.parametrize("path", sorted(DOCUMENT["paths"]))
async def test_allow_lists_what_the_openapi_document_gives_each_path(
    app: web.Application, path: str
) -> None:
    documented = ", ".join(sorted(method.upper() for method in DOCUMENT["paths"][path]))
    response = await answer(app, "TRACE", path.replace("{session_id}", "s-1"))
    assert (response.status, response.headers.get("Allow")) == (405, documented)


@pytest.mark.parametrize(
    ("method", "path"), [("PUT", "/v1/nothing"), ("GET", "/v2/sessions"), ("TRACE", "/")]
)
async def test_an_unknown_path_is_404_without_allow(
    app: web.Application, method: str, path: str
) -> None:
    response = await answer(app, method, path)
    assert response.status == 404 and "Allow" not in response.headers
    assert error_code(response) == "not_found"
