"""The read models' tables, as SQLAlchemy Core objects for the query side.

The schema itself is created by the Alembic migrations in
``projections/migrations`` (the DDL there is the source of truth; these objects
mirror it for building queries). Every read-model table carries ``stream``,
the events topic it was built from, so deployments and test runs with their own
topic prefix share one database without clashing. Tenants and API keys are
global (a key is valid on any stream); idempotency keys are per stream.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Double,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

tenants = Table(
    "tenants",
    metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("rate_per_s", Double),
    Column("burst", Integer),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("key_hash", LargeBinary, nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("stream", Text, primary_key=True),
    Column("tenant_id", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("fingerprint", Text, nullable=False),
    Column("status", Integer),
    Column("body", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("stream", Text, primary_key=True),
    Column("session_id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("agent", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("keep_open", Boolean, nullable=False),
    Column("awaiting", JSONB, nullable=False),
    Column("pending_tools", JSONB, nullable=False),
    Column("partition", Integer, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("steps", Integer, nullable=False),
    Column("input", Text, nullable=False),
    Column("last_message", Text),
    Column("last_message_role", Text),
    Column("output", Text),
    Column("end_reason", Text),
    Column("tokens", BigInteger, nullable=False),
    Column("cost_usd", Double, nullable=False),
    Column("metadata", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

messages = Table(
    "messages",
    metadata,
    Column("stream", Text, primary_key=True),
    Column("session_id", Text, primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

llm_calls = Table(
    "llm_calls",
    metadata,
    Column("stream", Text, primary_key=True),
    Column("session_id", Text, primary_key=True),
    Column("call_id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("agent", Text),
    Column("model", Text),
    Column("step", Integer),
    Column("status", Text, nullable=False),
    Column("input_tokens", BigInteger),
    Column("output_tokens", BigInteger),
    Column("cached_tokens", BigInteger),
    Column("cost_usd", Double),
    Column("latency_s", Double),
    Column("error", Text),
    Column("requested_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
)

tool_calls = Table(
    "tool_calls",
    metadata,
    Column("stream", Text, primary_key=True),
    Column("session_id", Text, primary_key=True),
    Column("call_id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("tool", Text),
    Column("arguments_json", Text),
    Column("llm_call_id", Text),
    Column("status", Text, nullable=False),
    Column("output", Text),
    Column("error", Text),
    Column("latency_s", Double),
    Column("requested_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
)

events = Table(
    "events",
    metadata,
    Column("stream", Text, primary_key=True),
    Column("session_id", Text, primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("partition", Integer, nullable=False),
    Column("kafka_offset", BigInteger, nullable=False),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("body", JSONB, nullable=False),
)

usage_daily = Table(
    "usage_daily",
    metadata,
    Column("stream", Text, primary_key=True),
    Column("tenant_id", Text, primary_key=True),
    Column("day", Date, primary_key=True),
    Column("agent", Text, primary_key=True),
    Column("model", Text, primary_key=True),
    Column("llm_calls", BigInteger, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cached_tokens", BigInteger, nullable=False),
    Column("cost_usd", Double, nullable=False),
)

projection_tracking = Table(
    "projection_tracking",
    metadata,
    Column("stream", Text, primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("kafka_offset", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
