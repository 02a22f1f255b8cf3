"""Read models, tenants, API keys, idempotency keys and projector tracking.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_UP = """
CREATE TABLE tenants (
    tenant_id  text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    rate_per_s double precision,
    burst      integer
);
CREATE TABLE api_keys (
    key_id     text PRIMARY KEY,
    tenant_id  text NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    key_hash   bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);
CREATE TABLE idempotency_keys (
    stream      text NOT NULL,
    tenant_id   text NOT NULL,
    key         text NOT NULL,
    fingerprint text NOT NULL,
    status      integer,
    body        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, tenant_id, key)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
CREATE TABLE sessions (
    stream            text NOT NULL,
    session_id        text NOT NULL,
    tenant_id         text NOT NULL,
    agent             text NOT NULL,
    status            text NOT NULL,
    keep_open         boolean NOT NULL,
    awaiting          jsonb NOT NULL,
    pending_tools     jsonb NOT NULL,
    partition         integer NOT NULL,
    seq               bigint NOT NULL,
    steps             integer NOT NULL,
    input             text NOT NULL,
    last_message      text,
    last_message_role text,
    output            text,
    end_reason        text,
    tokens            bigint NOT NULL,
    cost_usd          double precision NOT NULL,
    metadata          jsonb NOT NULL,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    PRIMARY KEY (stream, session_id)
);
CREATE INDEX sessions_by_tenant ON sessions (stream, tenant_id, created_at DESC, session_id DESC);
CREATE INDEX sessions_by_status
    ON sessions (stream, tenant_id, status, created_at DESC, session_id DESC);
CREATE TABLE messages (
    stream     text NOT NULL,
    session_id text NOT NULL,
    seq        bigint NOT NULL,
    tenant_id  text NOT NULL,
    role       text NOT NULL,
    text       text NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (stream, session_id, seq)
);
CREATE TABLE llm_calls (
    stream        text NOT NULL,
    session_id    text NOT NULL,
    call_id       text NOT NULL,
    tenant_id     text NOT NULL,
    agent         text,
    model         text,
    step          integer,
    status        text NOT NULL,
    input_tokens  bigint,
    output_tokens bigint,
    cached_tokens bigint,
    cost_usd      double precision,
    latency_s     double precision,
    error         text,
    requested_at  timestamptz,
    finished_at   timestamptz,
    PRIMARY KEY (stream, session_id, call_id)
);
CREATE TABLE tool_calls (
    stream         text NOT NULL,
    session_id     text NOT NULL,
    call_id        text NOT NULL,
    tenant_id      text NOT NULL,
    tool           text,
    arguments_json text,
    llm_call_id    text,
    status         text NOT NULL,
    output         text,
    error          text,
    latency_s      double precision,
    requested_at   timestamptz,
    finished_at    timestamptz,
    PRIMARY KEY (stream, session_id, call_id)
);
CREATE TABLE events (
    stream       text NOT NULL,
    session_id   text NOT NULL,
    seq          bigint NOT NULL,
    tenant_id    text NOT NULL,
    type         text NOT NULL,
    partition    integer NOT NULL,
    kafka_offset bigint NOT NULL,
    time         timestamptz NOT NULL,
    body         jsonb NOT NULL,
    PRIMARY KEY (stream, session_id, seq)
);
CREATE TABLE usage_daily (
    stream        text NOT NULL,
    tenant_id     text NOT NULL,
    day           date NOT NULL,
    agent         text NOT NULL,
    model         text NOT NULL,
    llm_calls     bigint NOT NULL,
    input_tokens  bigint NOT NULL,
    output_tokens bigint NOT NULL,
    cached_tokens bigint NOT NULL,
    cost_usd      double precision NOT NULL,
    PRIMARY KEY (stream, tenant_id, day, agent, model)
);
CREATE TABLE projection_tracking (
    stream       text NOT NULL,
    partition    integer NOT NULL,
    kafka_offset bigint NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, partition)
);
"""

_DOWN = """
DROP TABLE projection_tracking, usage_daily, events, tool_calls, llm_calls, messages,
    sessions, idempotency_keys, api_keys, tenants;
"""


def _run(script: str) -> None:
    # asyncpg prepares each statement, and a prepared statement holds one command.
    for statement in script.split(";"):
        if statement.strip():
            op.execute(statement)


def upgrade() -> None:
    _run(_UP)


def downgrade() -> None:
    _run(_DOWN)
