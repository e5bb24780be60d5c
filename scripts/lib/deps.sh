# shellcheck shell=bash
# Installs what tests and benchmarks need, skipping quickly when it is already present.
# Source it, then call `ensure_deps` (or ensure_apt_deps / ensure_pip_deps).
#
# apt: pgbouncer, libpq-dev, PostgreSQL 15 server + client (psql, pgbench), openssl, iproute2 (ss)
# when missing.
# pip: asyncpg, psycopg[binary], pytest, pytest-timeout.
# Set DEPS_SKIP=1 to skip every install (offline machine that is already provisioned).

_deps_log() { echo "deps: $*" >&2; }

_deps_sudo() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        _deps_log "need root for: $*"
        return 1
    fi
}

_deps_apt_updated=0

ensure_apt_deps() {
    [[ "${DEPS_SKIP:-0}" == 1 ]] && return 0
    local missing=()
    command -v pgbouncer >/dev/null 2>&1 || [[ -x /usr/sbin/pgbouncer ]] || missing+=(pgbouncer)
    dpkg -s libpq-dev >/dev/null 2>&1 || missing+=(libpq-dev)
    if [[ ! -x /usr/lib/postgresql/15/bin/initdb && -z "${PG_BIN:-}" ]]; then
        missing+=(postgresql-15)
    fi
    command -v psql >/dev/null 2>&1 || missing+=(postgresql-client-15)
    command -v pgbench >/dev/null 2>&1 || missing+=(postgresql-client-15)
    command -v runuser >/dev/null 2>&1 || missing+=(util-linux)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)  # TLS tests make their certificates
    command -v ss >/dev/null 2>&1 || missing+=(iproute2)  # a test reads socket timers with ss
    if [[ ${#missing[@]} -eq 0 ]]; then
        _deps_log "apt packages present"
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 || { _deps_log "missing ${missing[*]} and no apt-get"; return 1; }
    _deps_log "installing ${missing[*]}"
    if [[ $_deps_apt_updated -eq 0 ]]; then
        _deps_sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null
        _deps_apt_updated=1
    fi
    _deps_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" </dev/null >/dev/null
}

ensure_pip_deps() {
    [[ "${DEPS_SKIP:-0}" == 1 ]] && return 0
    if python3 -c 'import asyncpg, psycopg, pytest, pytest_timeout' >/dev/null 2>&1 \
        && python3 -c 'import psycopg; psycopg.pq.version()' >/dev/null 2>&1; then
        _deps_log "python packages present"
        return 0
    fi
    _deps_log "pip installing asyncpg psycopg[binary] pytest pytest-timeout"
    local pkgs=(asyncpg 'psycopg[binary]' pytest pytest-timeout)
    python3 -m pip install -q --disable-pip-version-check "${pkgs[@]}" </dev/null \
        || python3 -m pip install -q --disable-pip-version-check --break-system-packages "${pkgs[@]}" </dev/null
    python3 -c 'import asyncpg, psycopg, pytest' || { _deps_log "python packages still missing"; return 1; }
}

ensure_deps() {
    ensure_apt_deps
    ensure_pip_deps
}
