#!/usr/bin/env bash
# Create .venv at the repo root (Python >= 3.11) and install agentstream with its
# dev extras into it. Idempotent: a second run only re-checks the install.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ ! -x .venv/bin/python ]]; then
    python=$(command -v python3.11 || command -v python3)
    "$python" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' \
        || { echo "need Python >= 3.11 (found $python)" >&2; exit 1; }
    "$python" -m venv .venv
fi
# pip and setuptools are chatty on an editable install; keep their output in a log
# and show it only when the install fails.
mkdir -p .agentstream
log=.agentstream/pip-install.log
if ! { .venv/bin/python -m pip install -q --upgrade pip \
       && .venv/bin/python -m pip install -q -e '.[dev]'; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "pip install failed (log: $log)" >&2
    exit 1
fi
echo "agentstream installed in $(pwd)/.venv ($(.venv/bin/python --version))"
