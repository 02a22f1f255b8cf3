"""The Dockerfile builds one small, non-root image for every role, and its
HEALTHCHECK probes what the container's role serves. No Docker here: the
Dockerfile is read as text, and the health-check script it installs is taken out
of it and run for real against HTTP servers on loopback."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from agentstream.cli import build_parser
from agentstream.gateway.settings import GatewaySettings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per line, continuation lines joined, heredoc bodies skipped."""
    found: list[tuple[str, str]] = []
    lines = iter(DOCKERFILE.splitlines())
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\"):
            line = line[:-1] + " " + next(lines).strip()
        word, _, rest = line.strip().partition(" ")
        found.append((word.upper(), rest.strip()))
        heredoc = re.search(r"<<'?(\w+)'?", rest)
        if heredoc:
            for body in lines:
                if body == heredoc.group(1):
                    break
    return found


def healthcheck_script() -> str:
    match = re.search(
        r"<<'EOF' /usr/local/bin/agentstream-healthcheck\n(.*?)\nEOF\n", DOCKERFILE, re.S
    )
    assert match, "the Dockerfile installs agentstream-healthcheck from a heredoc"
    return match.group(1)


def test_two_stages_from_one_pinned_python_the_project_supports() -> None:
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE, re.M))
    image = args["PYTHON_IMAGE"]
    name, _, tag = image.partition(":")
    assert name == "python" and tag and tag != "latest"
    # the tag pins the minor version the project requires and a Debian release
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = re.search(r">=\s*(\d+\.\d+)", requires)
    assert minimum and tag.startswith(minimum.group(1) + "-slim-")
    froms = [rest for word, rest in instructions() if word == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE} AS runtime"]


def test_the_runtime_installs_only_the_built_wheels() -> None:
    runs = [rest for word, rest in instructions() if word == "RUN"]
    assert any("pip wheel --wheel-dir /wheels ." in r for r in runs)
    (install,) = [r for r in runs if "pip install" in r]
    assert "--no-index" in install and "from=build" in install and "agentstream" in install
    copied = {
        rest.split()[0] for word, rest in instructions() if word == "COPY" and "<<" not in rest
    }
    # only the package sources go into the build: no tests, no benchmarks, no .venv
    assert copied == {
        "pyproject.toml",
        "agentstream",
        "schemas",
        "streams",
        "processors",
        "projections",
        "infra",
    }
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
    assert {p.rstrip("*") for p in packages} <= copied


def test_runs_as_a_numeric_non_root_user_with_a_writable_home() -> None:
    users = [rest for word, rest in instructions() if word == "USER"]
    assert users, "the image must not run as root"
    uid, gid = users[-1].split(":")
    assert int(uid) > 0 and int(gid) > 0
    assert re.search(rf"useradd .*--uid {uid} ", DOCKERFILE)
    env = " ".join(rest for word, rest in instructions() if word == "ENV")
    home = re.search(r"AGENTSTREAM_HOME=(\S+)", env)
    assert home and re.search(
        rf"install -d -o agentstream -g agentstream {home.group(1)}", DOCKERFILE
    )
    assert "AGENTSTREAM_API_HOST=0.0.0.0" in env  # reachable from outside the container


def test_one_entrypoint_for_every_role_and_the_ports_they_serve() -> None:
    (entrypoint,) = [rest for word, rest in instructions() if word == "ENTRYPOINT"]
    assert entrypoint.endswith('"agentstream"]')
    (expose,) = [rest for word, rest in instructions() if word == "EXPOSE"]
    worker = build_parser().parse_args(["worker"]).port
    assert {int(p) for p in expose.split()} == {worker, GatewaySettings().port}


def test_dockerignore_keeps_state_and_secrets_out_of_the_context() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".agentstream", "tests", "benchmarks"} <= ignored
    # but never what the build copies
    copied = {
        rest.split()[0] for word, rest in instructions() if word == "COPY" and "<<" not in rest
    }
    assert not copied & ignored


# ------------------------------------------------------------------ the HEALTHCHECK


def test_the_healthcheck_runs_the_installed_script() -> None:
    (check,) = [rest for word, rest in instructions() if word == "HEALTHCHECK"]
    assert check.endswith('CMD ["/usr/local/bin/agentstream-healthcheck"]')


class _Handler(BaseHTTPRequestHandler):
    statuses: dict[str, int] = {}

    def do_GET(self) -> None:
        self.send_response(self.statuses.get(self.path, 404))
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def server() -> Iterator[tuple[int, dict[str, int]]]:
    statuses: dict[str, int] = {}
    handler = type("Handler", (_Handler,), {"statuses": statuses})
    httpd = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], statuses
    httpd.shutdown()
    httpd.server_close()


def run_check(tmp_path: Path, *argv: str, env: dict[str, str] | None = None) -> int:
    script = tmp_path / "agentstream-healthcheck"
    script.write_text(healthcheck_script())
    return subprocess.run(
        [sys.executable, str(script), *argv], env=env or {}, capture_output=True, timeout=30
    ).returncode


def test_a_worker_is_healthy_while_its_livez_answers_200(
    tmp_path: Path, server: tuple[int, dict[str, int]]
) -> None:
    port, statuses = server
    argv = ["/usr/bin/tini", "--", "agentstream", "worker", "--port", str(port)]
    statuses["/livez"] = 200
    assert run_check(tmp_path, *argv) == 0
    statuses["/livez"] = 503
    assert run_check(tmp_path, *argv) == 1
    statuses["/livez"] = 200
    assert run_check(tmp_path, "agentstream", "worker", f"--port={port}") == 0


def test_the_api_is_probed_on_its_configured_port(
    tmp_path: Path, server: tuple[int, dict[str, int]]
) -> None:
    port, statuses = server
    statuses["/healthz"] = 200
    assert run_check(tmp_path, "agentstream", "api", env={"AGENTSTREAM_API_PORT": str(port)}) == 0
    assert run_check(tmp_path, "agentstream", "api", "--port", str(port)) == 0
    statuses["/healthz"] = 500
    assert run_check(tmp_path, "agentstream", "api", "--port", str(port)) == 1


def test_nothing_listening_is_unhealthy_and_a_cli_command_is_healthy(
    tmp_path: Path, server: tuple[int, dict[str, int]]
) -> None:
    port, _ = server  # a server that answers 404 to everything
    assert run_check(tmp_path, "agentstream", "worker", "--port", str(port)) == 1
    assert run_check(tmp_path, "agentstream", "topics", "create") == 0
    # "worker" as an argument of another command is not the worker role
    assert run_check(tmp_path, "agentstream", "tenants", "create", "worker") == 0
