#!/usr/bin/env bash
# pgbench: direct PostgreSQL vs PgBouncer (Debian's 1.18 and, when present, 1.25.2) vs pg_doorman,
# in one run on this machine.
# See bench/README.md. Knobs (env):
#   BENCH_DURATION=10            seconds per pgbench run
#   BENCH_ROUNDS=1               runs per scenario and target (alternating); the report takes the median
#   BENCH_CLIENTS="1 40 120 500 2000"
#   BENCH_MODES="simple extended prepared"
#   BENCH_RECONNECT_CLIENTS="1 40"  BENCH_RECONNECT_MODES=simple  BENCH_RECONNECT=0 to skip -C runs
#   BENCH_ONLY=direct,pgbouncer,pgbouncer125,doorman   targets to run (others are reported as n/a)
#   BENCH_PGBOUNCER125=/work/shared/anchors/pgbouncer-1.25.2   PgBouncer 1.25.2 binary (target
#                                pgbouncer125; n/a with the reason when absent or not starting)
#   BENCH_SKIP_BUILD=1           do not run scripts/build-release.sh (`swift build -c release`)
#   BENCH_TLS=1                  TLS variant: sslmode=require to PostgreSQL, PgBouncer and pg_doorman
#   BENCH_WARMUP=2               seconds of unrecorded warm-up per target
#   BENCH_DOORMAN_WORKERS=N      general.worker_threads for pg_doorman (default: its own default)
#   BENCH_DOORMAN_ARGS="..."     extra pg_doorman arguments (e.g. "-l warn")
#   BENCH_POOL_SIZE=40           server pool size of both poolers
#   PG_DOORMAN_BIN               pooler binary (default .build/release/pg_doorman)
#   BENCH_KEEP=1                 keep the work directory (configs, logs) for inspection
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH_TAG=bench
# shellcheck source=bench/lib.sh
source bench/lib.sh

DURATION=${BENCH_DURATION:-10}
CLIENTS=${BENCH_CLIENTS:-1 40 120 500 2000}
ONLY=${BENCH_ONLY:-direct,pgbouncer,pgbouncer125,doorman}
PGBOUNCER125=${BENCH_PGBOUNCER125:-/work/shared/anchors/pgbouncer-1.25.2}
POOL_SIZE=${BENCH_POOL_SIZE:-40}
export BENCH_DURATION=$DURATION BENCH_CLIENTS="$CLIENTS"
want() { [[ ",$ONLY," == *",$1,"* ]]; }

[[ $DURATION =~ ^[0-9]+$ && $DURATION -ge 2 ]] || die "BENCH_DURATION must be an integer >= 2"

ensure_apt_deps
command -v pgbench >/dev/null || die "pgbench not found"

# Thousands of clients: every process started below inherits this.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[[ $(ulimit -n) -ge 4500 ]] || say "warning: ulimit -n is $(ulimit -n); 2000 clients need more"

# ---------------------------------------------------------------- pg_doorman build
DOORMAN_BIN=${PG_DOORMAN_BIN:-$ROOT/.build/release/pg_doorman}
doorman_reason=""
if want doorman; then
    if [[ "${BENCH_SKIP_BUILD:-0}" != 1 && -z "${PG_DOORMAN_BIN:-}" ]]; then
        say "scripts/build-release.sh (swift build -c release)"
        if ! "$ROOT/scripts/build-release.sh" >&2; then
            doorman_reason="release build failed"
        fi
    fi
    [[ -n $doorman_reason || -x "$DOORMAN_BIN" ]] || doorman_reason="binary $DOORMAN_BIN not found"
else
    doorman_reason="not selected (BENCH_ONLY=$ONLY)"
fi

# ---------------------------------------------------------------- work dir, PostgreSQL
work=$(mktemp -d /tmp/pgdm-bench.XXXXXX)
chmod 0755 "$work"
pgb_pid="" pgb125_pid="" dm_pid=""
cleanup() {
    local rc=$?
    set +e
    local p _ alive
    for p in "$dm_pid" "$pgb_pid" "$pgb125_pid"; do [[ -n $p ]] && kill -TERM "$p" 2>/dev/null; done
    for _ in $(seq 1 50); do
        alive=0
        for p in "$dm_pid" "$pgb_pid" "$pgb125_pid"; do [[ -n $p ]] && kill -0 "$p" 2>/dev/null && alive=1; done
        (( alive )) || break
        sleep 0.1
    done
    for p in "$dm_pid" "$pgb_pid" "$pgb125_pid"; do [[ -n $p ]] && kill -KILL "$p" 2>/dev/null; done
    "$ROOT/scripts/pg-throwaway.sh" stop "$work/pg" >/dev/null 2>&1
    if [[ "${BENCH_KEEP:-0}" == 1 ]]; then say "kept $work"; else rm -rf "$work"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

max_clients=0
for c in $CLIENTS; do (( c > max_clients )) && max_clients=$c; done
# room for every direct client plus the three poolers' server connections and a margin
pg_max=$(( max_clients + 3 * POOL_SIZE + 60 ))
(( pg_max < 300 )) && pg_max=300
say "starting PostgreSQL (max_connections=$pg_max)"
"$ROOT/scripts/pg-throwaway.sh" start "$work/pg" --pgbench --max-connections "$pg_max" >/dev/null
# shellcheck disable=SC1091
source "$work/pg/env"
PG_PORT=$PGPORT
unset PGHOST PGPORT
BENCH_USER=example_user_scram
BENCH_PASSWORD=scrampass
verifier=$(psql -X -At -h "$PG_SOCKET_DIR" -p "$PG_PORT" -U postgres -d postgres \
    -c "SELECT passwd FROM pg_shadow WHERE usename = '$BENCH_USER'")
[[ $verifier == SCRAM-SHA-256\$* ]] || die "no SCRAM verifier for $BENCH_USER: $verifier"

# BENCH_TLS=1: every target is reached with sslmode=require (a self-signed certificate on
# PostgreSQL, PgBouncer's client side and pg_doorman's client side; pooler→PostgreSQL stays plain).
TLS=${BENCH_TLS:-0}
SSLMODE=""
if [[ $TLS == 1 ]]; then
    mkdir -p "$work/tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
        -keyout "$work/tls/server.key" -out "$work/tls/server.crt" >/dev/null 2>&1 || die "openssl failed"
    chmod 600 "$work/tls/server.key"
    cp "$work/tls/server.crt" "$work/tls/server.key" "$PG_DATA_DIR/"
    [[ $(id -u) -eq 0 ]] && chown postgres: "$PG_DATA_DIR/server.crt" "$PG_DATA_DIR/server.key" "$work/tls" \
        "$work/tls/server.crt" "$work/tls/server.key"
    psql -X -q -h "$PG_SOCKET_DIR" -p "$PG_PORT" -U postgres -d postgres \
        -c "ALTER SYSTEM SET ssl = on" -c "SELECT pg_reload_conf()" >/dev/null || die "cannot enable ssl"
    sleep 1
    SSLMODE=require
    say "TLS variant: sslmode=require towards PostgreSQL, PgBouncer and pg_doorman"
fi

wait_port() { # port pid seconds
    local _
    for _ in $(seq 1 $(( $3 * 10 ))); do
        kill -0 "$2" 2>/dev/null || return 1
        (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
probe() { # port -> 0 when `SELECT 1` works through it
    PGSSLMODE=${SSLMODE:-prefer} PGPASSWORD=$BENCH_PASSWORD PGCONNECT_TIMEOUT=5 timeout 15 \
        psql -X -At -h 127.0.0.1 -p "$1" -U "$BENCH_USER" -d example_db -c 'SELECT 1' 2>&1
}

# ---------------------------------------------------------------- PgBouncer (1.18 and 1.25.2)
# start_pgbouncer VAR BIN NAME -> starts BIN (target NAME) as a transaction-mode PgBouncer in $work/VAR and sets
# VAR_port, VAR_pid, VAR_reason (empty when `SELECT 1` works through it), VAR_no_prepared
# (why -M prepared is n/a) and VAR_version.
start_pgbouncer() {
    local var=$1 bin=$2 dir=$work/$1 port pid reason="" no_prepared="" ver out as_user=()
    port=$(free_port)
    mkdir -p "$dir"
    write_pgbouncer_config "$dir" "$port" "$PG_PORT" "$BENCH_USER" "$verifier" "$POOL_SIZE"
    if [[ $TLS == 1 ]]; then
        printf 'client_tls_sslmode = require\nclient_tls_key_file = %s\nclient_tls_cert_file = %s\n' \
            "$work/tls/server.key" "$work/tls/server.crt" >>"$dir/pgbouncer.ini"
    fi
    # Protocol-level prepared statements in transaction mode need PgBouncer >= 1.21.
    ver=$("$bin" --version 2>/dev/null | awk 'NR==1 {print $2}') || true
    if [[ -n $ver ]] && printf '1.21\n%s\n' "$ver" | sort -V -C; then
        echo "max_prepared_statements = 200" >>"$dir/pgbouncer.ini"
    else
        no_prepared="PgBouncer ${ver:-?} has no prepared-statement support in transaction mode (needs >= 1.21)"
    fi
    [[ $(id -u) -eq 0 ]] && chown -R postgres: "$dir"
    [[ $(id -u) -eq 0 ]] && as_user=(-u postgres)
    "$bin" "${as_user[@]}" "$dir/pgbouncer.ini" >>"$dir/stderr.log" 2>&1 &
    pid=$!
    if ! wait_port "$port" "$pid" 10; then
        reason="$bin did not start: $(tail -n 3 "$dir/stderr.log" "$dir/pgbouncer.log" 2>/dev/null | tr '\n' ' ' || true)"
    elif ! out=$(probe "$port"); then
        reason="SELECT 1 through $bin failed: $out"
    fi
    [[ -z $reason ]] && say "$3: PgBouncer $ver pid $pid port $port"
    printf -v "${var}_port" %s "$port"
    printf -v "${var}_pid" %s "$pid"
    printf -v "${var}_reason" %s "$reason"
    printf -v "${var}_no_prepared" %s "$no_prepared"
    printf -v "${var}_version" %s "${ver:+PgBouncer $ver}"
}

pgb_port="" pgb_reason="" pgb_no_prepared="" pgb_version=""
if want pgbouncer; then
    start_pgbouncer pgb "$(command -v pgbouncer || echo /usr/sbin/pgbouncer)" pgbouncer
else
    pgb_reason="not selected (BENCH_ONLY=$ONLY)"
fi
# PgBouncer 1.25.2 built from source (/work/shared/anchors): optional, n/a when absent.
pgb125_port="" pgb125_reason="" pgb125_no_prepared="" pgb125_version=""
if ! want pgbouncer125; then
    pgb125_reason="not selected (BENCH_ONLY=$ONLY)"
elif [[ ! -x $PGBOUNCER125 ]]; then
    pgb125_reason="no PgBouncer 1.25.2 binary at $PGBOUNCER125 (set BENCH_PGBOUNCER125)"
elif ! "$PGBOUNCER125" --version >/dev/null 2>&1; then
    pgb125_reason="$PGBOUNCER125 --version failed: $("$PGBOUNCER125" --version 2>&1 | head -n 2 | tr '\n' ' ')"
else
    start_pgbouncer pgb125 "$PGBOUNCER125" pgbouncer125
fi

# ---------------------------------------------------------------- pg_doorman
dm_port=""
if [[ -z $doorman_reason ]]; then
    dm_port=$(free_port)
    mkdir -p "$work/doorman"
    extra=()
    [[ -n ${BENCH_DOORMAN_WORKERS:-} ]] && extra+=("worker_threads: $BENCH_DOORMAN_WORKERS")
    if [[ $TLS == 1 ]]; then
        extra+=("tls_certificate: \"$work/tls/server.crt\"" "tls_private_key: \"$work/tls/server.key\""
            "tls_mode: \"require\"")
    fi
    write_doorman_config "$work/doorman/pg_doorman.yaml" "$dm_port" "$PG_PORT" "$BENCH_USER" "$verifier" \
        "$POOL_SIZE" ${extra[@]+"${extra[@]}"}
    # shellcheck disable=SC2086
    "$DOORMAN_BIN" "$work/doorman/pg_doorman.yaml" ${BENCH_DOORMAN_ARGS:-} >"$work/doorman/pg_doorman.log" 2>&1 &
    dm_pid=$!
    if ! wait_port "$dm_port" "$dm_pid" 10; then
        if kill -0 "$dm_pid" 2>/dev/null; then
            doorman_reason="pg_doorman did not listen on $dm_port within 10 s"
        else
            dm_rc=0; wait "$dm_pid" || dm_rc=$?
            doorman_reason="pg_doorman exited with code $dm_rc before listening"
            dm_pid=""
        fi
        doorman_reason+=": $(tail -n 3 "$work/doorman/pg_doorman.log" | tr '\n' ' ')"
    elif ! out=$(probe "$dm_port"); then
        doorman_reason="SELECT 1 through pg_doorman failed: $(echo "$out" | tail -n 1)"
    fi
    if [[ -n $doorman_reason ]]; then
        kill -TERM "$dm_pid" 2>/dev/null || true
    else
        say "pg_doorman pid $dm_pid port $dm_port"
    fi
fi

direct_reason=""
want direct || direct_reason="not selected (BENCH_ONLY=$ONLY)"
[[ -n $pgb_reason ]] && say "pgbouncer: n/a — $pgb_reason"
[[ -n $pgb125_reason ]] && say "pgbouncer125: n/a — $pgb125_reason"
[[ -n $doorman_reason ]] && say "pg_doorman: n/a — $doorman_reason"

# ---------------------------------------------------------------- scenarios
python3 - "$work/targets.json" <<EOF
import json, sys
def t(name, port, pid, reason):
    return {"name": name, "host": "127.0.0.1", "port": int(port) if port else 0,
            "pid": int(pid) if pid and not reason else None, "available": not reason, "reason": reason,
            "sslmode": "$SSLMODE" or None}
json.dump({
    "user": "$BENCH_USER", "password": "$BENCH_PASSWORD", "database": "example_db",
    "direct_max_clients": $(( pg_max - 3 * POOL_SIZE - 10 )),
    "targets": [t("direct", "$PG_PORT", "", """$direct_reason"""),
                dict(t("pgbouncer", "$pgb_port", "$pgb_pid", """$pgb_reason"""),
                     no_prepared="""$pgb_no_prepared"""),
                dict(t("pgbouncer125", "$pgb125_port", "$pgb125_pid", """$pgb125_reason"""),
                     no_prepared="""$pgb125_no_prepared"""),
                t("doorman", "$dm_port", "$dm_pid", """$doorman_reason""")],
}, open(sys.argv[1], "w"), indent=1)
EOF

rss_start() { [[ -n $1 ]] && awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo None; }
pgb_rss0=$( [[ -z $pgb_reason ]] && rss_start "$pgb_pid" || echo None )
pgb125_rss0=$( [[ -z $pgb125_reason ]] && rss_start "$pgb125_pid" || echo None )
dm_rss0=$( [[ -z $doorman_reason ]] && rss_start "$dm_pid" || echo None )

stamp=$(date +%Y-%m-%d-%H%M%S)
load0=$(cut -d' ' -f1 /proc/loadavg)
mkdir -p "$ROOT/bench/out"
raw="$ROOT/bench/out/results-$stamp.jsonl"
: >"$raw"
say "duration ${DURATION}s, clients: $CLIENTS, modes: ${BENCH_MODES:-simple extended prepared}"
python3 "$ROOT/bench/scenarios.py" "$work/targets.json" "$work" "$raw"

# ---------------------------------------------------------------- report
pg_version=$("$PG_BIN/postgres" --version)
[[ -n $pgb_version ]] || pgb_version=$( (pgbouncer --version 2>/dev/null || true) | head -n1)
[[ -n $pgb125_reason || -z $pgb125_version ]] && pgb125_version="n/a ($pgb125_reason)"
dm_version="n/a"
if [[ -x $DOORMAN_BIN ]]; then
    dm_version="$("$DOORMAN_BIN" -V 2>/dev/null | head -n1 || true) (git $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
fi
python3 - "$work/meta.json" <<EOF
import json, os, platform, sys
load0 = "$load0"
pgb125 = """$pgb125_version"""
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
json.dump({
    "date": "$stamp",
    "machine": f"{os.cpu_count()} CPUs, {cpu}, {round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB",
    "kernel": platform.release(),
    "postgres": "$pg_version, fsync off, max_connections $pg_max",
    "pgbouncer": "$pgb_version, transaction mode, default_pool_size $POOL_SIZE",
    "pgbouncer125": pgb125 if pgb125.startswith("n/a") else
                    f"{pgb125} ($PGBOUNCER125), transaction mode, default_pool_size $POOL_SIZE, max_prepared_statements 200",
    "pgbouncer_version": "$pgb_version",
    "pgbouncer125_version": """$pgb125_version""",
    "doorman": "$dm_version, transaction mode, pool_size $POOL_SIZE",
    "duration": "${DURATION} s per run, ${BENCH_ROUNDS:-1} run(s) per scenario and target (+ ${BENCH_WARMUP:-2} s warm-up per target)",
    "pgbench": "-n -T $DURATION -j min(2,c) -c c -M mode -P 1 --log; script: \\\\set aid random(1, 100000); SELECT :aid; user $BENCH_USER (SCRAM)",
    "notes": ("TLS (sslmode=require, self-signed) to every target; " if "$TLS" == "1" else "")
             + "loopback, all processes on the same box; targets alternate per scenario; "
             f"load average at start {load0}, at end {os.getloadavg()[0]:.2f}",
    "rss_start_kib": {"pgbouncer": $pgb_rss0, "pgbouncer125": $pgb125_rss0, "doorman": $dm_rss0},
}, open(sys.argv[1], "w"), indent=1)
EOF
report="$ROOT/bench/out/results-$stamp.md"
python3 "$ROOT/bench/report.py" "$raw" "$work/meta.json" >"$report"
cat "$report"
say "report: $report (raw: $raw)"
