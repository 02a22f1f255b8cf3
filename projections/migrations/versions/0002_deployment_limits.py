"""Limits that hold for the whole deployment: tenants' LLM limits, live API processes.

``tenants.llm_rpm`` and ``llm_tpm`` are a tenant's model requests and tokens per
minute over every LLM executor (NULL: the executors' default). ``api_instances``
has one row per running ``agentstream api`` process, refreshed by its
heartbeat; each process divides every tenant's command rate by the number of
live rows of its deployment (its topic prefix: the processes that feed one
inbox), see agentstream.gateway.limits.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_UP = """
ALTER TABLE tenants ADD COLUMN llm_rpm integer, ADD COLUMN llm_tpm integer;
CREATE TABLE api_instances (
    deployment  text NOT NULL,
    instance_id text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    seen_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (deployment, instance_id)
);
CREATE INDEX api_instances_seen ON api_instances (seen_at);
"""

_DOWN = """
DROP TABLE api_instances;
ALTER TABLE tenants DROP COLUMN llm_rpm, DROP COLUMN llm_tpm;
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
