"""The gateway's StartSession encoder writes exactly the Codec's bytes."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from agentstream.gateway.encoding import StartSessionEncoder
from schemas import Codec

CODEC = Codec()
ENCODER = StartSessionEncoder(CODEC)
LONGS = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@given(
    record=st.fixed_dictionaries(
        {
            "event_id": st.text(),
            "session_id": st.text(min_size=1),
            "tenant_id": st.text(min_size=1),
            "time_ms": LONGS,
            "causation_id": st.none() | st.text(),
            "correlation_id": st.none() | st.text(),
            "agent": st.text(),
            "input": st.text(max_size=300),
            "keep_open": st.booleans(),
            "idle_timeout_ms": LONGS,
            "metadata": st.dictionaries(st.text(), st.text(max_size=80), max_size=5),
        }
    )
)
def test_same_bytes_as_the_codec(record: dict[str, Any]) -> None:
    encoded = ENCODER.encode(record)
    assert encoded == CODEC.encode("StartSession", record)
    assert CODEC.decode(encoded) == ("StartSession", record)
