"""Is a Kafka broker there, and ready for transactions? Probes that need no broker of ours.

``api_versions_probe`` asks one host:port over a raw socket; ``wait_ready``
waits until metadata lists every broker and a transactional producer can
init, failing fast when a broker process we started exits. The bring-up
tools use aiokafka directly here because ``infra`` imports nothing of ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Iterator

from infra.kafka import READY_TIMEOUT_S, KafkaCluster
from infra.procs import InfraError, Progress, tail


def api_versions_probe(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when a Kafka broker answers an ApiVersions request on host:port.

    A raw socket request rather than a client: it costs a few milliseconds, needs no
    event loop and says "a Kafka broker answers here", not just "a port is open".
    Any well-formed reply counts (even UNSUPPORTED_VERSION: that is still Kafka).
    """
    client_id = b"agentstream-infra"
    correlation_id = 0x5A5A
    # Request header v1: api_key=18 (ApiVersions), api_version=0, correlation id,
    # client id; the v0 request body is empty.
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = _recv_exact(sock, 8)
    except OSError:
        return False
    if header is None:
        return False
    _size, got_correlation = struct.unpack(">ii", header)
    return bool(got_correlation == correlation_id)


def _recv_exact(sock: socket.socket, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def bootstrap_answers(bootstrap_servers: str, timeout: float = 1.0) -> bool:
    """True when any host:port of a bootstrap list answers as a Kafka broker."""
    for entry in bootstrap_servers.split(","):
        host, _, port = entry.strip().rpartition(":")
        if host and port.isdigit() and api_versions_probe(host.strip("[]"), int(port), timeout):
            return True
    return False


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Silence a library logger while we poll a broker that is expected to be down."""
    logger = logging.getLogger(logger_name)
    old = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(old)


async def _metadata_brokers(bootstrap: str) -> int:
    from aiokafka import AIOKafkaClient

    client = AIOKafkaClient(
        bootstrap_servers=bootstrap, request_timeout_ms=5000, client_id="agentstream-infra"
    )
    try:
        await client.bootstrap()
        return len(client.cluster.brokers())
    finally:
        await client.close()


async def _init_transactional_producer(bootstrap: str) -> None:
    """Init a transactional producer: proves idempotence and the transaction coordinator
    work, and creates ``__transaction_state`` now rather than in the first test."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id="agentstream-infra-readiness",
        enable_idempotence=True,
        request_timeout_ms=10000,
        client_id="agentstream-infra",
    )
    try:
        await producer.start()
        async with producer.transaction():
            pass
    finally:
        await producer.stop()


async def wait_ready(
    cl_or_bootstrap: KafkaCluster | str,
    progress: Progress,
    wait_s: float = READY_TIMEOUT_S,
    expect_brokers: int = 1,
) -> None:
    """Wait until metadata lists every broker and a transactional producer can init.

    Fails fast (with the tail of its log) when a broker process we started exits.
    """
    cl = cl_or_bootstrap if isinstance(cl_or_bootstrap, KafkaCluster) else None
    bootstrap = cl.bootstrap_servers if cl else str(cl_or_bootstrap)
    expect = cl.size if cl else expect_brokers
    deadline = time.monotonic() + wait_s
    last_error = "no answer yet"
    stage = "metadata"
    with _quiet("aiokafka"):
        while True:
            if cl is not None:
                for node in cl.nodes:
                    if node.pid() is None:
                        raise InfraError(
                            f"Kafka node {node.node_id} exited while starting; "
                            f"see {node.log_file}:\n{tail(node.log_file)}"
                        )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                logs = ", ".join(str(n.log_file) for n in cl.nodes) if cl else "the broker's log"
                raise InfraError(
                    f"Kafka at {bootstrap} not ready after {wait_s:.0f} s "
                    f"(waiting for {stage}: {last_error}); see {logs}"
                )
            try:
                if stage == "metadata":
                    if not await asyncio.to_thread(bootstrap_answers, bootstrap, 1.0):
                        raise ConnectionError("no broker answers ApiVersions")
                    count = await asyncio.wait_for(_metadata_brokers(bootstrap), remaining)
                    if count < expect:
                        raise ConnectionError(f"metadata lists {count} of {expect} brokers")
                    stage = "transactional producer"
                await asyncio.wait_for(_init_transactional_producer(bootstrap), min(remaining, 30))
                return
            except Exception as exc:  # retried until the deadline
                last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            await asyncio.sleep(0.5)
