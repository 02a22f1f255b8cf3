#!/usr/bin/env bash
# The chaos suite: three local brokers (RF 3, min ISR 2), real workers under load, and
# faults: kill -9 of workers, a zombie worker (SIGSTOP past its session timeout), the
# partition leader and transaction coordinator brokers killed and restarted, Postgres
# restarted, scale 1 -> 3 -> 1. Each scenario prints its figures and checks the log's
# invariants. It stops the single local broker for the run and brings it back after.
# Extra arguments go to pytest (e.g. -k zombie).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
.venv/bin/agentstream infra up
exec .venv/bin/pytest -q -s -m chaos -p no:cacheprovider \
    tests/chaos tests/integration/test_infra.py "$@"
