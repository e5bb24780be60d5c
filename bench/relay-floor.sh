#!/usr/bin/env bash
# User-space instructions per transaction of bench/relay-floor (a single-threaded epoll relay in
# Swift that owns its sockets: each client paired with its own PostgreSQL connection, every read
# framed and sent on with send(2), no pooling), counted by callgrind exactly as
# bench/instructions.sh counts the poolers (4 clients × INSTR_TX transactions, after a warm-up).
# The floor under the relay's I/O: what pg_doorman's per-transaction count could drop to if it
# read and wrote the relayed sockets itself instead of through SwiftNIO's read path. Compare with
# bench/instructions.sh's pg_doorman column at the same commit.
#
# Knobs (env): INSTR_TX (2000), BENCH_KEEP=1 (keep the work directory).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH_TAG=relay-floor
# shellcheck source=bench/lib.sh
source bench/lib.sh

TX=${INSTR_TX:-2000}
ensure_apt_deps
command -v valgrind >/dev/null || die "valgrind not installed (bench/instructions.sh installs it)"
command -v swiftc >/dev/null || die "no swiftc"

work=$(mktemp -d /tmp/pgdm-floor.XXXXXX)
chmod 0755 "$work"
pid=""
cleanup() {
    local rc=$?
    set +e
    [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null
    sleep 1
    "$ROOT/scripts/pg-throwaway.sh" stop "$work/pg" >/dev/null 2>&1
    if [[ "${BENCH_KEEP:-0}" == 1 ]]; then say "kept $work"; else rm -rf "$work"; fi
    exit $rc
}
trap cleanup EXIT

swiftc -O -g -enforce-exclusivity=unchecked -import-objc-header bench/relay-floor/shim.h bench/relay-floor/main.swift -o "$work/relay-floor" \
    || die "relay-floor does not build"
# (valgrind 3.19 cannot read Swift's DWARF 5: symbols only.)
strip --strip-debug "$work/relay-floor"
start_bench_pg "$work/pg"
printf '\\set aid random(1, 100000)\nSELECT :aid;\n' >"$work/q.sql"
port=$(free_port)
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/floor.cg" \
    "$work/relay-floor" "$port" "$PG_PORT" >"$work/floor.out" 2>&1 &
pid=$!

# No TLS through the floor: it relays the login's bytes as they are and expects no SSLRequest.
export PGSSLMODE=disable PGPASSWORD=scrampass
pgbench_run() {
    pgbench -n -h 127.0.0.1 -p "$port" -U "$USER_NAME" "$@" -f "$work/q.sql" example_db \
        >"$work/pgbench.out" 2>&1 || { cat "$work/pgbench.out" >&2; die "pgbench failed"; }
    grep -q "number of failed transactions: 0" "$work/pgbench.out" || die "failed transactions"
}
for _ in $(seq 1 300); do
    PGCONNECT_TIMEOUT=5 psql -X -At -h 127.0.0.1 -p "$port" -U "$USER_NAME" -d example_db -c 'SELECT 1' \
        >/dev/null 2>&1 && break
    sleep 0.2
done
pgbench_run -c 4 -j 1 -t 100
dumps=0
echo "| user-space instructions (callgrind) | relay floor |"
echo "|---|---:|"
for mode in simple extended prepared; do
    callgrind_control -i on "$pid" >/dev/null 2>&1
    pgbench_run -c 4 -j 1 -t "$TX" -M "$mode"
    callgrind_control -d "$mode" "$pid" >/dev/null 2>&1
    callgrind_control -i off "$pid" >/dev/null 2>&1
    dumps=$((dumps + 1))
    per=$(awk -v n=$((4 * TX)) '/^totals:/ {printf "%.0f", $2 / n}' "$work/floor.cg.$dumps")
    echo "| per transaction, $mode (4 c × $TX) | $per |"
done
