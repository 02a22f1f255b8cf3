"""Postgres URLs: every spelling users write, libpq's TLS parameters, clear refusals."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest

from infra import postgres
from infra.local import _is_local_dsn
from projections.db import DatabaseUrlError, libpq_url

BASE = "agentstream:pw@db.example.com:6543/agentstream"


def query(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+asyncpg"])
def test_every_spelling_becomes_what_asyncpg_takes(scheme: str) -> None:
    url = libpq_url(f"{scheme}://{BASE}?sslmode=require&application_name=api")
    assert url.startswith(f"postgresql://{BASE}?")
    assert query(url) == {"sslmode": "require", "application_name": "api"}


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer", "require"])
def test_sslmodes_pass_through(mode: str) -> None:
    assert query(libpq_url(f"postgresql://{BASE}?sslmode={mode}")) == {"sslmode": mode}


def test_a_ca_file_verifies_the_server(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    url = libpq_url(f"postgresql://{BASE}?sslmode=verify-full&sslrootcert={ca}")
    assert query(url) == {"sslmode": "verify-full", "sslrootcert": str(ca)}


@pytest.mark.parametrize(
    ("url", "named"),
    [
        (f"mysql://{BASE}", "scheme"),
        (f"postgresql://{BASE}?sslmode=strict", "sslmode='strict'"),
        (f"postgresql://{BASE}?connect_timeout=5", "connect_timeout is not supported"),
        (f"postgresql://{BASE}?channel_binding=require", "channel_binding"),
        (f"postgresql://{BASE}?sslmode=verify-ca&sslrootcert=/no/ca.pem", "/no/ca.pem"),
        (f"postgresql://{BASE}?sslmode=require&sslmode=disable", "twice"),
        (f"postgresql+asyncpg://{BASE}?ssl=require", "sslmode=require, not ssl="),
        (f"postgresql://{BASE}?sslmode=verify-full&sslrootcert=system", "name the file"),
    ],
)
def test_what_asyncpg_cannot_do_is_refused_by_name(url: str, named: str) -> None:
    with pytest.raises(DatabaseUrlError, match="AGENTSTREAM_DATABASE_URL") as refused:
        libpq_url(url)
    assert named in str(refused.value)


def test_verify_without_a_ca_says_to_add_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.postgresql/root.crt there
    with pytest.raises(DatabaseUrlError, match="sslrootcert"):
        libpq_url(f"postgresql://{BASE}?sslmode=verify-full")


def test_infra_knows_its_own_address_in_every_spelling(tmp_path: Path) -> None:
    pg = postgres.cluster(tmp_path)
    for url in (
        pg.dsn,
        pg.dsn.replace("postgresql://", "postgres://"),
        pg.dsn.replace("postgresql://", "postgresql+asyncpg://"),
        pg.dsn.replace("127.0.0.1", "localhost") + "?sslmode=disable",
        f"postgres://someone:else@127.0.0.1:{pg.port}/other",
    ):
        assert _is_local_dsn(url, pg), url
    for url in ("postgresql://a:b@db.example.com:55432/x", "postgresql://a:b@127.0.0.1/x"):
        assert not _is_local_dsn(url, pg), url
    assert postgres.dsn_address("postgres://u@h/db") == ("h", 5432)
    assert postgres.dsn_address("mysql://u@h/db") is None
