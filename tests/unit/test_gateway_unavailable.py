"""With Postgres unreachable the API answers 503 with Retry-After, never 500."""

from __future__ import annotations

from aiohttp.test_utils import make_mocked_request
from aiohttp.web import Application

from agentstream.gateway import read_api
from agentstream.gateway.app import route
from agentstream.gateway.context import GATEWAY, Gateway
from agentstream.gateway.settings import GatewaySettings
from processors.agents.loader import load_agents
from streams.settings import KafkaSettings

NOWHERE = "postgresql://nobody:nothing@127.0.0.1:1/none"


async def test_postgres_down_is_503() -> None:
    gateway = Gateway(
        GatewaySettings(database_url=NOWHERE), KafkaSettings(), load_agents(None), migrate=False
    )
    app = Application()
    app[GATEWAY] = gateway
    handler = route("list_sessions", read_api.list_sessions)
    key = "ask_0123456789ab_" + "A" * 43
    request = make_mocked_request(
        "GET", "/v1/sessions", headers={"Authorization": f"Bearer {key}"}, app=app
    )
    response = await handler(request)
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    await gateway.db.dispose()
