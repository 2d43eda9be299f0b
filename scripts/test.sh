#!/usr/bin/env bash
# Run the test suite in two pytest processes, then the replay gate.
#
# Temporal's rule: one kind of test environment per pytest process (the time-skipping test
# server and the dev server don't mix), so unit tests and integration tests run apart.
# Extra arguments go to both runs (e.g. `scripts/test.sh -x -k release`).
# Exit code 5 (no tests collected) counts as success; the script fails if either run fails.
# Each run is capped at SLIPWAY_TEST_TIMEOUT seconds (default 1800) so a hung test fails the
# run with a clear message instead of using up CI's whole time budget.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

PYTEST="$REPO/.venv/bin/pytest"
TIMEOUT="${SLIPWAY_TEST_TIMEOUT:-1800}"
if [[ ! -x "$PYTEST" ]]; then
    echo "test.sh: error: $PYTEST not found; run 'bash scripts/bootstrap.sh' first" >&2
    exit 2
fi

declare -A RESULT=()
overall=0

run() {
    local name="$1" marker="$2" rc summary
    shift 2
    echo "=== ${name} tests (pytest -m \"${marker}\") ==="
    # Keep the output streaming live, and remember the closing line for the recap below.
    # timeout signals pytest's whole process group, so test servers it started go too.
    timeout --kill-after=30 "$TIMEOUT" "$PYTEST" -m "$marker" "$@" 2>&1 | tee "$LOG_DIR/$name.log"
    rc=${PIPESTATUS[0]}
    if [[ $rc -eq 124 || $rc -eq 137 ]]; then
        echo "test.sh: ${name} tests did not finish within ${TIMEOUT}s (SLIPWAY_TEST_TIMEOUT);" \
            "rerun with -v to see which test hangs" >&2
        RESULT[$name]="exit $rc: timed out after ${TIMEOUT}s"
        overall=1
        return
    fi
    summary="$(grep -E '(passed|failed|errors?|no tests ran|deselected).* in [0-9.]+s' "$LOG_DIR/$name.log" | tail -n1 | sed -E 's/^=+ //; s/ =+$//')"
    if [[ $rc -eq 5 ]]; then
        summary="${summary:-no tests collected} (exit 5: no tests, counted as success)"
        rc=0
    fi
    RESULT[$name]="exit $rc: ${summary:-no summary line}"
    [[ $rc -eq 0 ]] || overall=1
}

LOG_DIR="$(mktemp -d)"
trap 'rm -rf "$LOG_DIR"' EXIT

run unit "not integration" "$@"
# The integration run's dev server writes every Slipway workflow's history here at its end
# (tests/support/history_export.py), for the replay gate below.
export REPLAY_GATE_HISTORIES="$LOG_DIR/histories"
run integration "integration" "$@"
unset REPLAY_GATE_HISTORIES

# The replay gate: every golden history and every history the integration tests recorded
# replays on this commit's workflow code, or the gate says what to do (tests/histories/gate.py).
echo "=== replay gate (python -m tests.histories.gate) ==="
if PYTHONPATH="$REPO" timeout --kill-after=30 600 "$REPO/.venv/bin/python" -m tests.histories.gate \
        "$LOG_DIR/histories"; then
    RESULT[gate]="exit 0: every history replays"
else
    RESULT[gate]="exit 1: see REPLAY GATE FAILED above"
    overall=1
fi

echo "=== summary ==="
echo "unit:        ${RESULT[unit]}"
echo "integration: ${RESULT[integration]}"
echo "replay gate: ${RESULT[gate]}"
exit "$overall"
