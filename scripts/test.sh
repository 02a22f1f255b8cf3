#!/usr/bin/env bash
# The test command: install, check the code (ruff, mypy --strict), bring Kafka and
# Postgres up (no Docker), run the default test set (unit + integration + the short
# chaos tests; the long chaos runs and the benchmarks are separate, see README.md).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
echo "== ruff and mypy"
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
.venv/bin/mypy .
.venv/bin/agentstream infra up
exec .venv/bin/pytest -q -m "not chaos and not bench" tests "$@"
