# syntax=docker/dockerfile:1.7
#
# One image for every role of agentstream:
#   docker run IMAGE worker [--role engine,llm,tools] [--port 6066]
#   docker run IMAGE api [--port 8080]
#   docker run IMAGE topics create | tenants create acme | replay | ...
# The entrypoint is the `agentstream` CLI; settings come from AGENTSTREAM_* variables
# (docs/operations.md). Build: docker build -t agentstream .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- build: wheels
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# Only what the package is built from; tests, benchmarks and docs stay out.
COPY pyproject.toml README.md ./
COPY agentstream ./agentstream
COPY schemas ./schemas
COPY streams ./streams
COPY processors ./processors
COPY projections ./projections
COPY infra ./infra
# Our wheel plus a wheel of every dependency, so the runtime stage installs offline
# and needs no compiler.
RUN pip wheel --wheel-dir /wheels .

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# tini as PID 1: forwards SIGTERM to the CLI (faust and aiohttp stop gracefully on it)
# and reaps any orphaned child of a tool.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*
# The wheels are bind-mounted from the build stage, so none of them stays in a layer.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels agentstream
# A fixed numeric uid/gid so Kubernetes' runAsNonRoot can check it.
RUN groupadd --system --gid 10001 agentstream \
    && useradd --system --uid 10001 --gid agentstream --home-dir /var/lib/agentstream \
        --shell /usr/sbin/nologin agentstream \
    && install -d -o agentstream -g agentstream /var/lib/agentstream
# AGENTSTREAM_HOME holds the worker's faust data dir; its default (next to the
# installed `infra` package, i.e. site-packages) is not writable here. Both servers
# listen on every interface inside a container.
ENV AGENTSTREAM_HOME=/var/lib/agentstream \
    AGENTSTREAM_API_HOST=0.0.0.0

# The HEALTHCHECK follows the container's role: it reads PID 1's command line and
# probes the worker's /livez (port from --port, else 6066) or the API's /healthz (port
# from --port, else AGENTSTREAM_API_PORT, else 8080); a one-shot CLI command is
# healthy. Liveness, not readiness: Swarm restarts unhealthy containers. Kubernetes
# ignores HEALTHCHECK and uses the probes in infra/k8s.
COPY --chmod=0755 <<'EOF' /usr/local/bin/agentstream-healthcheck
#!/usr/local/bin/python
"""Exit 0 when the agentstream role in this container answers its liveness endpoint."""
import os
import sys
import urllib.request


def target(argv, env):
    """(port, path) to probe for the command line ``argv``, or None for no server."""
    for i, word in enumerate(argv):
        if word in ("worker", "api") and i > 0 and argv[i - 1].endswith("agentstream"):
            role, rest = word, argv[i + 1:]
            break
    else:
        return None
    port = None
    for j, arg in enumerate(rest):
        if arg == "--port" and j + 1 < len(rest):
            port = rest[j + 1]
        elif arg.startswith("--port="):
            port = arg.split("=", 1)[1]
    if role == "worker":
        return int(port or 6066), "/livez"
    return int(port or env.get("AGENTSTREAM_API_PORT") or 8080), "/healthz"


def main():
    if len(sys.argv) > 1:
        argv = sys.argv[1:]
    else:
        with open("/proc/1/cmdline", "rb") as f:
            argv = [a.decode() for a in f.read().split(b"\0") if a]
    probe = target(argv, os.environ)
    if probe is None:
        return 0
    port, path = probe
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as answer:
            return 0 if answer.status == 200 else 1
    except OSError as error:
        print(f"{path} on port {port}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
EOF
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/agentstream-healthcheck"]

USER 10001:10001
WORKDIR /var/lib/agentstream
# 6066: worker health and metrics; 8080: the HTTP API.
EXPOSE 6066 8080
ENTRYPOINT ["/usr/bin/tini", "--", "agentstream"]
CMD ["--help"]
