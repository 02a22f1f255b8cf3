"""Kafka security settings: one set for every client, checked early, named in errors."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import socket
import ssl
from pathlib import Path

import pytest

from agentstream.commands.topics import add_kafka_arguments, settings_from_args
from streams.errors import KafkaSettingsError, KafkaUnavailableError
from streams.security import KafkaSecurity, connection_failure
from streams.settings import KafkaSettings

CA = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")

SASL_SSL_ENV = {
    "AGENTSTREAM_KAFKA_BOOTSTRAP": "broker-1:9096,broker-2:9096",
    "AGENTSTREAM_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
    "AGENTSTREAM_KAFKA_SASL_MECHANISM": "scram-sha-512",
    "AGENTSTREAM_KAFKA_SASL_USERNAME": "engine",
    "AGENTSTREAM_KAFKA_SASL_PASSWORD": "s3cret",
    "AGENTSTREAM_KAFKA_SSL_CAFILE": str(CA),
}


def test_plaintext_by_default_adds_nothing_to_the_clients() -> None:
    assert KafkaSettings().client_config() == {"bootstrap_servers": "127.0.0.1:9092"}
    assert KafkaSettings.from_env({}).security == KafkaSecurity()
    assert KafkaSecurity().faust_credentials() is None


def test_sasl_ssl_from_the_environment_reaches_every_client_with_one_tls_context() -> None:
    settings = KafkaSettings.from_env(SASL_SSL_ENV)
    config = settings.client_config()
    assert config["bootstrap_servers"] == "broker-1:9096,broker-2:9096"
    assert config["security_protocol"] == "SASL_SSL"
    assert config["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (config["sasl_plain_username"], config["sasl_plain_password"]) == ("engine", "s3cret")
    assert isinstance(config["ssl_context"], ssl.SSLContext)
    assert config["ssl_context"].check_hostname
    # built once: every client (and a replaced settings object) shares it
    again = dataclasses.replace(settings, topic_prefix="other").client_config()
    assert again["ssl_context"] is config["ssl_context"]


def test_every_kind_of_client_config_takes_the_security_settings() -> None:
    from streams.consumer import consumer_config, group_consumer_config
    from streams.producer import producer_config

    settings = KafkaSettings.from_env(SASL_SSL_ENV)
    for config in (
        producer_config(settings),
        producer_config(settings, transactional_id="t"),
        consumer_config(settings),
        group_consumer_config(settings, "g"),
    ):
        assert config["security_protocol"] == "SASL_SSL"
        assert config["sasl_plain_username"] == "engine"
        assert config["ssl_context"] is settings.security.ssl_context


def test_faust_gets_the_same_login_as_our_clients() -> None:
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    for env in (
        SASL_SSL_ENV,
        {**SASL_SSL_ENV, "AGENTSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
         "AGENTSTREAM_KAFKA_SSL_CAFILE": ""},
        {"AGENTSTREAM_KAFKA_SECURITY_PROTOCOL": "SSL", "AGENTSTREAM_KAFKA_SSL_CAFILE": str(CA)},
    ):  # fmt: skip
        security = KafkaSecurity.from_env(env)
        ours = security.client_config()
        faust = credentials_to_aiokafka_auth(security.faust_credentials())
        assert faust["security_protocol"] == ours["security_protocol"], env
        for key in ("ssl_context", "sasl_mechanism", "sasl_plain_username", "sasl_plain_password"):
            assert faust.get(key) == ours.get(key), (key, env)


def test_the_worker_app_passes_the_login_to_faust(tmp_path: Path) -> None:
    from faust.auth import SASLCredentials

    from agentstream.worker_app import Components, build_app
    from processors.agents.catalog import builtin_catalog

    kafka = KafkaSettings.from_env(SASL_SSL_ENV)
    app = build_app(Components(kafka, builtin_catalog(), ()), web_port=6999, data_dir=tmp_path)
    credentials = app.conf.broker_credentials
    assert isinstance(credentials, SASLCredentials)
    assert credentials.username == "engine" and credentials.protocol.value == "SASL_SSL"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"AGENTSTREAM_KAFKA_SECURITY_PROTOCOL": "TLS"}, "AGENTSTREAM_KAFKA_SECURITY_PROTOCOL"),
        (
            {**SASL_SSL_ENV, "AGENTSTREAM_KAFKA_SASL_MECHANISM": "OAUTHBEARER"},
            "AGENTSTREAM_KAFKA_SASL_MECHANISM",
        ),
        (
            {**SASL_SSL_ENV, "AGENTSTREAM_KAFKA_SASL_MECHANISM": "GSSAPI"},
            "AGENTSTREAM_KAFKA_SASL_MECHANISM",
        ),
        (
            {**SASL_SSL_ENV, "AGENTSTREAM_KAFKA_SASL_PASSWORD": ""},
            "AGENTSTREAM_KAFKA_SASL_PASSWORD",
        ),
        ({"AGENTSTREAM_KAFKA_SSL_CAFILE": str(CA)}, "AGENTSTREAM_KAFKA_SSL_CAFILE"),
        ({"AGENTSTREAM_KAFKA_SASL_USERNAME": "x"}, "AGENTSTREAM_KAFKA_SASL_USERNAME"),
        (
            {"AGENTSTREAM_KAFKA_SECURITY_PROTOCOL": "SSL", "AGENTSTREAM_KAFKA_SSL_KEYFILE": "k"},
            "AGENTSTREAM_KAFKA_SSL_KEYFILE",
        ),
    ],
)
def test_settings_that_cannot_work_are_refused_naming_the_variable(
    env: dict[str, str], named: str
) -> None:
    with pytest.raises(KafkaSettingsError, match=named) as refused:
        KafkaSettings.from_env(env)
    assert isinstance(refused.value, ValueError)  # what settings errors always were


def test_oauthbearer_is_refused_with_the_reason() -> None:
    with pytest.raises(KafkaSettingsError, match="re-authenticates"):
        KafkaSecurity(protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER")


def test_a_missing_ca_file_is_named_when_the_tls_context_is_built(tmp_path: Path) -> None:
    security = KafkaSecurity(protocol="SSL", ssl_cafile=str(tmp_path / "nope.pem"))
    with pytest.raises(KafkaSettingsError, match=r"AGENTSTREAM_KAFKA_SSL_CAFILE.*nope\.pem"):
        security.client_config()
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(KafkaSettingsError, match="AGENTSTREAM_KAFKA_SSL_CAFILE"):
        KafkaSecurity(protocol="SSL", ssl_cafile=str(garbage)).client_config()


def test_passwords_stay_out_of_reprs_and_java_properties() -> None:
    security = KafkaSecurity.from_env(SASL_SSL_ENV)
    assert "s3cret" not in repr(KafkaSettings(security=security))
    properties = "\n".join(security.java_properties())
    assert "s3cret" not in properties
    assert 'ScramLoginModule required username="engine"' in properties
    assert "sasl.mechanism=SCRAM-SHA-512" in properties
    assert f"ssl.truststore.location={CA}" in properties


def test_a_child_process_gets_the_same_settings_back() -> None:
    security = KafkaSecurity.from_env(SASL_SSL_ENV)
    assert KafkaSecurity.from_env(security.environ()) == security


def test_flags_stand_in_for_their_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SASL_SSL_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AGENTSTREAM_KAFKA_SASL_USERNAME")
    parser = argparse.ArgumentParser()
    add_kafka_arguments(parser)
    # the password from the environment, the user from a flag: checked together
    settings = settings_from_args(parser.parse_args(["--sasl-username", "api"]))
    assert settings.security.sasl_username == "api"
    assert settings.security.sasl_password == "s3cret"
    args = parser.parse_args(["--security-protocol", "PLAINTEXT"])
    with pytest.raises(KafkaSettingsError, match="--security-protocol"):
        settings_from_args(args)  # PLAINTEXT with a SASL password left in the environment


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_nothing_listening_is_unavailable_not_a_login_problem() -> None:
    port = _closed_port()
    failure = asyncio.run(
        connection_failure(f"127.0.0.1:{port}", KafkaSecurity(), OSError("refused"))
    )
    assert isinstance(failure, KafkaUnavailableError)
    assert f"127.0.0.1:{port}" in str(failure)


def test_infra_takes_a_secured_bootstrap_that_accepts_connections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from infra.local import kafka_answers

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        address = f"127.0.0.1:{listening.getsockname()[1]}"
        # not Kafka over plaintext: the ApiVersions probe gets no answer
        monkeypatch.delenv("AGENTSTREAM_KAFKA_SECURITY_PROTOCOL", raising=False)
        assert not kafka_answers(address)
        # a TLS or SASL listener cannot be probed without the login: an open port counts
        monkeypatch.setenv("AGENTSTREAM_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
        assert kafka_answers(address)
    assert not kafka_answers(f"127.0.0.1:{_closed_port()}")
