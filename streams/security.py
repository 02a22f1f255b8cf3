"""How our Kafka clients authenticate: TLS and SASL settings, one set for every client.

:class:`KafkaSecurity` is part of :class:`~streams.settings.KafkaSettings`, so
every client :mod:`streams.clients` builds, and faust's own (through
:meth:`KafkaSecurity.faust_credentials`), uses the same settings. Variables
(``AGENTSTREAM_KAFKA_`` + the name; the CLI flags in brackets)::

    SECURITY_PROTOCOL  PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL   [--security-protocol]
    SASL_MECHANISM     PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512 (PLAIN)  [--sasl-mechanism]
    SASL_USERNAME, SASL_PASSWORD                                     [--sasl-username, ...]
    SSL_CAFILE         PEM CA bundle to trust (default: the system's) [--ssl-cafile]
    SSL_CERTFILE, SSL_KEYFILE, SSL_KEY_PASSWORD  client certificate   [--ssl-certfile, ...]

OAUTHBEARER is refused: aiokafka takes a token provider object but fetches no
token itself, and it never re-authenticates a connection (KIP-368; aiokafka
issues #1015 and #1080), so a connection dies when its token expires: a
transactional engine would see that as failed transactions. GSSAPI needs the
optional ``gssapi`` library and a Kerberos set-up we do not test; refused too.

:func:`start_failure` turns a client that could not start into an error that
names the setting to fix (aiokafka only logs why a bootstrap failed) or says an
ACL refused the principal.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NoReturn

from streams.errors import (
    KafkaAuthenticationError,
    KafkaAuthorizationError,
    KafkaSettingsError,
    KafkaUnavailableError,
    StreamsError,
)

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
ENV = "AGENTSTREAM_KAFKA_"

# field -> the setting's name as users see it (variable, flag); errors name both.
SETTING_NAMES: Mapping[str, tuple[str, str]] = {
    "protocol": (f"{ENV}SECURITY_PROTOCOL", "--security-protocol"),
    "sasl_mechanism": (f"{ENV}SASL_MECHANISM", "--sasl-mechanism"),
    "sasl_username": (f"{ENV}SASL_USERNAME", "--sasl-username"),
    "sasl_password": (f"{ENV}SASL_PASSWORD", "--sasl-password"),
    "ssl_cafile": (f"{ENV}SSL_CAFILE", "--ssl-cafile"),
    "ssl_certfile": (f"{ENV}SSL_CERTFILE", "--ssl-certfile"),
    "ssl_keyfile": (f"{ENV}SSL_KEYFILE", "--ssl-keyfile"),
    "ssl_key_password": (f"{ENV}SSL_KEY_PASSWORD", "--ssl-key-password"),
}


def setting(name: str) -> str:
    """``AGENTSTREAM_KAFKA_X (--x)``: how an error names a field of :class:`KafkaSecurity`."""
    variable, flag = SETTING_NAMES[name]
    return f"{variable} ({flag})"


@dataclass(frozen=True)
class KafkaSecurity:
    """TLS and SASL settings; the default is a plaintext, unauthenticated connection."""

    protocol: str = "PLAINTEXT"
    """``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``, as the listener is."""
    sasl_mechanism: str = "PLAIN"
    """``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512`` (used with ``SASL_*`` only)."""
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    """PEM file of the CA(s) that signed the brokers' certificates; None: the system's CAs."""
    ssl_certfile: str | None = None
    """PEM client certificate (mutual TLS); it may also hold the key."""
    ssl_keyfile: str | None = None
    ssl_key_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        protocol = self.protocol.upper()
        mechanism = self.sasl_mechanism.upper()
        object.__setattr__(self, "protocol", protocol)
        object.__setattr__(self, "sasl_mechanism", mechanism)
        if protocol not in PROTOCOLS:
            self._refuse("protocol", f"is {self.protocol!r}; use one of {', '.join(PROTOCOLS)}")
        if mechanism == "OAUTHBEARER":
            self._refuse(
                "sasl_mechanism",
                "is OAUTHBEARER, which agentstream does not support: aiokafka neither "
                "fetches nor refreshes tokens and never re-authenticates a connection, so "
                "connections die when a token expires; use SCRAM-SHA-512, SCRAM-SHA-256 "
                "or PLAIN (for MSK: SASL/SCRAM)",
            )
        if mechanism not in MECHANISMS:
            self._refuse("sasl_mechanism", f"is {mechanism!r}; use one of {', '.join(MECHANISMS)}")
        if self.sasl:
            for name in ("sasl_username", "sasl_password"):
                if not getattr(self, name):
                    self._refuse(name, f"is required with {protocol}")
        else:
            for name in ("sasl_username", "sasl_password"):
                if getattr(self, name):
                    self._refuse(name, f"is set, but {setting('protocol')} is {protocol}")
        ssl_files = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")
        if not self.tls:
            for name in ssl_files:
                if getattr(self, name):
                    self._refuse(
                        name, f"is set, but {setting('protocol')} is {protocol}: TLS is off"
                    )
        if self.ssl_keyfile and not self.ssl_certfile:
            self._refuse("ssl_keyfile", f"is set without {setting('ssl_certfile')}")

    def _refuse(self, name: str, problem: str) -> NoReturn:
        raise KafkaSettingsError(f"{setting(name)} {problem}")

    @property
    def tls(self) -> bool:
        """True when connections are encrypted (``SSL`` or ``SASL_SSL``)."""
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        """True when connections log in with a user name and password."""
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @property
    def principal(self) -> str:
        """Who the cluster will see, as far as these settings tell (for messages)."""
        if self.sasl:
            return f"User:{self.sasl_username}"
        if self.ssl_certfile:
            return f"the subject of {self.ssl_certfile}"
        return "User:ANONYMOUS"

    @cached_property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The one TLS context every client shares (built on first use), or None."""
        if not self.tls:
            return None
        from aiokafka.helpers import create_ssl_context

        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path and not os.path.isfile(path):
                self._refuse(name, f"names {path!r}, which is not a readable file")
        try:
            context: ssl.SSLContext = create_ssl_context(
                cafile=self.ssl_cafile,
                certfile=self.ssl_certfile,
                keyfile=self.ssl_keyfile,
                password=self.ssl_key_password,
            )
        except ssl.SSLError as error:
            which = "ssl_certfile" if self.ssl_certfile else "ssl_cafile"
            self._refuse(which, f"could not be loaded: {error}")
        return context

    def client_config(self) -> dict[str, Any]:
        """aiokafka keyword arguments (none for a plaintext connection)."""
        if self.protocol == "PLAINTEXT":
            return {}
        config: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            config["ssl_context"] = self.ssl_context
        if self.sasl:
            config["sasl_mechanism"] = self.sasl_mechanism
            config["sasl_plain_username"] = self.sasl_username
            config["sasl_plain_password"] = self.sasl_password
        return config

    def faust_credentials(self) -> Any:
        """The same settings as faust's ``broker_credentials`` (None when plaintext)."""
        if self.protocol == "PLAINTEXT":
            return None
        from faust.auth import SASLCredentials, SSLCredentials

        if self.sasl:
            # With an ssl_context faust makes it SASL_SSL, without SASL_PLAINTEXT.
            return SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password,
                ssl_context=self.ssl_context,
                mechanism=self.sasl_mechanism,
            )
        return SSLCredentials(self.ssl_context)

    def environ(self) -> dict[str, str]:
        """These settings as ``AGENTSTREAM_KAFKA_*`` variables (for a child process)."""
        values = {
            variable: str(getattr(self, name))
            for name, (variable, _flag) in SETTING_NAMES.items()
            if getattr(self, name) is not None
        }
        return values

    def java_properties(self) -> list[str]:
        """The same login for Kafka's Java tools (``--command-config``); password elided."""
        lines = [f"security.protocol={self.protocol}"]
        if self.sasl:
            module = {
                "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
            }.get(self.sasl_mechanism, "org.apache.kafka.common.security.scram.ScramLoginModule")
            lines.append(f"sasl.mechanism={self.sasl_mechanism}")
            lines.append(
                f'sasl.jaas.config={module} required username="{self.sasl_username}" '
                'password="<password>";'
            )
        if self.ssl_cafile:
            lines += ["ssl.truststore.type=PEM", f"ssl.truststore.location={self.ssl_cafile}"]
        if self.ssl_certfile:
            # Kafka's PEM key store wants the PKCS#8 key and the certificate in one file.
            lines += ["ssl.keystore.type=PEM", "ssl.keystore.location=<key and certificate>.pem"]
        return lines

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KafkaSecurity:
        """From ``AGENTSTREAM_KAFKA_*`` variables; unset or blank ones keep their default."""
        env = os.environ if environ is None else environ
        values: dict[str, str] = {}
        for name, (variable, _flag) in SETTING_NAMES.items():
            raw = env.get(variable, "").strip()
            if raw:
                values[name] = raw
        return cls(**values)


async def start_failure(
    bootstrap: str, security: KafkaSecurity, error: BaseException
) -> StreamsError | None:
    """The error to raise instead of ``error``, which a client's ``start`` raised;
    None when it is none of ours to explain (re-raise it as it is)."""
    from aiokafka.errors import (
        ClusterAuthorizationFailedError,
        GroupAuthorizationFailedError,
        KafkaConnectionError,
        TopicAuthorizationFailedError,
        TransactionalIdAuthorizationFailed,
    )

    if isinstance(error, KafkaConnectionError):
        return await connection_failure(bootstrap, security, error)
    refusals = (
        ClusterAuthorizationFailedError,
        GroupAuthorizationFailedError,
        TopicAuthorizationFailedError,
        TransactionalIdAuthorizationFailed,
    )
    if isinstance(error, refusals):
        return KafkaAuthorizationError(
            f"Kafka at {bootstrap} logged {security.principal} in but an ACL refused it "
            f"({error}): `agentstream acls plan` lists what each role may do"
        )
    return None


async def connection_failure(
    bootstrap: str, security: KafkaSecurity, error: BaseException
) -> StreamsError:
    """What to tell the user when a client could not start (``error``: aiokafka's).

    aiokafka logs why each bootstrap server failed and raises a bare "Unable to
    bootstrap"; a second, single connection to the first server finds the reason
    (refused TLS certificate, wrong password, SASL mechanism or protocol the
    listener does not speak) so the error can name the setting to fix.
    """
    from aiokafka.conn import create_conn
    from aiokafka.errors import (
        IllegalSaslStateError,
        KafkaError,
        SaslAuthenticationFailed,
        UnsupportedSaslMechanismError,
    )
    from aiokafka.protocol.metadata import MetadataRequest

    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    where = f"Kafka at {bootstrap}"
    try:
        ssl_context = security.ssl_context
        conn = await asyncio.wait_for(
            create_conn(
                host.strip("[]"),
                int(port),
                security_protocol=security.protocol,
                ssl_context=ssl_context,
                sasl_mechanism=security.sasl_mechanism if security.sasl else None,
                sasl_plain_username=security.sasl_username,
                sasl_plain_password=security.sasl_password,
                request_timeout_ms=5_000,
            ),
            10,
        )
        try:
            await asyncio.wait_for(conn.send(MetadataRequest([])), 10)
        finally:
            conn.close()
    except SaslAuthenticationFailed as refused:
        return KafkaAuthenticationError(
            f"{where} refused the login of {security.sasl_username!r} with "
            f"{security.sasl_mechanism}: check {setting('sasl_username')} and "
            f"{setting('sasl_password')} ({refused})"
        )
    except UnsupportedSaslMechanismError as refused:
        return KafkaAuthenticationError(
            f"{where} does not enable {security.sasl_mechanism}: check "
            f"{setting('sasl_mechanism')} ({refused})"
        )
    except IllegalSaslStateError as refused:
        return KafkaAuthenticationError(
            f"{where} does not take a SASL login on this listener: check "
            f"{setting('protocol')} (now {security.protocol}) ({refused})"
        )
    except ssl.SSLCertVerificationError as refused:
        return KafkaAuthenticationError(
            f"{where}: the broker's TLS certificate is not trusted ({refused.verify_message}): "
            f"set {setting('ssl_cafile')} to the CA that signed it"
        )
    except ssl.SSLError as refused:
        return KafkaAuthenticationError(
            f"{where}: the TLS handshake failed ({refused}): check {setting('protocol')} "
            f"(now {security.protocol}) and, if the listener wants a client certificate, "
            f"{setting('ssl_certfile')} and {setting('ssl_keyfile')}"
        )
    except KafkaSettingsError as wrong:
        return wrong
    except (ConnectionRefusedError, OSError, TimeoutError) as unreachable:
        if isinstance(unreachable, ConnectionResetError) and security.tls:
            return KafkaAuthenticationError(
                f"{where} reset the connection during the TLS handshake: is the listener "
                f"{security.protocol}? check {setting('protocol')}"
            )
        return KafkaUnavailableError(f"no Kafka broker at {bootstrap}: {error}")
    except KafkaError as closed:
        if security.protocol != "PLAINTEXT" or "closed" in str(closed):
            return KafkaAuthenticationError(
                f"{where} closed the connection while it was being set up ({closed}): the "
                f"listener speaks another protocol than {security.protocol} (check "
                f"{setting('protocol')}) or wants a client certificate (check "
                f"{setting('ssl_certfile')})"
            )
        return KafkaUnavailableError(f"no Kafka broker at {bootstrap}: {error}")
    return KafkaUnavailableError(f"no Kafka broker at {bootstrap}: {error}")
