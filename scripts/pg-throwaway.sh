#!/usr/bin/env bash
# Throwaway PostgreSQL 15 for integration tests and benchmarks.
#
#   scripts/pg-throwaway.sh start DIR [--pgbench] [--max-connections N]
#   scripts/pg-throwaway.sh stop  DIR
#   scripts/pg-throwaway.sh env   DIR          # print DIR/env of a running instance
#
# start: initdb into DIR/data, listen on 127.0.0.1:<free port>, Unix socket in DIR/sock, fsync off.
#        Creates database example_db, users example_user_md5/md5pass (MD5-stored) and
#        example_user_scram/scrampass (SCRAM-stored); superuser postgres/postgres.
#        With --pgbench, runs `pgbench -i -s 1 example_db`.
#        Writes DIR/env (`export PGPORT=... PGHOST=127.0.0.1 PG_DATA_DIR=... PG_SOCKET_DIR=...`)
#        and prints it. Starting an already running DIR only prints its env.
# stop:  pg_ctl stop -m immediate, then removes DIR. Stopping a missing DIR is a no-op.
#
# Env: PG_BIN (default /usr/lib/postgresql/15/bin), PG_MAX_CONNECTIONS (default 300).
# As root, every PostgreSQL binary runs as the `postgres` user (DIR is chowned to it).
set -euo pipefail

die() { echo "pg-throwaway: ERROR: $*" >&2; exit 1; }
log() { echo "pg-throwaway: $*" >&2; }

find_pg_bin() {
    if [[ -n "${PG_BIN:-}" ]]; then
        [[ -x "$PG_BIN/initdb" ]] || die "PG_BIN=$PG_BIN has no initdb"
        echo "$PG_BIN"; return
    fi
    if [[ -x /usr/lib/postgresql/15/bin/initdb ]]; then echo /usr/lib/postgresql/15/bin; return; fi
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x "$d/initdb" ]]; then echo "$d"; return; fi
    done
    if command -v pg_config >/dev/null 2>&1 && [[ -x "$(pg_config --bindir)/initdb" ]]; then
        pg_config --bindir; return
    fi
    die "no PostgreSQL server binaries found (install postgresql-15 or set PG_BIN)"
}

# Run a command as the postgres OS user when we are root, else as ourselves.
as_pg() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

usage() {
    sed -n '2,16p' "$0" >&2
    exit 2
}

[[ $# -ge 2 ]] || usage
cmd=$1; dir=$2; shift 2
pgbench_init=0
max_conn=${PG_MAX_CONNECTIONS:-300}
while [[ $# -gt 0 ]]; do
    case $1 in
        --pgbench) pgbench_init=1 ;;
        --max-connections) [[ $# -ge 2 ]] || usage; max_conn=$2; shift ;;
        *) usage ;;
    esac
    shift
done
[[ -n "$dir" && "$dir" != "/" ]] || die "refusing DIR '$dir'"
case $dir in /*) ;; *) dir="$PWD/$dir" ;; esac

PGB=$(find_pg_bin)
data="$dir/data"
sock="$dir/sock"
envfile="$dir/env"

is_running() {
    [[ -f "$data/PG_VERSION" ]] && as_pg "$PGB/pg_ctl" status -D "$data" >/dev/null 2>&1
}

# True when DIR holds nothing but what this script creates.
foreign_entries() {
    [[ -z "$(ls -A "$dir" 2>/dev/null | grep -v -x -e data -e sock -e env -e postgres.log -e port \
        -e initdb.log -e pgbench-init.log -e .pw)" ]]
}

write_env() {
    local port=$1
    cat >"$envfile" <<EOF
export PGPORT=$port PGHOST=127.0.0.1 PG_DATA_DIR=$data PG_SOCKET_DIR=$sock PG_BIN=$PGB
EOF
    cat "$envfile"
}

# psql as the postgres superuser over the Unix socket.
su_psql() {
    local port=$1; shift
    as_pg psql -X -q -v ON_ERROR_STOP=1 -h "$sock" -p "$port" -U postgres "$@"
}

do_start() {
    if is_running; then
        [[ -f "$envfile" ]] || die "$dir is running but has no env file"
        log "already running"
        cat "$envfile"
        return 0
    fi
    if [[ -e "$dir" && ! -f "$data/PG_VERSION" ]]; then
        # Accept only an empty directory (e.g. from mktemp -d) or a half-made one of ours.
        foreign_entries || die "$dir exists and is not a throwaway PostgreSQL directory"
        rm -rf "$data"
    fi
    mkdir -p "$dir" "$sock"
    if [[ $(id -u) -eq 0 ]]; then
        chown -R postgres: "$dir"
        chmod 0755 "$dir"
        runuser -u postgres -- test -w "$dir" \
            || die "user postgres cannot write to $dir (a parent directory is not traversable; use e.g. /tmp/xyz with mode 755)"
    fi
    [[ ${#sock} -lt 95 ]] || die "socket dir path too long for a Unix socket: $sock"

    if [[ ! -f "$data/PG_VERSION" ]]; then
        local pwfile="$dir/.pw"
        echo postgres >"$pwfile"
        [[ $(id -u) -eq 0 ]] && chown postgres: "$pwfile"
        as_pg "$PGB/initdb" --no-sync -D "$data" -U postgres --pwfile="$pwfile" -E UTF8 --locale=C \
            --auth-local=trust --auth-host=scram-sha-256 >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
        rm -f "$pwfile"
        cat >"$data/pg_hba.conf" <<'EOF'
# throwaway PostgreSQL (scripts/pg-throwaway.sh)
# TYPE  DATABASE  USER      ADDRESS        METHOD
local   all       postgres                 trust
local   all       all                      md5
# md5 accepts both MD5- and SCRAM-stored passwords (SCRAM ones negotiate SCRAM).
host    all       all       127.0.0.1/32   md5
host    all       all       ::1/128        md5
EOF
        [[ $(id -u) -eq 0 ]] && chown postgres: "$data/pg_hba.conf"
    fi

    local port="" attempt
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        cat >"$data/postgresql.auto.conf" <<EOF
# written by scripts/pg-throwaway.sh
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$sock'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = $max_conn
password_encryption = 'scram-sha-256'
log_min_messages = warning
EOF
        [[ $(id -u) -eq 0 ]] && chown postgres: "$data/postgresql.auto.conf"
        if as_pg "$PGB/pg_ctl" start -D "$data" -l "$dir/postgres.log" -w -t 60 >/dev/null 2>&1; then
            break
        fi
        if is_running; then break; fi
        log "start on port $port failed (attempt $attempt); log tail:"
        tail -n 5 "$dir/postgres.log" >&2 || true
        port=""
    done
    [[ -n "$port" ]] || die "PostgreSQL did not start; see $dir/postgres.log"
    echo "$port" >"$dir/port"

    # Roles, database, privileges. Idempotent: only creates what is missing.
    su_psql "$port" -d postgres <<'EOF'
ALTER ROLE postgres PASSWORD 'postgres';
SELECT 'CREATE DATABASE example_db' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'example_db')
\gexec
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'example_user_md5') THEN
    SET LOCAL password_encryption = 'md5';
    CREATE ROLE example_user_md5 LOGIN PASSWORD 'md5pass';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'example_user_scram') THEN
    SET LOCAL password_encryption = 'scram-sha-256';
    CREATE ROLE example_user_scram LOGIN PASSWORD 'scrampass';
  END IF;
END
$$;
GRANT ALL ON DATABASE example_db TO example_user_md5, example_user_scram;
EOF
    su_psql "$port" -d example_db <<'EOF'
GRANT ALL ON SCHEMA public TO example_user_md5, example_user_scram;
EOF
    # Check that the stored password formats are what the tests rely on.
    local kinds
    kinds=$(su_psql "$port" -d postgres -At -c \
        "SELECT usename || ':' || left(passwd, 3) FROM pg_shadow WHERE usename LIKE 'example_user_%' ORDER BY 1")
    [[ "$kinds" == $'example_user_md5:md5\nexample_user_scram:SCR' ]] \
        || die "unexpected stored password formats: $kinds"

    if [[ $pgbench_init -eq 1 ]]; then
        as_pg pgbench -i -s 1 -q -h "$sock" -p "$port" -U postgres example_db >"$dir/pgbench-init.log" 2>&1 \
            || { cat "$dir/pgbench-init.log" >&2; die "pgbench -i failed"; }
        su_psql "$port" -d example_db <<'EOF'
GRANT ALL ON ALL TABLES IN SCHEMA public TO example_user_md5, example_user_scram;
EOF
    fi
    write_env "$port"
}

do_stop() {
    if [[ ! -e "$dir" ]]; then
        log "$dir does not exist; nothing to stop"
        return 0
    fi
    if [[ -f "$data/PG_VERSION" ]]; then
        if is_running; then
            as_pg "$PGB/pg_ctl" stop -D "$data" -m immediate -w -t 60 >/dev/null \
                || die "pg_ctl stop failed for $data"
        fi
    elif ! foreign_entries; then
        die "$dir is not a throwaway PostgreSQL directory; not removing it"
    fi
    rm -rf "$dir"
}

case $cmd in
    start) do_start ;;
    stop) do_stop ;;
    env) [[ -f "$envfile" ]] && is_running || die "$dir is not running"; cat "$envfile" ;;
    *) usage ;;
esac
