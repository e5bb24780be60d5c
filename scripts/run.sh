#!/usr/bin/env bash
# Build pg_doorman (release) and run it in the foreground in front of a PostgreSQL.
#
#   scripts/run.sh [--host H] [--port P] [--user U] [--password PW] [--database DB]
#                  [--listen-port 6432] [-- PG_DOORMAN_ARGS...]
#
# PostgreSQL: the one you name (flags, or env PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE; the user
# must be a superuser, generate reads pg_shadow). If you name none, a throwaway PostgreSQL 15 is
# started (scripts/pg-throwaway.sh, users example_user_md5/md5pass and example_user_scram/scrampass)
# and removed when pg_doorman exits.
# The config comes from `pg_doorman generate` and is written to a temp dir; general.host is set to
# 127.0.0.1 and general.port to --listen-port (default 6432, env DOORMAN_PORT).
# Env: SKIP_BUILD=1 uses the existing .build/release/pg_doorman; PG_DOORMAN_BIN=path runs that binary
# (no build).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

die() { echo "run.sh: ERROR: $*" >&2; exit 1; }

host=${PGHOST:-}
port=${PGPORT:-}
user=${PGUSER:-}
password=${PGPASSWORD:-}
database=${PGDATABASE:-}
listen_port=${DOORMAN_PORT:-6432}
extra=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --host) host=$2; shift 2 ;;
        --port|-p) port=$2; shift 2 ;;
        --user|-u) user=$2; shift 2 ;;
        --password) password=$2; shift 2 ;;
        --database|-d) database=$2; shift 2 ;;
        --listen-port) listen_port=$2; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

if [[ "${SKIP_BUILD:-0}" != 1 && -z "${PG_DOORMAN_BIN:-}" ]]; then
    echo "run.sh: scripts/build-release.sh (swift build -c release)" >&2
    "$ROOT/scripts/build-release.sh" >&2
fi
BIN=${PG_DOORMAN_BIN:-$ROOT/.build/release/pg_doorman}
[[ -x "$BIN" ]] || die "$BIN not found (build failed?)"

work=$(mktemp -d /tmp/pg_doorman-run.XXXXXX)
chmod 0755 "$work"
throwaway=0
cleanup() {
    local rc=$?
    if [[ $throwaway -eq 1 ]]; then
        "$ROOT/scripts/pg-throwaway.sh" stop "$work/pg" >&2 || true
    fi
    rm -rf "$work"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -z "$host$port$user$password" ]]; then
    echo "run.sh: no PostgreSQL given; starting a throwaway PostgreSQL 15" >&2
    throwaway=1
    "$ROOT/scripts/pg-throwaway.sh" start "$work/pg" --pgbench >/dev/null
    # shellcheck disable=SC1091
    source "$work/pg/env"
    host=$PGHOST port=$PGPORT user=postgres password=postgres database=postgres
fi
host=${host:-127.0.0.1}
port=${port:-5432}
user=${user:-postgres}

cfg="$work/pg_doorman.yaml"
gen=("$BIN" generate --host "$host" --port "$port" --user "$user" --output "$cfg")
[[ -n "$password" ]] && gen+=(--password "$password")
[[ -n "$database" ]] && gen+=(--database "$database")
echo "run.sh: $BIN generate --host $host --port $port --user $user --output $cfg${password:+ --password ***}" >&2
"${gen[@]}" || die "pg_doorman generate failed"
[[ -s "$cfg" ]] || die "pg_doorman generate wrote no config"

# Listen on loopback and the chosen port: rewrite host/port inside the top-level `general:` block.
python3 - "$cfg" "$listen_port" <<'EOF'
import re, sys
path, port = sys.argv[1], sys.argv[2]
lines = open(path).read().split("\n")
in_general, seen = False, set()
for i, line in enumerate(lines):
    if re.match(r"^\S", line):
        in_general = line.rstrip().startswith("general:")
        continue
    if in_general:
        m = re.match(r"^(\s+)(host|port):(\s*)(\S.*?)?(\s+#.*)?$", line)
        if m and m.group(2) not in seen:
            seen.add(m.group(2))
            value = '"127.0.0.1"' if m.group(2) == "host" else port
            lines[i] = f"{m.group(1)}{m.group(2)}: {value}{m.group(5) or ''}"
if "general:" in "\n".join(lines):
    for key in ("host", "port"):
        if key not in seen:
            idx = next(i for i, l in enumerate(lines) if l.rstrip() == "general:")
            lines.insert(idx + 1, f'  {key}: ' + ('"127.0.0.1"' if key == "host" else port))
open(path, "w").write("\n".join(lines))
EOF

echo "run.sh: config $cfg" >&2
echo
echo "pg_doorman is starting on 127.0.0.1:$listen_port. Connect with:"
if [[ $throwaway -eq 1 ]]; then
    echo "  PGPASSWORD=scrampass psql -h 127.0.0.1 -p $listen_port -U example_user_scram example_db"
    echo "  PGPASSWORD=md5pass   psql -h 127.0.0.1 -p $listen_port -U example_user_md5 example_db"
else
    echo "  psql -h 127.0.0.1 -p $listen_port -U <user> <database>"
fi
echo "Stop with Ctrl-C."
echo
"$BIN" "$cfg" "${extra[@]}"
