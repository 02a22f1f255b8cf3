"""The HTTP API of agentstream: command endpoints, SSE, the query API, tenants and keys.

Part of the composition root (it may import every package). The modules::

    app          Gateway (the parts and their lifecycle), build_app, the route wrapper
    commands     POST /v1/sessions, :batch, /messages, /approvals, /cancel -> inbox
    read_api     GET /v1/sessions, /v1/sessions/{id}, /events, /v1/usage
    sse          GET /v1/sessions/{id}/stream (resumable Server-Sent Events)
    ops          /livez, /healthz, /readyz, /metrics, /openapi.json
    openapi      the OpenAPI document (written by hand, checked by tests)
    requests     bodies -> commands (validation, no I/O)
    auth         Bearer keys -> tenants (cached, revocations via NOTIFY)
    tenants      tenants and API keys in Postgres
    limits       per-tenant rate limit (429), engine lag (503)
    idempotency  Idempotency-Key claims and answers
    ownership    session -> owning tenant
    settings     GatewaySettings (AGENTSTREAM_API_* variables)
    testkit      run a gateway in-process on a free port (tests, benchmarks, users' tests)
"""

from agentstream.gateway.app import build_app
from agentstream.gateway.context import Gateway
from agentstream.gateway.settings import GatewaySettings

__all__ = ["Gateway", "GatewaySettings", "build_app"]
