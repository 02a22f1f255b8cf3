"""A throw-away certificate authority for local TLS, made with the ``openssl`` command.

:func:`make_ca` writes a CA; :func:`issue` signs a certificate for a server
(subject alternative names 127.0.0.1 and localhost, so hostname checks pass) or
for a client (its common name becomes a Kafka principal ``User:CN=<name>``).
Keys are unencrypted PKCS#8 PEM, which both Python's ``ssl`` and Kafka's PEM
key stores read. Short-lived on purpose: these exist for tests and local trials.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from infra.procs import InfraError, run

DAYS = 7


@dataclass(frozen=True)
class Certificate:
    """A PEM certificate and its key; ``bundle`` holds the key and the certificate."""

    cert: Path
    key: Path

    @property
    def bundle(self) -> Path:
        """Key followed by certificate: what a Kafka ``PEM`` key store file holds."""
        return self.cert.with_name(self.cert.stem + "-keystore.pem")


def _openssl() -> str:
    found = shutil.which("openssl")
    if found is None:
        raise InfraError("openssl not found; install it (apt-get install openssl)")
    return found


def make_ca(folder: Path, name: str = "agentstream local CA") -> Certificate:
    """A self-signed CA certificate and key in ``folder`` (``ca.pem``, ``ca.key``)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = Certificate(folder / "ca.pem", folder / "ca.key")
    run(
        [
            _openssl(),
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(ca.key),
            "-out",
            str(ca.cert),
            "-days",
            str(DAYS),
            "-subj",
            f"/CN={name}",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        timeout=30,
    )
    ca.key.chmod(0o600)
    return ca


def issue(ca: Certificate, folder: Path, name: str, *, server: bool) -> Certificate:
    """A certificate with common name ``name`` signed by ``ca``.

    A server certificate names 127.0.0.1 and localhost; every certificate may be
    used on both ends of a connection (the broker also connects to itself).
    """
    openssl = _openssl()
    issued = Certificate(folder / f"{name}.pem", folder / f"{name}.key")
    request = folder / f"{name}.csr"
    extensions = folder / f"{name}.ext"
    lines = ["extendedKeyUsage=serverAuth,clientAuth", "basicConstraints=CA:FALSE"]
    if server:
        lines.append("subjectAltName=IP:127.0.0.1,DNS:localhost")
    extensions.write_text("\n".join(lines) + "\n")
    run(
        [
            openssl,
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(issued.key),
            "-out",
            str(request),
            "-subj",
            f"/CN={name}",
        ],
        timeout=30,
    )
    run(
        [
            openssl,
            "x509",
            "-req",
            "-in",
            str(request),
            "-CA",
            str(ca.cert),
            "-CAkey",
            str(ca.key),
            "-CAcreateserial",
            "-out",
            str(issued.cert),
            "-days",
            str(DAYS),
            "-extfile",
            str(extensions),
        ],
        timeout=30,
    )
    issued.key.chmod(0o600)
    issued.bundle.write_text(issued.key.read_text() + issued.cert.read_text())
    issued.bundle.chmod(0o600)
    request.unlink()
    extensions.unlink()
    return issued
