#!/usr/bin/env bash
# Release build of pg_doorman, as run by scripts/run.sh and bench/run.sh.
#
#   scripts/build-release.sh [extra swift build args...]
#
# Exclusivity checking is turned off for every module, the dependencies (SwiftNIO) included:
# Package.swift can only do that for our own targets, and NIO's run-time access checks on the
# relay's hot path cost about 3% of throughput (bench/RESULTS.md). Debug builds (scripts/test.sh)
# keep the checks.
set -euo pipefail
cd "$(dirname "$0")/.."
exec swift build -c release -Xswiftc -enforce-exclusivity=unchecked "$@"
