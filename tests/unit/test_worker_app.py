"""The worker's faust App: its own consumer group (the DLQ watcher's) must expire a
stopped worker's member within seconds. faust never sends LeaveGroup on shutdown (it
closes the client before the coordinator), so with faust's 60 s default session the
next `agentstream demo` waited up to a minute before its workers were ready."""

from __future__ import annotations

from pathlib import Path

from agentstream.worker_app import Components, build_app
from processors.agents.catalog import builtin_catalog
from streams.consumer import group_consumer_config
from streams.settings import KafkaSettings


def test_fausts_group_forgets_a_stopped_worker_as_fast_as_the_hot_path_groups(
    tmp_path: Path,
) -> None:
    kafka = KafkaSettings()
    app = build_app(Components(kafka, builtin_catalog(), ()), web_port=6999, data_dir=tmp_path)
    hot_path = group_consumer_config(kafka, "g")
    assert app.conf.broker_session_timeout <= hot_path["session_timeout_ms"] / 1000
    assert app.conf.broker_heartbeat_interval <= app.conf.broker_session_timeout / 3
