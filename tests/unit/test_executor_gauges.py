"""The executor's in-flight gauge says what is in flight now, also once it went idle."""

from __future__ import annotations

from prometheus_client import REGISTRY

from processors.executors.work_executor import WorkExecutor
from streams.catalogue import Catalogue
from streams.settings import KafkaSettings


async def _nothing(name: str, item: object) -> None:
    return None


def test_in_flight_falls_to_zero_when_the_last_item_finishes() -> None:
    kafka = KafkaSettings(topic_prefix="gauge-test")
    executor = WorkExecutor(
        name="gauge-test-llm",
        kafka=kafka,
        topic=Catalogue.from_settings(kafka).llm_calls,
        handler=_nothing,
    )

    def in_flight() -> float | None:
        return REGISTRY.get_sample_value(
            "agentstream_executor_in_flight", {"executor": "gauge-test-llm"}
        )

    executor.started_count = 3
    assert in_flight() == 3
    executor.finished_count = 3  # what _handle does as each item ends, with no new fetch
    assert in_flight() == 0
