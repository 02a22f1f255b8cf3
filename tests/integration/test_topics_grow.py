"""``agentstream topics grow``: empty topics grow in place, topics with records are refused.

Against the real broker with a prefix of its own: the refusal names the topics
that hold records, the share of sessions that would move and the migration's
steps, and changes no partition count; empty topics end at the count asked for.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from agentstream.commands.topics_grow import staying_share
from streams.admin import delete_topics, ensure_topics, partition_counts, require_ok
from streams.catalogue import Catalogue
from streams.settings import KafkaSettings
from tests.integration.engine_kit import produce, start_session

pytestmark = pytest.mark.integration


def _grow(bootstrap: str, prefix: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AGENTSTREAM_KAFKA_BOOTSTRAP": bootstrap,
        "AGENTSTREAM_TOPIC_PREFIX": prefix,
    }
    return subprocess.run(
        [sys.executable, "-m", "agentstream.cli", "topics", "grow", *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


async def test_grow_refuses_live_topics_and_grows_empty_ones(kafka_bootstrap: str) -> None:
    live = KafkaSettings(kafka_bootstrap, f"t{uuid.uuid4().hex[:8]}", partitions=2)
    empty = KafkaSettings(kafka_bootstrap, f"t{uuid.uuid4().hex[:8]}", partitions=2)
    catalogues = [Catalogue.from_settings(s) for s in (live, empty)]
    try:
        for settings, catalogue in zip((live, empty), catalogues, strict=True):
            require_ok(await ensure_topics(settings, catalogue))
        await produce(live, catalogues[0].inbox.name, [start_session("s1", "hi")])

        refused = _grow(kafka_bootstrap, live.topic_prefix, "--partitions", "6")
        assert refused.returncode == 2, refused.stderr
        assert f"{catalogues[0].inbox.name} (1 records)" in refused.stderr
        assert f"{1 - staying_share(2, 6):.0%} of sessions" in refused.stderr
        assert "would be split" in refused.stderr and "6. `agentstream replay`" in refused.stderr
        names = [spec.name for spec in catalogues[0].all()]
        assert set((await partition_counts(live, names)).values()) == {2}

        smaller = _grow(kafka_bootstrap, empty.topic_prefix, "--partitions", "2")
        assert smaller.returncode == 1 and "only adds partitions" in smaller.stderr
        grown = _grow(kafka_bootstrap, empty.topic_prefix, "--partitions", "6")
        assert grown.returncode == 0, grown.stderr
        assert "AGENTSTREAM_PARTITIONS=6" in grown.stdout
        names = [spec.name for spec in catalogues[1].all()]
        assert set((await partition_counts(empty, names)).values()) == {6}
    finally:
        for settings, catalogue in zip((live, empty), catalogues, strict=True):
            await delete_topics(settings, [spec.name for spec in catalogue.all()])


def test_the_share_of_sessions_that_stay() -> None:
    assert staying_share(4, 4) == 1.0
    assert staying_share(4, 8) == 0.5  # h mod 8 in {r, r+4}: half keep r
    assert staying_share(4, 12) == pytest.approx(1 / 3)
    assert staying_share(3, 4) == pytest.approx(3 / 12)  # r < 3 in a period of 12
