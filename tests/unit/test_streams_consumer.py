"""Decoding tailed records: good ones, and bad ones kept with their error."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from schemas import Codec, command_from_json
from streams.consumer import consumer_config, decode_record
from streams.settings import KafkaSettings

CODEC = Codec()


@dataclass
class FakeMessage:
    """The fields of aiokafka's ConsumerRecord that decode_record reads."""

    value: bytes | None
    key: bytes | None = b"s1"
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    topic: str = "t.inbox"
    partition: int = 2
    offset: int = 17
    timestamp: int = 1_700_000_000_000


def command() -> tuple[str, dict[str, object]]:
    return command_from_json(
        {"type": "UserMessage", "session_id": "s1", "tenant_id": "acme", "text": "héllo"}
    )


def test_a_good_record_decodes_to_its_json_form() -> None:
    name, record = command()
    message = FakeMessage(CODEC.encode(name, record), headers=[("type", b"UserMessage")])
    tailed = decode_record(CODEC, message)
    assert (tailed.type, tailed.value, tailed.error) == ("UserMessage", record, None)
    obj = tailed.to_json()
    assert obj["partition"] == 2 and obj["offset"] == 17 and obj["key"] == "s1"
    assert obj["headers"] == {"type": "UserMessage"}
    assert obj["value"] == {"type": "UserMessage", **record}
    assert "error" not in obj
    # The value is what `produce` reads back.
    assert command_from_json(json.loads(json.dumps(obj["value"]))) == (name, record)


def test_an_undecodable_value_is_kept_with_its_error() -> None:
    tailed = decode_record(CODEC, FakeMessage(b"plain text", headers=[("type", b"StartSession")]))
    assert tailed.value is None and tailed.type == "StartSession"
    assert tailed.error is not None and "wire format" in tailed.error
    assert tailed.to_json()["value"] is None
    assert decode_record(CODEC, FakeMessage(None)).error == "value is null"


def test_a_type_header_that_lies_is_reported() -> None:
    name, record = command()
    tailed = decode_record(
        CODEC, FakeMessage(CODEC.encode(name, record), headers=[("type", b"Cancel")])
    )
    assert tailed.type == "UserMessage"
    assert tailed.error == "type header 'Cancel' but the value is a UserMessage"


def test_undecodable_keys_are_escaped() -> None:
    name, record = command()
    tailed = decode_record(CODEC, FakeMessage(CODEC.encode(name, record), key=b"\xffs1"))
    assert tailed.key == "\\xffs1"


def test_consumers_read_committed_and_commit_by_hand() -> None:
    config = consumer_config(KafkaSettings(), group_id="g")
    assert config["isolation_level"] == "read_committed"
    assert config["enable_auto_commit"] is False
    assert config["auto_offset_reset"] == "earliest"
