#!/usr/bin/env bash
# What it costs when a pool's clients want different session parameters: two pgbench groups of
# BENCH_GROUP clients each on one pg_doorman pool, both in TimeZone UTC (homogeneous: servers
# already match, nothing is sent) or one in UTC and one in Asia/Tokyo (mixed: a checkout that gets
# a server last used by the other group sends one set_config query ahead of the transaction).
# Rounds alternate; the report is the median total tps of each kind and their ratio.
#
# Knobs (env): BENCH_DURATION=5 (seconds per run), BENCH_ROUNDS=3, BENCH_GROUP=20 (clients per
# group), BENCH_POOL_SIZE=10, BENCH_MODE=simple, PG_DOORMAN_BIN (default .build/release/pg_doorman;
# BENCH_SKIP_BUILD=1 skips the release build).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH_TAG=timezones
# shellcheck source=bench/lib.sh
source bench/lib.sh

DURATION=${BENCH_DURATION:-5}
ROUNDS=${BENCH_ROUNDS:-3}
GROUP=${BENCH_GROUP:-20}
POOL=${BENCH_POOL_SIZE:-10}
MODE=${BENCH_MODE:-simple}
ensure_apt_deps

DOORMAN_BIN=${PG_DOORMAN_BIN:-$ROOT/.build/release/pg_doorman}
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 && -z "${PG_DOORMAN_BIN:-}" ]]; then
    "$ROOT/scripts/build-release.sh" >&2 || die "release build failed"
fi
[[ -x $DOORMAN_BIN ]] || die "no pooler binary at $DOORMAN_BIN"

work=$(mktemp -d /tmp/pgdm-tz.XXXXXX)
chmod 0755 "$work"
dm_pid=""
cleanup() {
    local rc=$?
    set +e
    [[ -n $dm_pid ]] && kill -TERM "$dm_pid" 2>/dev/null
    "$ROOT/scripts/pg-throwaway.sh" stop "$work/pg" >/dev/null 2>&1
    rm -rf "$work"
    exit $rc
}
trap cleanup EXIT

start_bench_pg "$work/pg"
port=$(free_port)
write_doorman_config "$work/pg_doorman.yaml" "$port" "$PG_PORT" "$USER_NAME" "$verifier" "$POOL"
"$DOORMAN_BIN" "$work/pg_doorman.yaml" -l warn >"$work/pg_doorman.log" 2>&1 &
dm_pid=$!
for _ in $(seq 1 100); do
    PGPASSWORD=scrampass psql -X -At -h 127.0.0.1 -p "$port" -U "$USER_NAME" -d example_db -c 'SELECT 1' \
        >/dev/null 2>&1 && break
    sleep 0.1
done

group() { # timezone output-file
    PGTZ=$1 PGPASSWORD=scrampass pgbench -n -h 127.0.0.1 -p "$port" -U "$USER_NAME" -M "$MODE" -S \
        -c "$GROUP" -j 1 -T "$DURATION" example_db >"$2" 2>&1
}
tps() { awk '/^tps = / {print $3; exit}' "$1"; }
run() { # tz-a tz-b -> total tps
    group "$1" "$work/a.out" &
    local a=$!
    group "$2" "$work/b.out" &
    local b=$!
    wait "$a" || die "pgbench ($1) failed: $(tail -n 3 "$work/a.out")"
    wait "$b" || die "pgbench ($2) failed: $(tail -n 3 "$work/b.out")"
    grep -q "number of failed transactions: 0" "$work/a.out" "$work/b.out" || true
    python3 -c "print($(tps "$work/a.out") + $(tps "$work/b.out"))"
}

run UTC UTC >/dev/null  # warm-up: every server connection opened
homogeneous=() mixed=()
for r in $(seq 1 "$ROUNDS"); do
    homogeneous+=("$(run UTC UTC)")
    mixed+=("$(run UTC Asia/Tokyo)")
    say "round $r: homogeneous ${homogeneous[-1]} tps, mixed ${mixed[-1]} tps"
done
python3 - "${homogeneous[*]}" "${mixed[*]}" "$GROUP" "$POOL" "$MODE" <<'PY'
import statistics, sys
h = [float(x) for x in sys.argv[1].split()]
m = [float(x) for x in sys.argv[2].split()]
group, pool, mode = sys.argv[3], sys.argv[4], sys.argv[5]
mh, mm = statistics.median(h), statistics.median(m)
print(f"| 2 × {group} clients, pool {pool}, -M {mode} -S | median tps |")
print("|---|---:|")
print(f"| both groups TimeZone=UTC | {mh:.0f} |")
print(f"| UTC and Asia/Tokyo | {mm:.0f} |")
print(f"| mixed / homogeneous | ×{mm / mh:.2f} |")
PY
