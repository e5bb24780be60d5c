# shellcheck shell=bash
# What bench/run.sh and bench/instructions.sh share: the dependency installer, log helpers
# prefixed with $BENCH_TAG, and one definition of the equivalently configured PgBouncer and
# pg_doorman they compare. Source it from the repository root after setting BENCH_TAG.

# shellcheck source=scripts/lib/deps.sh
source scripts/lib/deps.sh
say() { echo "[${BENCH_TAG:-bench}] $*" >&2; }
die() { echo "[${BENCH_TAG:-bench}] ERROR: $*" >&2; exit 1; }

# start_bench_pg DIR -> a throwaway PostgreSQL with pgbench tables in DIR; sets PG_PORT,
# PG_SOCKET_DIR, USER_NAME (the SCRAM user both poolers serve) and verifier (its pg_shadow entry).
start_bench_pg() {
    "$ROOT/scripts/pg-throwaway.sh" start "$1" --pgbench >/dev/null
    # shellcheck disable=SC1091
    source "$1/env"
    PG_PORT=$PGPORT
    unset PGHOST PGPORT
    USER_NAME=example_user_scram
    verifier=$(psql -X -At -h "$PG_SOCKET_DIR" -p "$PG_PORT" -U postgres -d postgres \
        -c "SELECT passwd FROM pg_shadow WHERE usename = '$USER_NAME'")
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# write_pgbouncer_config DIR PORT PG_PORT USER VERIFIER POOL_SIZE
# -> DIR/userlist.txt (the SCRAM verifier) and DIR/pgbouncer.ini (transaction mode, SCRAM auth,
#    connection logging off); callers append further settings to the ini.
write_pgbouncer_config() {
    local dir=$1 port=$2 pg_port=$3 user=$4 verifier=$5 pool=$6
    printf '"%s" "%s"\n' "$user" "$verifier" >"$dir/userlist.txt"
    cat >"$dir/pgbouncer.ini" <<INI
[databases]
example_db = host=127.0.0.1 port=$pg_port dbname=example_db

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
pool_mode = transaction
default_pool_size = $pool
max_client_conn = 5000
logfile = $dir/pgbouncer.log
log_connections = 0
log_disconnections = 0
ignore_startup_parameters = extra_float_digits
INI
}

# write_doorman_config FILE PORT PG_PORT USER VERIFIER POOL_SIZE [EXTRA_GENERAL_LINE...]
# -> the same pool in pg_doorman's YAML (transaction mode, the SCRAM verifier as the password;
#    client connection logging off, as omitted keys mean); extra lines go under `general:`.
write_doorman_config() {
    local file=$1 port=$2 pg_port=$3 user=$4 verifier=$5 pool=$6
    shift 6
    {
        echo "general:"
        echo "  host: \"127.0.0.1\""
        echo "  port: $port"
        echo "  admin_username: \"admin\""
        echo "  admin_password: \"admin\""
        local line
        for line in "$@"; do echo "  $line"; done
        echo "pools:"
        echo "  example_db:"
        echo "    server_host: \"127.0.0.1\""
        echo "    server_port: $pg_port"
        echo "    pool_mode: \"transaction\""
        echo "    users:"
        echo "      - username: \"$user\""
        echo "        password: \"$verifier\""
        echo "        pool_size: $pool"
    } >"$file"
}
