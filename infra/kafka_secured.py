"""A single-node Kafka with authentication and ACLs, beside the plain local broker.

For tests and for trying agentstream's security settings without a managed
cluster. Nothing of it is made at install time: :func:`start` creates a CA and
certificates (:mod:`infra.tls`), formats the storage with SCRAM users
(``kafka-storage format --add-scram``, Kafka's own tool) and starts the broker
from the jars the plain broker uses. Listeners, on other ports than the plain
broker's so that both run at once::

    SASL_SSL    127.0.0.1:9192  SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN (same users)
    SSL         127.0.0.1:9194  client certificate required: principal User:CN=<name>
    CONTROLLER  127.0.0.1:9193  TLS with the broker's own certificate (mutual)

``StandardAuthorizer`` allows nothing without an ACL; ``admin`` (SCRAM/PLAIN) and
the broker itself (``User:CN=broker``) are super users. The folder holds
``tls/``, ``data/``, ``server.properties``, ``server.log`` and ``kafka.pid``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.kafka import MAIN_CLASS
from infra.kafka_jars import require_java
from infra.procs import InfraError, Progress, live_pid, port_in_use, rotate_log, run, tail
from infra.procs import terminate as terminate_pid
from infra.tls import Certificate, issue, make_ca

HOST = "127.0.0.1"
ADMIN = "admin"
BROKER_PRINCIPAL = "User:CN=broker"
READY_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class SecuredNode:
    """Where a secured single-node cluster lives and who may log in to it."""

    dir: Path
    users: Mapping[str, str] = field(default_factory=dict)
    """SCRAM (SHA-256 and SHA-512) and PLAIN users, name -> password; ``admin`` included."""
    sasl_port: int = 9192
    controller_port: int = 9193
    ssl_port: int = 9194

    @property
    def bootstrap(self) -> str:
        """The SASL_SSL listener."""
        return f"{HOST}:{self.sasl_port}"

    @property
    def ssl_bootstrap(self) -> str:
        """The SSL listener (client certificates)."""
        return f"{HOST}:{self.ssl_port}"

    @property
    def admin_password(self) -> str:
        return self.users[ADMIN]

    @property
    def tls_dir(self) -> Path:
        return self.dir / "tls"

    @property
    def ca(self) -> Certificate:
        return Certificate(self.tls_dir / "ca.pem", self.tls_dir / "ca.key")

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def properties(self) -> Path:
        return self.dir / "server.properties"

    @property
    def log4j_config(self) -> Path:
        return self.dir / "log4j2.properties"

    @property
    def log_file(self) -> Path:
        return self.dir / "server.log"

    @property
    def pid_file(self) -> Path:
        return self.dir / "kafka.pid"

    def pid(self) -> int | None:
        return live_pid(self.pid_file, str(self.properties))

    def client_certificate(self, name: str) -> Certificate:
        """A client certificate for the SSL listener: its principal is ``User:CN=<name>``."""
        return issue(self.ca, self.tls_dir, name, server=False)


def secured_node(
    folder: Path, users: Mapping[str, str] | None = None, *, admin_password: str | None = None
) -> SecuredNode:
    """The layout of a secured node in ``folder`` with ``users`` (and ``admin``)."""
    for name, password in (users or {}).items():
        # Kafka's --add-scram syntax ends a value at ',' or ']', and the JAAS config
        # quotes it: keep both simple rather than escaping for two parsers.
        if not _plain_token(name) or not _plain_token(password):
            raise InfraError(f"user {name!r}: use letters, digits, '-' and '_' only")
    everyone = {**(users or {}), ADMIN: admin_password or secrets.token_hex(12)}
    return SecuredNode(folder, everyone)


def _plain_token(text: str) -> bool:
    return bool(text) and all(c.isalnum() or c in "-_" for c in text)


_LOG4J2 = """\
status = warn
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
# Every refused request is logged here: "Principal = ... is Denied operation = ...".
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = INFO
"""


def _server_properties(node: SecuredNode, broker: Certificate) -> str:
    admin = node.admin_password
    plain_users = " ".join(f'user_{name}="{pw}"' for name, pw in sorted(node.users.items()))
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required"
    plain = "org.apache.kafka.common.security.plain.PlainLoginModule required"
    return f"""\
# Written by infra.kafka_secured for a secured single-node cluster; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{HOST}:{node.controller_port}
listeners=SASL_SSL://{HOST}:{node.sasl_port},SSL://{HOST}:{node.ssl_port},\
CONTROLLER://{HOST}:{node.controller_port}
advertised.listeners=SASL_SSL://{HOST}:{node.sasl_port},SSL://{HOST}:{node.ssl_port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=SASL_SSL:SASL_SSL,SSL:SSL,CONTROLLER:SSL
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram} \
username="{ADMIN}" password="{admin}";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config={scram};
listener.name.sasl_ssl.plain.sasl.jaas.config={plain} \
username="{ADMIN}" password="{admin}" {plain_users};
ssl.keystore.type=PEM
ssl.keystore.location={broker.bundle}
ssl.truststore.type=PEM
ssl.truststore.location={node.ca.cert}
listener.name.ssl.ssl.client.auth=required
listener.name.controller.ssl.client.auth=required
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:{ADMIN};{BROKER_PRINCIPAL}
allow.everyone.if.no.acl.found=false
log.dirs={node.data_dir}
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.recovery.threads.per.data.dir=1
"""


def _jvm() -> list[str]:
    return [
        require_java(),
        "-Xms256m",
        "-Xmx512m",
        "-XX:+UseG1GC",
        "-XX:TieredStopAtLevel=1",  # C1 only, as the plain broker (infra.kafka)
        "-Djava.awt.headless=true",
    ]


def prepare(node: SecuredNode, libs: Path, progress: Progress) -> None:
    """Certificates, configs and formatted storage with the SCRAM users (once per folder)."""
    node.dir.mkdir(parents=True, exist_ok=True)
    if not node.ca.cert.exists():
        progress(f"making a CA and the broker's certificate in {node.tls_dir}")
        make_ca(node.tls_dir)
    broker = Certificate(node.tls_dir / "broker.pem", node.tls_dir / "broker.key")
    if not broker.bundle.exists():
        broker = issue(node.ca, node.tls_dir, "broker", server=True)
    node.log4j_config.write_text(_LOG4J2)
    node.properties.write_text(_server_properties(node, broker))
    node.properties.chmod(0o600)  # it holds the admin password
    if (node.data_dir / "meta.properties").exists():
        return
    node.data_dir.mkdir(parents=True, exist_ok=True)
    scram: list[str] = []
    for name, password in sorted(node.users.items()):
        for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
            scram += ["--add-scram", f"{mechanism}=[name={name},password={password}]"]
    progress(f"formatting the secured node's storage with {len(node.users)} SCRAM user(s)")
    run(
        [
            *_jvm(),
            f"-Dlog4j2.configurationFile={node.log4j_config}",
            "-cp",
            f"{libs}/*",
            "kafka.tools.StorageTool",
            "format",
            "-t",
            _cluster_id(),
            "-c",
            str(node.properties),
            *scram,
        ],
        timeout=120,
    )


def _cluster_id() -> str:
    import base64
    import uuid

    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


_CHILDREN: list[subprocess.Popen[bytes]] = []


def start(node: SecuredNode, libs: Path, progress: Progress) -> int:
    """Prepare, start and wait until the broker serves a SCRAM-authenticated transaction."""
    running = node.pid()
    if running is not None:
        return running
    for port in (node.sasl_port, node.controller_port, node.ssl_port):
        if port_in_use(HOST, port):
            raise InfraError(f"port {port} is in use; the secured node needs it")
    prepare(node, libs, progress)
    rotate_log(node.log_file)
    argv = [
        *_jvm(),
        f"-Dlog4j2.configurationFile={node.log4j_config}",
        f"-Dkafka.logs.dir={node.dir}",
        "-cp",
        f"{libs}/*",
        MAIN_CLASS,
        str(node.properties),
    ]
    with node.log_file.open("ab") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=node.dir,
            start_new_session=True,
        )
    _CHILDREN.append(proc)
    node.pid_file.write_text(f"{proc.pid}\n")
    progress(f"started the secured Kafka node on {node.bootstrap} (pid {proc.pid})")
    began = time.monotonic()
    asyncio.run(_wait_ready(node))
    progress(f"secured Kafka node ready after {time.monotonic() - began:.1f} s")
    return proc.pid


def stop(node: SecuredNode, progress: Progress, timeout: float = 30.0) -> bool:
    """SIGTERM the node (SIGKILL after ``timeout``); True when it was running."""
    pid = node.pid()
    if pid is None:
        return False
    progress(f"stopping the secured Kafka node (pid {pid})")
    terminate_pid(pid, timeout, progress, "secured Kafka node")
    node.pid_file.unlink(missing_ok=True)
    return True


def admin_client_config(node: SecuredNode) -> dict[str, Any]:
    """aiokafka keyword arguments logging in as ``admin`` over SASL_SSL (SCRAM-SHA-512)."""
    from aiokafka.helpers import create_ssl_context

    return {
        "bootstrap_servers": node.bootstrap,
        "security_protocol": "SASL_SSL",
        "ssl_context": create_ssl_context(cafile=str(node.ca.cert)),
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": ADMIN,
        "sasl_plain_password": node.admin_password,
    }


async def _wait_ready(node: SecuredNode) -> None:
    """Until a transactional producer (as admin) commits: TLS, SCRAM, the authorizer,
    and the transaction coordinator all work."""
    import logging

    from aiokafka import AIOKafkaProducer

    deadline = time.monotonic() + READY_TIMEOUT_S
    last_error = "no answer yet"
    logger = logging.getLogger("aiokafka")
    old_level = logger.level
    logger.setLevel(logging.CRITICAL + 1)  # connection errors are expected while it boots
    try:
        while time.monotonic() < deadline:
            if node.pid() is None:
                raise InfraError(
                    f"the secured Kafka node exited while starting; see {node.log_file}:\n"
                    + tail(node.log_file)
                )
            producer = AIOKafkaProducer(
                **admin_client_config(node),
                transactional_id="agentstream-secured-readiness",
                request_timeout_ms=10_000,
            )
            try:
                await asyncio.wait_for(producer.start(), 30)
                async with producer.transaction():
                    pass
                return
            except Exception as error:  # retried until the deadline
                last_error = f"{type(error).__name__}: {error}"
            finally:
                with contextlib.suppress(Exception):
                    await producer.stop()
            await asyncio.sleep(0.5)
    finally:
        logger.setLevel(old_level)
    raise InfraError(
        f"the secured Kafka node at {node.bootstrap} was not ready after "
        f"{READY_TIMEOUT_S:.0f} s ({last_error}); see {node.log_file}"
    )


def denials(node: SecuredNode) -> list[str]:
    """The authorizer's "Denied" lines of the current log (what ACLs refused)."""
    try:
        lines = node.log_file.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line for line in lines if "is Denied operation" in line]


def environ(node: SecuredNode, user: str = ADMIN) -> dict[str, str]:
    """``AGENTSTREAM_KAFKA_*`` variables that point agentstream at this node as ``user``."""
    return {
        "AGENTSTREAM_KAFKA_BOOTSTRAP": node.bootstrap,
        "AGENTSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "AGENTSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "AGENTSTREAM_KAFKA_SASL_USERNAME": user,
        "AGENTSTREAM_KAFKA_SASL_PASSWORD": node.users[user],
        "AGENTSTREAM_KAFKA_SSL_CAFILE": str(node.ca.cert),
    }


def local_node(folder: Path) -> SecuredNode:
    """A node in ``folder`` whose users (admin and one per agentstream role) are kept in
    ``users.json`` there, made once with random passwords, so that it restarts as it was."""
    import json

    users_file = folder / "users.json"
    if users_file.exists():
        users = json.loads(users_file.read_text())
        return SecuredNode(folder, users)
    roles = ("api", "engine", "llm", "tools", "projector")
    node = secured_node(folder, {role: secrets.token_hex(12) for role in roles})
    folder.mkdir(parents=True, exist_ok=True)
    users_file.write_text(json.dumps(dict(node.users), indent=2) + "\n")
    users_file.chmod(0o600)
    return node


def main(argv: list[str] | None = None) -> int:
    """``python -m infra.kafka_secured up|down [--dir DIR]``: a secured node to try things on."""
    import argparse

    from infra.kafka_jars import ensure_jars
    from infra.local import home

    parser = argparse.ArgumentParser(prog="python -m infra.kafka_secured", description=__doc__)
    parser.add_argument("action", choices=("up", "down"))
    parser.add_argument("--dir", type=Path, default=home() / "kafka" / "secured")
    args = parser.parse_args(argv)
    node = local_node(args.dir)
    if args.action == "down":
        if not stop(node, print):
            print("the secured node is not running")
        return 0
    try:
        start(node, ensure_jars(home() / "kafka", print), print)
    except InfraError as error:
        print(f"error: {error}")
        return 1
    print(f"# as admin (users and passwords of each role: {args.dir / 'users.json'})")
    for name, value in environ(node).items():
        print(f"export {name}={value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
