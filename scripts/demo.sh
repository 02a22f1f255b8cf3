#!/usr/bin/env bash
# The main job on a fresh machine: install, bring Kafka and Postgres up (no Docker),
# run N demo sessions across two worker processes, and print what happened.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
exec .venv/bin/agentstream demo "$@"
