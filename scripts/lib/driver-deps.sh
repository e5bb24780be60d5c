# shellcheck shell=bash
# Toolchains for Tests/Integration/test_driver_transcripts.py (one small program per real driver).
# Source it, then call `ensure_driver_deps`; skipped quickly when everything is present.
#
# apt: libpostgresql-jdbc-java + default-jdk-headless (pgjdbc), golang-go + golang-github-jackc-pgx-v4-dev
# (pgx v4), ruby-pg (ruby-pg), node-pg (node-postgres).
# node-pg is not installable next to a nodejs that did not come from Debian (e.g. nodesource v20): then its
# .debs (pg and its pure-JS dependencies) are fetched with `apt-get download` and unpacked into
# $DRIVER_DEPS_NODE_DIR (default /var/cache/pg_doorman-node), whose usr/share/nodejs the test adds to NODE_PATH.
# psycopg and asyncpg come from scripts/lib/deps.sh (pip).
# Set DEPS_SKIP=1 to skip every install.

DRIVER_DEPS_NODE_DIR=${DRIVER_DEPS_NODE_DIR:-/var/cache/pg_doorman-node}
export DRIVER_DEPS_NODE_DIR

_drv_log() { echo "driver-deps: $*" >&2; }

# Root or sudo: the helper deps.sh defines (sourced here when the caller has not already).
if ! declare -F _deps_sudo >/dev/null; then
    # shellcheck source=scripts/lib/deps.sh
    source "$(dirname "${BASH_SOURCE[0]}")/deps.sh"
fi

_drv_apt_update_done=0
_drv_apt_update() {
    [[ $_drv_apt_update_done -eq 1 ]] && return 0
    _deps_sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null || return 1
    _drv_apt_update_done=1
}

_drv_node_pg_present() {
    node -e 'require("pg")' >/dev/null 2>&1 && return 0
    NODE_PATH="$DRIVER_DEPS_NODE_DIR/usr/share/nodejs${NODE_PATH:+:$NODE_PATH}" \
        node -e 'require("pg")' >/dev/null 2>&1
}

# node-pg's .debs minus node-libpq (native bindings pg never loads unless asked to).
_DRV_NODE_DEBS=(node-pg node-split2 node-xtend node-async node-readable-stream node-inherits node-string-decoder
    node-util-deprecate node-safe-buffer node-process-nextick-args node-isarray node-core-util-is)

_drv_node_pg_unpack() {
    local dl
    dl=$(mktemp -d /tmp/driver-deps-node.XXXXXX) || return 1
    chmod 755 "$dl"  # apt-get download runs as _apt when it can
    if ! (cd "$dl" && apt-get download -qq "${_DRV_NODE_DEBS[@]}" </dev/null >/dev/null 2>&1); then
        _drv_log "apt-get download of node-pg failed"
        rm -rf "$dl"
        return 1
    fi
    _deps_sudo mkdir -p "$DRIVER_DEPS_NODE_DIR" || { rm -rf "$dl"; return 1; }
    local deb
    for deb in "$dl"/*.deb; do
        _deps_sudo dpkg -x "$deb" "$DRIVER_DEPS_NODE_DIR" || { rm -rf "$dl"; return 1; }
    done
    rm -rf "$dl"
}

ensure_driver_deps() {
    [[ "${DEPS_SKIP:-0}" == 1 ]] && return 0
    local missing=()
    [[ -f /usr/share/java/postgresql.jar ]] || missing+=(libpostgresql-jdbc-java)
    { command -v javac >/dev/null 2>&1 && command -v java >/dev/null 2>&1; } || missing+=(default-jdk-headless)
    command -v go >/dev/null 2>&1 || missing+=(golang-go)
    [[ -d /usr/share/gocode/src/github.com/jackc/pgx/v4 || -d /usr/share/gocode/src/github.com/jackc/pgx ]] \
        || missing+=(golang-github-jackc-pgx-v4-dev)
    ruby -e 'require "pg"' >/dev/null 2>&1 || missing+=(ruby-pg)
    local want_node=0
    if ! command -v node >/dev/null 2>&1; then
        missing+=(nodejs node-pg)
    elif ! _drv_node_pg_present; then
        want_node=1
    fi
    if [[ ${#missing[@]} -eq 0 && $want_node -eq 0 ]]; then
        _drv_log "driver toolchains present"
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 || { _drv_log "missing ${missing[*]} and no apt-get"; return 1; }
    _drv_apt_update || return 1
    local rc=0
    if [[ ${#missing[@]} -gt 0 ]]; then
        _drv_log "installing ${missing[*]}"
        _deps_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" </dev/null >/dev/null || rc=1
    fi
    if ! _drv_node_pg_present; then
        # apt refuses node-pg when the installed nodejs is not Debian's: unpack the JS packages instead.
        _drv_log "node-pg: apt-get install refused or skipped; unpacking the .debs into $DRIVER_DEPS_NODE_DIR"
        if [[ $want_node -eq 1 ]] && _deps_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends node-pg </dev/null >/dev/null 2>&1 && _drv_node_pg_present; then
            :
        else
            _drv_node_pg_unpack && _drv_node_pg_present || { _drv_log "node-pg still missing"; rc=1; }
        fi
    fi
    return $rc
}
