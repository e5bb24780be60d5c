#!/usr/bin/env bash
# User-space instructions per transaction and per connection: pg_doorman vs PgBouncer, counted by
# valgrind's callgrind. Unlike CPU time on a shared VM (±15% between runs), the count is the same
# on every run, so it shows changes of a few percent in the pooler's own work. It leaves out the
# kernel (~85% of either pooler's CPU time here) and cache effects: a complement to bench/run.sh,
# not a replacement.
#
# Knobs (env): PG_DOORMAN_BIN (default .build/release/pg_doorman; BENCH_SKIP_BUILD=1 skips the
# release build), INSTR_TX (2000 transactions per client, 4 clients), INSTR_CONNECTIONS (300
# connections of one client with `pgbench -C`), INSTR_WAIT_TX (300 transactions per client, 120
# clients on a pool of 40), BENCH_KEEP=1 (keep the work directory).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH_TAG=instructions
# shellcheck source=bench/lib.sh
source bench/lib.sh

TX=${INSTR_TX:-2000}
CONNECTIONS=${INSTR_CONNECTIONS:-300}
WAIT_TX=${INSTR_WAIT_TX:-300}
ensure_apt_deps
if ! command -v valgrind >/dev/null; then
    [[ "${DEPS_SKIP:-0}" == 1 ]] && die "valgrind not installed"
    _deps_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends valgrind \
        </dev/null >/dev/null || die "cannot install valgrind"
fi

DOORMAN_BIN=${PG_DOORMAN_BIN:-$ROOT/.build/release/pg_doorman}
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 && -z "${PG_DOORMAN_BIN:-}" ]]; then
    "$ROOT/scripts/build-release.sh" >&2 || die "release build failed"
fi
[[ -x $DOORMAN_BIN ]] || die "no pooler binary at $DOORMAN_BIN"
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)

work=$(mktemp -d /tmp/pgdm-instr.XXXXXX)
chmod 0755 "$work"
pids=()
cleanup() {
    local rc=$? p
    set +e
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    sleep 1
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
    "$ROOT/scripts/pg-throwaway.sh" stop "$work/pg" >/dev/null 2>&1
    if [[ "${BENCH_KEEP:-0}" == 1 ]]; then say "kept $work"; else rm -rf "$work"; fi
    exit $rc
}
trap cleanup EXIT

start_bench_pg "$work/pg"
printf '\\set aid random(1, 100000)\nSELECT :aid;\n' >"$work/q.sql"

# valgrind 3.19 cannot read the DWARF 5 debug information Swift 6 emits: count on a copy
# without it (symbols stay, so the profile keeps function names).
cp "$DOORMAN_BIN" "$work/pg_doorman"
strip --strip-debug "$work/pg_doorman"

as_pg=()
[[ $(id -u) -eq 0 ]] && as_pg=(runuser -u postgres --)
callgrind() { # name -> command prefix; counting starts off and is switched on per measurement
    echo valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/$1.cg"
}

pgb_port=$(free_port)
write_pgbouncer_config "$work" "$pgb_port" "$PG_PORT" "$USER_NAME" "$verifier" 40
[[ $(id -u) -eq 0 ]] && chown -R postgres: "$work"
# shellcheck disable=SC2046
"${as_pg[@]}" $(callgrind pgbouncer) "$PGBOUNCER" "$work/pgbouncer.ini" >"$work/pgbouncer.out" 2>&1 &
pids+=($!)

dm_port=$(free_port)
write_doorman_config "$work/pg_doorman.yaml" "$dm_port" "$PG_PORT" "$USER_NAME" "$verifier" 40
# shellcheck disable=SC2046
$(callgrind doorman) "$work/pg_doorman" "$work/pg_doorman.yaml" >"$work/pg_doorman.out" 2>&1 &
pids+=($!)

pgbench_run() { # port args...
    local port=$1; shift
    PGPASSWORD=scrampass pgbench -n -h 127.0.0.1 -p "$port" -U "$USER_NAME" "$@" -f "$work/q.sql" example_db \
        >"$work/pgbench.out" 2>&1 || { cat "$work/pgbench.out" >&2; die "pgbench failed on port $port"; }
    grep -q "number of failed transactions: 0" "$work/pgbench.out" || die "failed transactions on port $port"
}
for port in "$pgb_port" "$dm_port"; do
    for _ in $(seq 1 300); do
        PGPASSWORD=scrampass PGCONNECT_TIMEOUT=5 psql -X -At -h 127.0.0.1 -p "$port" -U "$USER_NAME" \
            -d example_db -c 'SELECT 1' >/dev/null 2>&1 && break
        sleep 0.2
    done
    pgbench_run "$port" -c 4 -j 1 -t 100  # warm: every server connection opened, caches filled
done

# The process valgrind runs (PgBouncer's pid is that of runuser's child when started as root).
vg_pid() { pgrep -f "callgrind-out-file=$work/$1.cg" | while read -r p; do
    [[ $(ps -o comm= -p "$p") == runuser ]] || echo "$p"; done | head -n 1; }
control() { # name pid args...
    local name=$1 pid=$2; shift 2
    if [[ $name == pgbouncer ]]; then "${as_pg[@]}" callgrind_control "$@" "$pid" >/dev/null 2>&1
    else callgrind_control "$@" "$pid" >/dev/null 2>&1; fi
}
declare -A result dumps
measure() { # name port label count pgbench-args... -> result[name,label] = instructions per unit
    local name=$1 port=$2 label=$3 count=$4; shift 4
    local pid; pid=$(vg_pid "$name")
    [[ -n $pid ]] || die "no callgrind process for $name"
    control "$name" "$pid" -i on
    pgbench_run "$port" "$@"
    control "$name" "$pid" -d "$label"
    control "$name" "$pid" -i off
    dumps[$name]=$(( ${dumps[$name]:-0} + 1 ))  # callgrind numbers its dumps .1, .2, ...
    local file=$work/$name.cg.${dumps[$name]}
    [[ -s $file ]] || die "no callgrind dump $file"
    # The "totals:" line: after instrumentation was switched off and on, callgrind's "summary:"
    # line (what callgrind_annotate prints) can wrap around.
    result[$name,$label]=$(awk -v n="$count" '/^totals:/ {printf "%.0f", $2 / n}' "$file")
    [[ -n ${result[$name,$label]} ]] || die "no totals in $file"
}

for name in pgbouncer doorman; do
    port=$pgb_port; [[ $name == doorman ]] && port=$dm_port
    measure $name "$port" simple $((4 * TX)) -c 4 -j 1 -t "$TX" -M simple
    measure $name "$port" extended $((4 * TX)) -c 4 -j 1 -t "$TX" -M extended
    measure $name "$port" connect "$CONNECTIONS" -C -c 1 -j 1 -t "$CONNECTIONS" -M simple
    # 120 clients on 40 server connections: most transactions wait for a server (checkout queue).
    measure $name "$port" waiting $((120 * WAIT_TX)) -c 120 -j 2 -t "$WAIT_TX" -M simple
done

ratio() { python3 -c "print(f'×{$1 / $2:.2f}')"; }
echo "| user-space instructions (callgrind) | PgBouncer $("$PGBOUNCER" --version | awk 'NR==1 {print $2}') | pg_doorman | pg_doorman/PgBouncer |"
echo "|---|---:|---:|---:|"
echo "| per transaction, simple (4 c × $TX) | ${result[pgbouncer,simple]} | ${result[doorman,simple]} | $(ratio "${result[doorman,simple]}" "${result[pgbouncer,simple]}") |"
echo "| per transaction, extended (4 c × $TX) | ${result[pgbouncer,extended]} | ${result[doorman,extended]} | $(ratio "${result[doorman,extended]}" "${result[pgbouncer,extended]}") |"
echo "| per transaction, simple, 120 c on 40 server connections (120 c × $WAIT_TX, their logins included) | ${result[pgbouncer,waiting]} | ${result[doorman,waiting]} | $(ratio "${result[doorman,waiting]}" "${result[pgbouncer,waiting]}") |"
echo "| per connection with its one transaction, SCRAM (-C, $CONNECTIONS) | ${result[pgbouncer,connect]} | ${result[doorman,connect]} | $(ratio "${result[doorman,connect]}" "${result[pgbouncer,connect]}") |"
