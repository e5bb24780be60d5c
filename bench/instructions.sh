#!/usr/bin/env bash
# User-space instructions per transaction and per connection: pg_doorman vs PgBouncer (Debian's
# 1.18 and, when present, 1.25.2 built from source), counted by
# valgrind's callgrind. Unlike CPU time on a shared VM (±15% between runs), the count is the same
# on every run, so it shows changes of a few percent in the pooler's own work. It leaves out the
# kernel (~85% of either pooler's CPU time here) and cache effects: a complement to bench/run.sh,
# not a replacement.
#
# Knobs (env): PG_DOORMAN_BIN (default .build/release/pg_doorman; BENCH_SKIP_BUILD=1 skips the
# release build), INSTR_TX (2000 transactions per client, 4 clients), INSTR_CONNECTIONS (300
# connections of one client with `pgbench -C`), INSTR_WAIT_TX (300 transactions per client, 120
# clients on a pool of 40), BENCH_PGBOUNCER125 (PgBouncer 1.25.2, default
# /work/shared/anchors/pgbouncer-1.25.2; its column is n/a when absent), BENCH_KEEP=1 (keep the
# work directory), INSTR_SOURCE_LINES=1 (keep pg_doorman's debug info, so that
# `callgrind_annotate --auto=yes <work>/doorman.cg.N` shows costs per source line),
# INSTR_DOORMAN_ONLY=1 (count pg_doorman alone: for comparing two pg_doorman builds; the
# PgBouncer columns read n/a).
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
PGBOUNCER125=${BENCH_PGBOUNCER125:-/work/shared/anchors/pgbouncer-1.25.2}
pgb125_reason=""
if [[ ! -x $PGBOUNCER125 ]]; then
    pgb125_reason="no PgBouncer 1.25.2 binary at $PGBOUNCER125 (set BENCH_PGBOUNCER125)"
elif ! "$PGBOUNCER125" --version >/dev/null 2>&1; then
    pgb125_reason="$PGBOUNCER125 --version failed: $("$PGBOUNCER125" --version 2>&1 | head -n 2 | tr '\n' ' ')"
fi
pgb_version() { "$1" --version 2>/dev/null | awk 'NR==1 {print $2}'; }
# -M prepared in transaction mode needs PgBouncer >= 1.21 (max_prepared_statements)
has_prepared() { printf '1.21\n%s\n' "$(pgb_version "$1")" | sort -V -C; }

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
[[ ${INSTR_SOURCE_LINES:-0} == 1 ]] || strip --strip-debug "$work/pg_doorman"

as_pg=()
[[ $(id -u) -eq 0 ]] && as_pg=(runuser -u postgres --)
callgrind() { # name -> command prefix; counting starts off and is switched on per measurement
    echo valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/$1.cg"
}

declare -A port bin
names=(pgbouncer)
bin[pgbouncer]=$PGBOUNCER
if [[ -z $pgb125_reason ]]; then names+=(pgbouncer125); bin[pgbouncer125]=$PGBOUNCER125; fi
if [[ ${INSTR_DOORMAN_ONLY:-0} == 1 ]]; then names=(); pgb125_reason="INSTR_DOORMAN_ONLY=1"; fi
for name in "${names[@]}"; do
    port[$name]=$(free_port)
    mkdir -p "$work/$name"
    write_pgbouncer_config "$work/$name" "${port[$name]}" "$PG_PORT" "$USER_NAME" "$verifier" 40
    if has_prepared "${bin[$name]}"; then echo "max_prepared_statements = 200" >>"$work/$name/pgbouncer.ini"; fi
done
[[ $(id -u) -eq 0 ]] && chown -R postgres: "$work"
for name in "${names[@]}"; do
    # shellcheck disable=SC2046
    "${as_pg[@]}" $(callgrind "$name") "${bin[$name]}" "$work/$name/pgbouncer.ini" >"$work/$name.out" 2>&1 &
    pids+=($!)
done

port[doorman]=$(free_port)
write_doorman_config "$work/pg_doorman.yaml" "${port[doorman]}" "$PG_PORT" "$USER_NAME" "$verifier" 40
# shellcheck disable=SC2046
$(callgrind doorman) "$work/pg_doorman" "$work/pg_doorman.yaml" >"$work/pg_doorman.out" 2>&1 &
pids+=($!)
names+=(doorman)

pgbench_run() { # port args...
    local port=$1; shift
    PGPASSWORD=scrampass pgbench -n -h 127.0.0.1 -p "$port" -U "$USER_NAME" "$@" -f "$work/q.sql" example_db \
        >"$work/pgbench.out" 2>&1 || { cat "$work/pgbench.out" >&2; die "pgbench failed on port $port"; }
    grep -q "number of failed transactions: 0" "$work/pgbench.out" || die "failed transactions on port $port"
}
ready() { # port -> 0 once `SELECT 1` works through it (60 s at most: valgrind starts slowly)
    local _
    for _ in $(seq 1 300); do
        PGPASSWORD=scrampass PGCONNECT_TIMEOUT=5 psql -X -At -h 127.0.0.1 -p "$1" -U "$USER_NAME" \
            -d example_db -c 'SELECT 1' >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    return 1
}
for name in "${names[@]}"; do
    if ! ready "${port[$name]}"; then
        # PgBouncer 1.25.2 is optional: report it n/a; the others must work
        [[ $name == pgbouncer125 ]] || die "$name does not answer SELECT 1 (see $work/$name.out)"
        pgb125_reason="PgBouncer 1.25.2 under callgrind did not answer SELECT 1: $(tail -n 2 "$work/$name.out" 2>/dev/null | tr '\n' ' ' || true)"
        say "pgbouncer125: n/a — $pgb125_reason"
        continue
    fi
    pgbench_run "${port[$name]}" -c 4 -j 1 -t 100  # warm: every server connection opened, caches filled
done
if [[ ${INSTR_DOORMAN_ONLY:-0} == 1 ]]; then names=(doorman)
elif [[ -n $pgb125_reason ]]; then names=(pgbouncer doorman); fi

# The process valgrind runs (PgBouncer's pid is that of runuser's child when started as root).
vg_pid() { pgrep -f "callgrind-out-file=$work/$1.cg" | while read -r p; do
    [[ $(ps -o comm= -p "$p") == runuser ]] || echo "$p"; done | head -n 1; }
control() { # name pid args...
    local name=$1 pid=$2; shift 2
    if [[ $name == pgbouncer* ]]; then "${as_pg[@]}" callgrind_control "$@" "$pid" >/dev/null 2>&1
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

for name in "${names[@]}"; do
    p=${port[$name]}
    measure "$name" "$p" simple $((4 * TX)) -c 4 -j 1 -t "$TX" -M simple
    measure "$name" "$p" extended $((4 * TX)) -c 4 -j 1 -t "$TX" -M extended
    # named statements: each client parses once, then Bind/Execute (PgBouncer >= 1.21 and pg_doorman)
    if [[ $name == doorman ]] || has_prepared "${bin[$name]}"; then
        measure "$name" "$p" prepared $((4 * TX)) -c 4 -j 1 -t "$TX" -M prepared
    fi
    measure "$name" "$p" connect "$CONNECTIONS" -C -c 1 -j 1 -t "$CONNECTIONS" -M simple
    # 120 clients on 40 server connections: most transactions wait for a server (checkout queue).
    measure "$name" "$p" waiting $((120 * WAIT_TX)) -c 120 -j 2 -t "$WAIT_TX" -M simple
done

# One table: PgBouncer 1.18 (Debian), PgBouncer 1.25.2 (n/a when absent), pg_doorman, and
# pg_doorman's count over each PgBouncer's.
cell() { echo "${result[$1,$2]:-n/a}"; }
ratio() { # a b -> ×a/b, or n/a
    [[ -n ${result[$1,$3]:-} && -n ${result[$2,$3]:-} ]] || { echo n/a; return; }
    python3 -c "print(f'×{${result[$1,$3]} / ${result[$2,$3]}:.2f}')"
}
v118="PgBouncer $(pgb_version "$PGBOUNCER")"
v125="PgBouncer 1.25.2"
[[ -z $pgb125_reason ]] && v125="PgBouncer $(pgb_version "$PGBOUNCER125")"
row() { # label key
    echo "| $1 | $(cell pgbouncer "$2") | $(cell pgbouncer125 "$2") | $(cell doorman "$2") | $(ratio doorman pgbouncer "$2") | $(ratio doorman pgbouncer125 "$2") |"
}
echo "| user-space instructions (callgrind) | $v118 | $v125 | pg_doorman | pg_doorman/$v118 | pg_doorman/$v125 |"
echo "|---|---:|---:|---:|---:|---:|"
row "per transaction, simple (4 c × $TX)" simple
row "per transaction, extended (4 c × $TX)" extended
row "per transaction, prepared (4 c × $TX)" prepared
row "per transaction, simple, 120 c on 40 server connections (120 c × $WAIT_TX, their logins included)" waiting
row "per connection with its one transaction, SCRAM (-C, $CONNECTIONS)" connect
has_prepared "$PGBOUNCER" || echo "
$v118: prepared n/a, no prepared statements in transaction mode before 1.21."
[[ -z $pgb125_reason ]] || echo "
$v125: n/a — $pgb125_reason"
