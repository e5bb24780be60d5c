#!/usr/bin/env bash
# The project's test command.
#
#   scripts/test.sh [PYTEST_ARGS...]
#
# 1. installs missing dependencies (apt: pgbouncer, libpq-dev, PostgreSQL 15; pip: asyncpg,
#    psycopg[binary], pytest, pytest-timeout; the driver suites' pgjdbc + JDK, Go + pgx v4, node-pg,
#    ruby-pg: scripts/lib/driver-deps.sh) — skipped quickly when present;
# 2. swift build (debug) and swift test (every unit test);
# 3. the integration suite: python3 -m pytest -q Tests/Integration [PYTEST_ARGS...] against
#    $PG_DOORMAN_BIN (default .build/debug/pg_doorman), each test session with its own throwaway
#    PostgreSQL 15 (scripts/pg-throwaway.sh).
#
# Env: PG_DOORMAN_BIN, SKIP_UNIT=1 (skip swift test), SKIP_INTEGRATION=1, DEPS_SKIP=1.
# Exits non-zero on any failure, including "no integration tests collected".
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=scripts/lib/deps.sh
source scripts/lib/deps.sh

t0=$SECONDS
stage() { printf '\n==== %s ====\n' "$*"; }

declare -a results=()
failed=0
record() { # name status detail
    results+=("$(printf '%-12s %-5s %s' "$1" "$2" "$3")")
    [[ $2 == ok || $2 == skip ]] || failed=1
}

summary() {
    stage "summary"
    local r
    for r in "${results[@]}"; do echo "  $r"; done
    local verdict=PASS
    [[ $failed -eq 0 ]] || verdict=FAIL
    echo "test.sh: $verdict in $((SECONDS - t0)) s"
}

stage "dependencies"
ensure_deps
# shellcheck source=scripts/lib/driver-deps.sh
source scripts/lib/driver-deps.sh && ensure_driver_deps

stage "swift build"
set +e
swift build 2>&1
build_rc=$?
set -e
if [[ $build_rc -ne 0 ]]; then
    record build FAIL "swift build rc=$build_rc"
    summary
    exit 1
fi
record build ok "debug"

if [[ "${SKIP_UNIT:-0}" == 1 ]]; then
    record unit skip "SKIP_UNIT=1"
else
    stage "swift test"
    unit_log=$(mktemp /tmp/pg_doorman-unit.XXXXXX)
    set +e
    swift test 2>&1 | tee "$unit_log"
    unit_rc=${PIPESTATUS[0]}
    set -e
    # swift-testing: "Test run with N tests in M suites passed/failed ..."; XCTest: "Executed N tests, with M failures".
    strip() { sed -E 's/\x1b\[[0-9;]*m//g; s/^[^A-Za-z]*//; s/ *$//'; }
    st_line=$(grep -E 'Test run with [0-9]+ tests?' "$unit_log" | tail -n 1 | strip || true)
    xc_line=$(grep -E 'Executed [0-9]+ tests?, with' "$unit_log" | tail -n 1 | strip || true)
    unit_summary="swift-testing: ${st_line:-none}; XCTest: ${xc_line:-none}"
    rm -f "$unit_log"
    if [[ $unit_rc -eq 0 ]]; then
        record unit ok "${unit_summary:-swift test passed}"
    else
        record unit FAIL "rc=$unit_rc ${unit_summary}"
    fi
fi

if [[ "${SKIP_INTEGRATION:-0}" == 1 ]]; then
    record integration skip "SKIP_INTEGRATION=1"
else
    stage "integration (pytest)"
    export PG_DOORMAN_BIN=${PG_DOORMAN_BIN:-$ROOT/.build/debug/pg_doorman}
    case $PG_DOORMAN_BIN in /*) ;; *) PG_DOORMAN_BIN=$ROOT/$PG_DOORMAN_BIN ;; esac
    echo "PG_DOORMAN_BIN=$PG_DOORMAN_BIN"
    it_log=$(mktemp /tmp/pg_doorman-it.XXXXXX)
    set +e
    python3 -m pytest -q -p no:cacheprovider Tests/Integration "$@" 2>&1 | tee "$it_log"
    it_rc=${PIPESTATUS[0]}
    set -e
    it_summary=$(grep -E '^=*.*[0-9]+ (passed|failed|error|errors|skipped|deselected).* in [0-9.]+s' "$it_log" \
        | tail -n 1 | sed -E 's/=//g; s/^ +| +$//g')
    rm -f "$it_log"
    case $it_rc in
        0) record integration ok "${it_summary}" ;;
        5) record integration FAIL "no tests collected (pytest rc=5)" ;;
        *) record integration FAIL "pytest rc=$it_rc ${it_summary}" ;;
    esac
fi

if [[ "${SKIP_INTEGRATION:-0}" != 1 && $# -eq 0 ]]; then
    # The suite above relays plain transaction-mode clients on the RelayLoop (the default); the
    # relay through SwiftNIO (TLS and session-mode clients, PG_DOORMAN_RELAY_LOOP=0) gets the core,
    # extended-protocol, isolation, timeout and migration files once more with the RelayLoop off.
    stage "integration without the RelayLoop (PG_DOORMAN_RELAY_LOOP=0)"
    nio_log=$(mktemp /tmp/pg_doorman-it-nio.XXXXXX)
    set +e
    PG_DOORMAN_RELAY_LOOP=0 python3 -m pytest -q -p no:cacheprovider \
        Tests/Integration/test_pooler_core.py Tests/Integration/test_extended_txn.py \
        Tests/Integration/test_extended_dual.py Tests/Integration/test_isolation.py \
        Tests/Integration/test_timeouts.py Tests/Integration/test_live_migration.py 2>&1 | tee "$nio_log"
    nio_rc=${PIPESTATUS[0]}
    set -e
    nio_summary=$(grep -E '^=*.*[0-9]+ (passed|failed|error|errors|skipped|deselected).* in [0-9.]+s' "$nio_log" \
        | tail -n 1 | sed -E 's/=//g; s/^ +| +$//g')
    rm -f "$nio_log"
    if [[ $nio_rc -eq 0 ]]; then
        record integration-nio ok "${nio_summary}"
    else
        record integration-nio FAIL "pytest rc=$nio_rc ${nio_summary}"
    fi
fi

summary
exit $failed
