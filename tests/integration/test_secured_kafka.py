"""agentstream on a secured cluster: SASL_SSL and mutual TLS logins, ACLs per role.

One single-node broker for the module (:mod:`infra.kafka_secured`, ports 9192-9194,
beside the shared plain broker): certificates made now, SCRAM users formatted into
its storage with Kafka's own tool, ``StandardAuthorizer`` allowing nothing without
an ACL. The catalogue's topics are created as ``admin`` and the ACL plan applied
(``agentstream acls plan --apply``); then every role logs in as its own principal.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from aiokafka.errors import TopicAuthorizationFailedError
from aiokafka.structs import TopicPartition

from infra import kafka_jars, kafka_secured, local
from infra.kafka_secured import SecuredNode
from streams.acls import apply_acls, plan_acls
from streams.admin import admin_client, ensure_topics, require_ok
from streams.catalogue import Catalogue
from streams.clients import new_consumer, new_group_consumer, new_producer
from streams.consumer import end_offsets, read_to_end
from streams.errors import KafkaAuthenticationError, KafkaAuthorizationError
from streams.producer import OutgoingRecord, Producer
from streams.security import KafkaSecurity
from streams.settings import KafkaSettings
from tests.integration.engine_kit import (
    check_invariants,
    new_ids,
    running,
    start_session,
    wait_for_terminal,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("api", "engine", "llm", "tools", "projector")
PARTITIONS = 2


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredNode]:
    """The secured broker, with a user per role and ``alice``, who has no ACL."""
    users = {name: secrets.token_hex(8) for name in (*ROLES, "alice")}
    secured = kafka_secured.secured_node(tmp_path_factory.mktemp("secured-kafka"), users)
    libs = kafka_jars.ensure_jars(local.kafka_cluster(1).root, print)
    kafka_secured.start(secured, libs, print)
    try:
        yield secured
    finally:
        kafka_secured.stop(secured, print)


def login(
    node: SecuredNode, user: str, prefix: str, *, mechanism: str = "SCRAM-SHA-512", **changes: str
) -> KafkaSettings:
    security = KafkaSecurity(
        protocol="SASL_SSL",
        sasl_mechanism=mechanism,
        sasl_username=user,
        sasl_password=node.users[user],
        ssl_cafile=str(node.ca.cert),
    )
    return KafkaSettings(
        bootstrap=node.bootstrap,
        topic_prefix=prefix,
        partitions=PARTITIONS,
        security=replace(security, **changes),
    )


@pytest.fixture(scope="module")
async def catalogue(node: SecuredNode) -> AsyncIterator[Catalogue]:
    """Topics created as admin, the ACL plan applied with each role's user as principal."""
    prefix = f"sec{uuid.uuid4().hex[:6]}"
    admin = login(node, "admin", prefix)
    cat = Catalogue.from_settings(admin)
    require_ok(await ensure_topics(admin, cat))
    await apply_acls(admin, plan_acls(cat, {role: role for role in ROLES}))
    yield cat


def record_of(session_id: str) -> tuple[str, dict[str, object]]:
    return start_session(session_id, "What is 6*7?")


async def test_clients_produce_and_read_back_over_sasl_ssl_with_each_mechanism(
    node: SecuredNode, catalogue: Catalogue
) -> None:
    sent = {}
    for mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        settings = login(node, "admin", catalogue.prefix, mechanism=mechanism)
        session_id = f"{mechanism.lower()}-{uuid.uuid4().hex[:6]}"
        name, record = record_of(session_id)
        async with Producer(settings) as producer:
            await producer.send_and_wait(catalogue.inbox.name, name, record)
        sent[session_id] = mechanism
    admin = login(node, "admin", catalogue.prefix)
    keys = {r.key.decode() async for r in read_to_end(admin, catalogue.inbox.name) if r.key}
    assert set(sent) <= keys


async def test_a_wrong_password_fails_fast_names_the_setting_and_produces_nothing(
    node: SecuredNode, catalogue: Catalogue
) -> None:
    admin = login(node, "admin", catalogue.prefix)
    before = await end_offsets(admin, catalogue.inbox.name)
    wrong = login(node, "api", catalogue.prefix, sasl_password="not-the-password")
    began = time.monotonic()
    with pytest.raises(KafkaAuthenticationError) as refused:
        async with Producer(wrong) as producer:
            await producer.send_and_wait(catalogue.inbox.name, *record_of("never"))
    assert time.monotonic() - began < 10
    message = str(refused.value)
    assert "AGENTSTREAM_KAFKA_SASL_PASSWORD" in message and "'api'" in message
    assert node.bootstrap in message and "not-the-password" not in message
    for client in (new_producer(wrong), new_group_consumer(wrong, f"{catalogue.prefix}.engine")):
        with pytest.raises(KafkaAuthenticationError, match="AGENTSTREAM_KAFKA_SASL_PASSWORD"):
            await client.start()
    # the command line says the same in one line, and sends nothing
    commands = node.dir / "commands.jsonl"
    commands.write_text(
        '{"type": "StartSession", "session_id": "cli", "tenant_id": "t", "agent": "demo", '
        '"input": "hi"}\n'
    )
    env = {
        **os.environ,
        **kafka_secured.environ(node, "api"),
        "AGENTSTREAM_KAFKA_SASL_PASSWORD": "not-the-password",
        "AGENTSTREAM_TOPIC_PREFIX": catalogue.prefix,
    }
    argv = [sys.executable, "-m", "agentstream.cli", "produce", "--topic", "inbox",
            "--file", str(commands)]  # fmt: skip
    cli = await asyncio.to_thread(
        subprocess.run, argv, capture_output=True, text=True, cwd=ROOT, env=env, timeout=60
    )
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert "error: Kafka at" in cli.stderr and "AGENTSTREAM_KAFKA_SASL_PASSWORD" in cli.stderr
    assert "Traceback" not in cli.stderr
    assert await end_offsets(admin, catalogue.inbox.name) == before


async def test_tls_and_protocol_mistakes_name_their_setting(
    node: SecuredNode, catalogue: Catalogue
) -> None:
    admin = login(node, "admin", catalogue.prefix)
    untrusted = replace(admin, security=replace(admin.security, ssl_cafile=None))  # system CAs
    with pytest.raises(KafkaAuthenticationError, match="AGENTSTREAM_KAFKA_SSL_CAFILE"):
        async with admin_client(untrusted):
            pass
    plaintext = KafkaSettings(bootstrap=node.bootstrap, topic_prefix=catalogue.prefix)
    with pytest.raises(KafkaAuthenticationError, match="AGENTSTREAM_KAFKA_SECURITY_PROTOCOL"):
        async with admin_client(plaintext):
            pass


async def test_a_client_certificate_logs_in_on_the_ssl_listener(
    node: SecuredNode, catalogue: Catalogue
) -> None:
    cert = node.client_certificate("gateway")
    admin = login(node, "admin", catalogue.prefix)
    await apply_acls(admin, plan_acls(catalogue, {"api": "User:CN=gateway"}))
    mtls = KafkaSettings(
        bootstrap=node.ssl_bootstrap,
        topic_prefix=catalogue.prefix,
        partitions=PARTITIONS,
        security=KafkaSecurity(
            protocol="SSL",
            ssl_cafile=str(node.ca.cert),
            ssl_certfile=str(cert.cert),
            ssl_keyfile=str(cert.key),
        ),
    )
    async with Producer(mtls) as producer:
        metadata = await producer.send_and_wait(catalogue.inbox.name, *record_of("mtls"))
    assert metadata.topic == catalogue.inbox.name
    anonymous = replace(mtls, security=KafkaSecurity(protocol="SSL", ssl_cafile=str(node.ca.cert)))
    with pytest.raises(KafkaAuthenticationError, match="AGENTSTREAM_KAFKA_SSL_CERTFILE"):
        async with Producer(anonymous):
            pass


async def test_each_role_may_do_its_part_and_nothing_else(
    node: SecuredNode, catalogue: Catalogue
) -> None:
    admin = login(node, "admin", catalogue.prefix)
    # a real event to copy: whoever writes it where it may not, nothing lands
    event = OutgoingRecord(catalogue.events.name, b"s", b"\x00\x00\x00\x00\x01", [("type", b"x")])
    before = await end_offsets(admin, catalogue.events.name)
    for role in ("api", "llm", "tools", "projector"):
        async with Producer(login(node, role, catalogue.prefix)) as producer:
            with pytest.raises(TopicAuthorizationFailedError):
                await producer.send_many([event])
    assert await end_offsets(admin, catalogue.events.name) == before
    denied = "\n".join(kafka_secured.denials(node))
    for role in ("api", "llm", "tools", "projector"):
        assert f"User:{role} is Denied operation = WRITE" in denied, role
    # the projector may not write commands; the API may
    projector = login(node, "projector", catalogue.prefix)
    inbox_before = await end_offsets(admin, catalogue.inbox.name)
    async with Producer(projector) as producer:
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(catalogue.inbox.name, *record_of("projector"))
    async with Producer(login(node, "api", catalogue.prefix)) as producer:
        await producer.send_and_wait(catalogue.inbox.name, *record_of("api"))
    after = await end_offsets(admin, catalogue.inbox.name)
    assert sum(after.values()) == sum(inbox_before.values()) + 1
    # the LLM executor may not read the tool executor's work
    consumer = new_consumer(login(node, "llm", catalogue.prefix))
    await consumer.start()
    try:
        consumer.assign([TopicPartition(catalogue.tool_calls.name, 0)])
        with pytest.raises(TopicAuthorizationFailedError):
            await asyncio.wait_for(consumer.getmany(timeout_ms=5000), 20)
    finally:
        await consumer.stop()
    # a user without any ACL is told so at start, and may not hand out ACLs
    alice = login(node, "alice", catalogue.prefix)
    with pytest.raises(KafkaAuthorizationError, match="User:alice"):
        async with Producer(alice):
            pass
    with pytest.raises(KafkaAuthorizationError, match="alter ACLs"):
        await apply_acls(alice, plan_acls(catalogue, {"api": "alice"}))


async def test_a_session_runs_end_to_end_with_one_principal_per_role(
    node: SecuredNode, catalogue: Catalogue
) -> None:
    """The engine and the LLM executor in this process, the tool executor as an
    ``agentstream worker`` process (faust's chassis too) with settings from the
    environment; the API's user starts the sessions and reads their events."""
    port = _free_port()
    denials_before = len(kafka_secured.denials(node))
    env = {
        **os.environ,
        **kafka_secured.environ(node, "tools"),
        "AGENTSTREAM_TOPIC_PREFIX": catalogue.prefix,
        "AGENTSTREAM_PARTITIONS": str(PARTITIONS),
    }
    log_path = node.dir / "worker-tools.log"
    with log_path.open("wb") as log:
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agentstream.cli", "worker", "--role", "tools",
            "--port", str(port), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
        )  # fmt: skip
    try:
        api = login(node, "api", catalogue.prefix)
        ids = new_ids(6, "sec")
        async with (
            running(login(node, "engine", catalogue.prefix), ("engine",)),
            running(login(node, "llm", catalogue.prefix), ("llm",)),
        ):
            async with Producer(api) as producer:
                for session_id in ids:
                    await producer.send(catalogue.inbox.name, *start_session(
                        session_id, "What is 6*7 and the weather in Oslo?"))  # fmt: skip
            sessions = await wait_for_terminal(api, catalogue, ids, timeout_s=90)
            async with httpx.AsyncClient() as http:
                health = (await http.get(f"http://127.0.0.1:{port}/healthz", timeout=5)).json()
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(worker.wait(), 30)
        except TimeoutError:
            worker.kill()
            await worker.wait()
    check_invariants(sessions)
    for session_id in ids:
        names = [name for name, _ in sessions[session_id]]
        assert names[-1] == "SessionCompleted", (names, log_path.read_text()[-2000:])
        assert "ToolCallCompleted" in names
    assert health["roles"] == ["tools"] and health["tools"]["finished"] >= len(ids)
    denied = kafka_secured.denials(node)[denials_before:]
    assert not denied, denied  # every role had all it needed


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
