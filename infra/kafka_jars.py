"""The broker's jars: fetched from Maven Central once with ``mvn``, cached, checked.

``kafka/pom.xml`` beside this file names the broker (``kafka_2.13``), an SLF4J
binding (without one the broker logs nothing) and the Prometheus JMX exporter
agent; ``ensure_jars`` copies them into ``<home>/kafka/libs``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

from infra.procs import InfraError, Progress, tail

KAFKA_VERSION = "4.1.1"
POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def ensure_jars(root: Path, progress: Progress) -> Path:
    """Fetch the broker jars with Maven once; later calls return the cached folder.

    The jars are copied into a temporary folder and renamed into place only when mvn
    succeeds, and a stamp holds the pom's digest, so an interrupted fetch or a changed
    pom leads to a fresh fetch instead of a broker with a half classpath.
    """
    libs = root / "libs"
    stamp = libs / ".pom-sha256"
    digest = _pom_digest()
    if stamp.exists() and stamp.read_text().strip() == digest:
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise InfraError("mvn not found; install Maven (apt-get install maven)")
    require_java()
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f"libs.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    mvn_log = root / "mvn.log"
    argv = [
        mvn,
        "-q",
        "-B",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
        "-f",
        str(POM),
    ]
    progress(f"fetching Kafka {KAFKA_VERSION} jars with Maven (first run only; up to a minute)")
    started = time.monotonic()
    with mvn_log.open("w") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        last_report = started
        while proc.poll() is None:
            time.sleep(0.5)
            now = time.monotonic()
            if now - last_report >= 10:
                last_report = now
                copied = len(list(staging.glob("*.jar"))) if staging.exists() else 0
                progress(
                    f"  still fetching ({now - started:.0f} s; "
                    f"{copied} jars in place; Maven log: {mvn_log})"
                )
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise InfraError(
            f"mvn failed ({proc.returncode}) fetching the Kafka jars; see {mvn_log}:\n"
            + tail(mvn_log)
        )
    jars = list(staging.glob("*.jar"))
    if not any(jar.name.startswith("kafka_2.13-") for jar in jars):
        raise InfraError(f"mvn finished but no kafka_2.13 jar in {staging}; see {mvn_log}")
    (staging / ".pom-sha256").write_text(digest + "\n")
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    progress(f"  fetched {len(jars)} jars in {time.monotonic() - started:.0f} s -> {libs}")
    return libs


def require_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise InfraError("java not found; install JDK 17 (apt-get install openjdk-17-jdk-headless)")
    return java
