#!/usr/bin/env bash
# Mutation testing of the pure session core (processors/core/) against its unit tests,
# with mutmut configured under [tool.mutmut] in pyproject.toml. Not part of the default
# test run: it is CPU-heavy (see docs/mutation-testing.md for the figures and how to
# read them). Prints the score and every surviving mutant; exits 1 below the bar.
#
#   scripts/mutation.sh                  # a fresh run over every mutant
#   scripts/mutation.sh 'processors.core.timers*'   # after a full run: re-test only these
#
# Settings: MUTATION_JOBS (parallel mutants, default: the number of cores),
# MUTATION_NICE (niceness, default 10: other work on the machine keeps its CPU),
# MUTATION_MIN_SCORE (default 97), AGENTSTREAM_VENV (default .venv).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv=${AGENTSTREAM_VENV:-.venv}
jobs=${MUTATION_JOBS:-$(nproc)}
niceness=${MUTATION_NICE:-10}
min_score=${MUTATION_MIN_SCORE:-97}

[[ -x $venv/bin/python ]] || bash scripts/bootstrap.sh
if ! "$venv/bin/python" -c 'import importlib.metadata as m; assert m.version("mutmut") == "3.8.1"' 2>/dev/null; then
    # mutmut 3.8 declares click>=8.4.2 while faust-streaming needs click<8.4; mutmut runs
    # on the click the project has, so it is installed without that one requirement and
    # its other requirements are installed explicitly. Pinned: its configuration keys
    # and results format move between 3.x releases.
    echo "== installing mutmut 3.8.1 into $venv"
    "$venv/bin/python" -m pip install -q 'libcst>=1.9.0' 'textual>=1.0.0' \
        'setproctitle>=1.3.7' 'coverage>=7.3.0'
    "$venv/bin/python" -m pip install -q --no-deps 'mutmut==3.8.1'
fi

# Every test module of the core must be in the configured selection, or its tests
# would silently not count.
missing=$("$venv/bin/python" - <<'PY'
import pathlib
import tomllib

selected = tomllib.loads(pathlib.Path("pyproject.toml").read_text())["tool"]["mutmut"][
    "pytest_add_cli_args_test_selection"
]
print(" ".join(str(p) for p in sorted(pathlib.Path("tests/unit").glob("test_core_*.py"))
               if str(p) not in selected))
PY
)
if [[ -n $missing ]]; then
    echo "add to pytest_add_cli_args_test_selection in pyproject.toml: $missing" >&2
    exit 2
fi

if (($# == 0)); then
    rm -rf mutants  # a fresh run: no verdict carried over from older code or tests
fi
echo "== mutmut run over processors/core/ ($jobs jobs, nice $niceness)"
began=$SECONDS
mkdir -p mutants
raw=mutants/run.raw.log
rc=0
nice -n "$niceness" "$venv/bin/mutmut" run --max-children "$jobs" "$@" >"$raw" 2>&1 || rc=$?
# mutmut redraws its status line with carriage returns and spinners: show the lines
# that say something (errors in full), then the last state of the status line.
tr '\r' '\n' <"$raw" | grep -v -e '^[[:space:]]*$' -e '^[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]' >mutants/run.log || true
grep -v -e '^[0-9]*/[0-9]* ' mutants/run.log || true
grep -e '^[0-9]*/[0-9]* ' mutants/run.log | tail -n 1 || true
if ((rc != 0)); then
    echo "mutmut run failed (exit $rc; log: mutants/run.log)" >&2
    exit "$rc"
fi
wall=$((SECONDS - began))
# CPU seconds of mutmut and its test processes (the machine may be shared: wall time
# alone says more about the neighbours than about the run).
times >mutants/times.txt  # the builtin, in this shell: a $(...) subshell has no children
cpu=$(tail -n 1 mutants/times.txt | awk '{
    split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%d", u[1] * 60 + u[2] + s[1] * 60 + s[2] }')
"$venv/bin/mutmut" export-cicd-stats >/dev/null

echo "== surviving mutants (mutmut show NAME prints the diff of one)"
"$venv/bin/mutmut" results

"$venv/bin/python" - "$wall" "$cpu" "$min_score" <<'PY'
import json
import sys

wall, cpu, min_score = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
with open("mutants/mutmut-cicd-stats.json") as f:
    s = json.load(f)
# A timeout is a kill (the mutant made a test hang); a mutant no test reaches, or whose
# verdict is suspicious, counts against the score like a survivor.
killed = s["killed"] + s["timeout"]
tested = killed + s["survived"] + s["no_tests"] + s["suspicious"] + s["segfault"]
unchecked = s["total"] - tested - s["skipped"]
score = 100.0 * killed / tested if tested else 0.0
print(
    f"== mutants {tested}, killed {killed} (of which timeouts {s['timeout']}), "
    f"survived {s['survived']}, no tests {s['no_tests']}, suspicious {s['suspicious']}, "
    f"segfault {s['segfault']}, not checked {unchecked}"
)
print(
    f"== mutation score {score:.1f} % (bar {min_score:g} %), "
    f"wall time {wall // 60}m{wall % 60:02d}s, CPU time {cpu // 60}m{cpu % 60:02d}s"
)
sys.exit(0 if score >= min_score and unchecked == 0 else 1)
PY
