"""Which registry every component uses (``schemas.settings``), and how the REST client
behaves when the registry is away, refuses our credentials or does not know an id.

The HTTP side runs against a small server on loopback written here, because the cases
(a 503 before an answer, basic auth, a closed port) are the client's, not a registry's.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from schemas import (
    RECORD_NAMES,
    Codec,
    ConfluentSchemaRegistry,
    LocalSchemaRegistry,
    RegistrySettings,
    SchemaError,
    SchemaNotFoundError,
    SchemaRegistryUnavailableError,
    default_registry,
    record_type,
)
from schemas.settings import infra_home, infra_record
from tests.unit.avro_samples import sample

URL = "AGENTSTREAM_SCHEMA_REGISTRY_URL"


def _record(home: Path, url: str) -> None:
    infra_record({"AGENTSTREAM_HOME": str(home)}).parent.mkdir(parents=True)
    infra_record({"AGENTSTREAM_HOME": str(home)}).write_text(json.dumps({"url": url}))


def test_the_variable_names_the_registry_and_wins_over_the_infra_record(tmp_path: Path) -> None:
    _record(tmp_path, "http://127.0.0.1:8081/apis/ccompat/v7")
    env = {"AGENTSTREAM_HOME": str(tmp_path), URL: "https://sr.example:8443/"}
    settings = RegistrySettings.from_env(env)
    assert (settings.url, settings.source) == ("https://sr.example:8443", URL)
    registry = default_registry(env)
    assert isinstance(registry, ConfluentSchemaRegistry)
    assert registry.url == "https://sr.example:8443"
    assert default_registry(env) is registry  # one client (and id cache) per process


def test_local_means_no_registry_even_when_infra_started_one(tmp_path: Path) -> None:
    _record(tmp_path, "http://127.0.0.1:8081/apis/ccompat/v7")
    env = {"AGENTSTREAM_HOME": str(tmp_path), URL: "local"}
    assert RegistrySettings.from_env(env).url is None
    assert isinstance(default_registry(env), LocalSchemaRegistry)


def test_unset_means_the_registry_infra_up_recorded_else_local(tmp_path: Path) -> None:
    env = {"AGENTSTREAM_HOME": str(tmp_path)}
    assert isinstance(default_registry(env), LocalSchemaRegistry)
    _record(tmp_path, "http://127.0.0.1:8081/apis/ccompat/v7/")
    settings = RegistrySettings.from_env(env)
    assert settings.url == "http://127.0.0.1:8081/apis/ccompat/v7"
    assert str(infra_record(env)) in settings.source


def test_a_bad_value_or_record_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match=URL):
        RegistrySettings.from_env({URL: "127.0.0.1:8081"})
    env = {"AGENTSTREAM_HOME": str(tmp_path)}
    infra_record(env).parent.mkdir(parents=True)
    infra_record(env).write_text("{not json")
    with pytest.raises(SchemaError, match=r"registry\.json"):
        RegistrySettings.from_env(env)


def test_schemas_finds_the_record_where_infra_writes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``schemas`` may not import ``infra``; the two copies of the home rule must agree."""
    from infra import local

    monkeypatch.delenv("AGENTSTREAM_HOME", raising=False)
    assert infra_home() == local.home()
    assert infra_record() == local.local_registry().record
    monkeypatch.setenv("AGENTSTREAM_HOME", str(tmp_path / "elsewhere"))
    assert infra_home() == local.home() == tmp_path / "elsewhere"
    assert infra_record() == local.local_registry().record


# ------------------------------------------------------------------ the client


class _Server:
    """Answers like a Confluent registry holding one schema (id 7), after ``fail_first``
    503s, and only to ``user:secret`` when ``auth`` is set."""

    def __init__(self, schema: dict[str, object], *, fail_first: int = 0, auth: bool = False):
        self.schema, self.fail_first, self.auth = schema, fail_first, auth
        self.requests: list[str] = []
        self.registered: dict[str, int] = {}


@pytest.fixture
def server() -> Iterator[tuple[str, _Server]]:
    state = _Server(record_type("Cancel").schema)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            state.requests.append(f"GET {self.path} {self.headers.get('Authorization')}")
            if state.fail_first > 0:
                state.fail_first -= 1
                return self._answer(503, {"message": "starting"})
            expected = "Basic " + base64.b64encode(b"user:secret").decode()
            if state.auth and self.headers.get("Authorization") != expected:
                return self._answer(401, {"message": "Unauthorized"})
            if self.path == "/schemas/ids/7":
                return self._answer(200, {"schema": json.dumps(state.schema)})
            return self._answer(404, {"error_code": 40403, "message": "Schema not found"})

        def do_POST(self) -> None:  # register: ids from 1000 on, one per subject
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            subject = self.path.split("/")[2]
            state.registered.setdefault(subject, 1000 + len(state.registered))
            return self._answer(200, {"id": state.registered[subject]})

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    httpd.shutdown()
    httpd.server_close()


def test_a_registry_starting_up_is_waited_for(server: tuple[str, _Server]) -> None:
    url, state = server
    state.fail_first = 2
    client = ConfluentSchemaRegistry(url, retry_for_s=5.0)
    assert client.get(7) == state.schema
    assert len(state.requests) == 3


def test_a_registry_that_stays_away_is_unavailable_not_a_poison_record(
    server: tuple[str, _Server],
) -> None:
    url, state = server
    state.fail_first = 1000
    with pytest.raises(SchemaRegistryUnavailableError, match="HTTP 503") as raised:
        ConfluentSchemaRegistry(url, retry_for_s=0.5).get(7)
    assert not isinstance(raised.value, SchemaError)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(SchemaRegistryUnavailableError, match="did not answer"):
        ConfluentSchemaRegistry(closed, retry_for_s=0.3, source="from a test").get(7)


def test_basic_auth_is_sent_and_a_refusal_names_the_settings(server: tuple[str, _Server]) -> None:
    url, state = server
    state.auth = True
    assert ConfluentSchemaRegistry(url, user="user", password="secret").get(7) == state.schema
    env = {URL: url, "AGENTSTREAM_SCHEMA_REGISTRY_USER": "user"}
    env["AGENTSTREAM_SCHEMA_REGISTRY_PASSWORD"] = "wrong"
    with pytest.raises(SchemaRegistryUnavailableError, match="AGENTSTREAM_SCHEMA_REGISTRY_USER"):
        default_registry(env).get(7)
    assert state.requests[-1].endswith("Basic " + base64.b64encode(b"user:wrong").decode())


def test_a_log_written_without_a_registry_stays_readable_with_one(
    server: tuple[str, _Server],
) -> None:
    url, state = server
    record = sample(record_type("Cancel").schema)
    value = Codec(LocalSchemaRegistry()).encode("Cancel", record)  # a fingerprint id
    reader = Codec(ConfluentSchemaRegistry(url))  # the registry answers 404 for it
    assert reader.decode(value) == ("Cancel", record)
    assert len(state.registered) == len(RECORD_NAMES)  # every type, as the codec was made
    unknown = b"\x00" + (123).to_bytes(4, "big") + value[5:]
    with pytest.raises(SchemaNotFoundError, match="neither the schema registry nor"):
        reader.decode(unknown)
