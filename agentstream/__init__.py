"""agentstream: very many LLM agent sessions at once on Apache Kafka, event-sourced.

The top-level packages follow the design card: ``schemas`` (Avro records and the
wire format), ``streams`` (topics, producers, consumers), ``processors`` (the
session engine and executors), ``projections`` (Postgres read models) and
``infra`` (local Kafka and Postgres). This package is the thin composition root:
the ``agentstream`` command line and the wiring of settings.
"""

__version__ = "0.1.0"
