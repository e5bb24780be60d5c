#!/usr/bin/env bash
# Event-loop stalls under hostile clients: see bench/stall.py for the cases and knobs.
#   bench/stall.sh                       release build, then every case against pg_doorman and direct
#   STALL_SKIP_BUILD=1 STALL_TARGETS=doorman STALL_CASES=pipeline bench/stall.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z ${STALL_SKIP_BUILD:-} && -z ${PG_DOORMAN_BIN:-} ]]; then
    scripts/build-release.sh >&2
fi
exec python3 bench/stall.py "$@"
