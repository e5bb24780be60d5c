"""pgbench's end-of-run report, parsed. Shared by the integration tests (Tests/Integration/harness.py)
and the benchmark (bench/scenarios.py)."""
from __future__ import annotations

import re


def parse_report(stdout: str) -> dict:
    """tps, processed/failed transaction counts, average latency and connection time (None when absent)."""
    def num(pattern, cast=float):
        m = re.search(pattern, stdout, re.M)
        return cast(m.group(1)) if m else None

    return {
        # PG 15: "tps = 123.4 (without initial connection time)"; older: "(excluding connections establishing)".
        "tps": num(r"^tps = ([0-9.]+) \((?:without|excluding|including)"),
        "processed": num(r"^number of transactions actually processed: (\d+)", int),
        "failed": num(r"^number of failed transactions: (\d+)", int),
        "latency_avg_ms": num(r"^latency average = ([0-9.]+) ms"),
        # "initial connection time" without -C, "average connection time" with it.
        "conn_time_ms": num(r"^(?:initial connection time|average connection time) = ([0-9.]+) ms"),
    }
