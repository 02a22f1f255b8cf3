"""The schema registry's app and the Java to run it: fetched once, cached, checked.

Maven Central publishes Apicurio Registry ready to run (a Quarkus "fast-jar" folder
in a tar.gz); ``ensure_app`` copies it out of Maven with ``maven-dependency-plugin``
and unpacks it. It needs Java 21 or newer, while the broker runs on the JDK 17 the
machine image has, so ``find_java`` looks for one beside it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

from infra.procs import InfraError, Progress, tail

VERSION = "3.3.3"
ARTIFACT = f"io.apicurio:apicurio-registry-app:{VERSION}:tar.gz:all"
_COPY_GOAL = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy"
JAR = "quarkus-run.jar"
MIN_JAVA = 21
URL_ENV = "AGENTSTREAM_SCHEMA_REGISTRY_URL"


# ------------------------------------------------------------------------ java


def _java_version(java: Path) -> int | None:
    """The feature version (17, 21, 25...) of ``<jdk>/bin/java``, from the JDK's ``release``
    file when there is one (no JVM to start), else from ``java -version``."""
    release = java.parent.parent / "release"
    text = ""
    with contextlib.suppress(OSError):
        text = release.read_text()
    if "JAVA_VERSION=" not in text:
        try:
            done = subprocess.run(
                [str(java), "-version"], capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        text = done.stderr + done.stdout
    found = re.search(r'version[=\s]+"(\d+)(?:\.(\d+))?', text, re.IGNORECASE)
    if found is None:
        return None
    major = int(found.group(1))
    # Java 8 and older say "1.8.0".
    return int(found.group(2) or 0) if major == 1 else major


def find_java(jvm_dir: Path = Path("/usr/lib/jvm")) -> Path:
    """A ``java`` of version >= 21: ``$JAVA_HOME``'s, then the one on PATH, then the newest
    JDK in ``jvm_dir`` (the broker may well run on an older one, say JAVA_HOME's 17)."""
    preferred: list[Path] = []
    if os.environ.get("JAVA_HOME"):
        preferred.append(Path(os.environ["JAVA_HOME"]) / "bin" / "java")
    on_path = shutil.which("java")
    if on_path:
        preferred.append(Path(on_path).resolve())
    seen: list[str] = []
    for java in preferred:
        version = _java_version(java) if java.exists() else None
        if version is not None and version >= MIN_JAVA:
            return java
        seen.append(f"{java} ({version or 'not usable'})")
    installed = [(_java_version(java) or 0, java) for java in sorted(jvm_dir.glob("*/bin/java"))]
    if installed and max(installed)[0] >= MIN_JAVA:
        return max(installed)[1]
    seen += [f"{java} ({version or 'unknown version'})" for version, java in installed]
    raise InfraError(
        f"Apicurio Registry {VERSION} needs Java {MIN_JAVA} or newer; found "
        + (", ".join(seen) if seen else "no java at all")
        + ". Install one (e.g. Temurin 21+ or openjdk-21-jdk-headless) and set JAVA_HOME, "
        f"or set {URL_ENV}=local to run without a schema registry"
    )


# ----------------------------------------------------------------------- fetch


def _m2_artifact_dir() -> Path:
    group, artifact = ARTIFACT.split(":")[:2]
    return Path.home() / ".m2" / "repository" / group.replace(".", "/") / artifact / VERSION


def ensure_app(app_dir: Path, progress: Progress) -> Path:
    """Fetch and unpack the app once; later calls return the cached folder.

    It is unpacked into a temporary folder and renamed into place only when complete,
    so an interrupted fetch means a fresh fetch, never a half app.
    """
    if (app_dir / JAR).exists():
        return app_dir
    mvn = shutil.which("mvn")
    if mvn is None:
        raise InfraError("mvn not found; install Maven (apt-get install maven)")
    app_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = app_dir.parent / f"app.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    mvn_log = app_dir.parent / "mvn.log"
    argv = [mvn, "-B", _COPY_GOAL, f"-Dartifact={ARTIFACT}", f"-DoutputDirectory={staging}"]
    progress(f"fetching Apicurio Registry {VERSION} with Maven (about 160 MB, first run only)")
    began = time.monotonic()
    with mvn_log.open("w") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        last = began
        while proc.poll() is None:
            time.sleep(0.5)
            if time.monotonic() - last >= 10:
                last = time.monotonic()
                progress(f"  still fetching ({last - began:.0f} s; {_fetched_mb():.0f} MB so far)")
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise InfraError(
            f"mvn failed ({proc.returncode}) fetching {ARTIFACT}; see {mvn_log}:\n" + tail(mvn_log)
        )
    archives = list(staging.glob("*.tar.gz"))
    if len(archives) != 1:
        raise InfraError(f"mvn finished but left no {ARTIFACT} in {staging}; see {mvn_log}")
    progress(f"  fetched in {time.monotonic() - began:.0f} s; unpacking")
    with tarfile.open(archives[0]) as archive:
        archive.extractall(staging, filter="data")
    archives[0].unlink()
    if not (staging / JAR).exists():
        raise InfraError(f"{ARTIFACT} has no quarkus-run.jar at its top (unpacked in {staging})")
    shutil.rmtree(app_dir, ignore_errors=True)
    staging.rename(app_dir)
    progress(f"  Apicurio Registry {VERSION} in {app_dir}")
    return app_dir


def _fetched_mb() -> float:
    """What Maven has written so far into its local repository folder for the artifact
    (the download lands there first), for the progress lines."""
    folder = _m2_artifact_dir()
    with contextlib.suppress(OSError):
        return sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) / 1e6
    return 0.0
