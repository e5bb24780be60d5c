#!/usr/bin/env python3
"""Turn the JSON lines written by bench/scenarios.py into a markdown report.

    report.py RESULTS_JSONL [META_JSON]   > results.md
"""
from __future__ import annotations

import json
import sys
from collections import OrderedDict

# Record target names (unchanged since the first results, so older .jsonl files still load):
# "pgbouncer" is Debian's PgBouncer (1.18), "pgbouncer125" the 1.25.2 build, added later.
ALL_TARGETS = ["direct", "pgbouncer", "pgbouncer125", "doorman"]
POOLERS = ["pgbouncer", "pgbouncer125", "doorman"]
DEFAULT_LABELS = {"direct": "direct", "pgbouncer": "pgbouncer-1.18", "pgbouncer125": "pgbouncer-1.25.2",
                  "doorman": "doorman"}


def labels(meta: dict) -> dict[str, str]:
    """Column names: the PgBouncers carry their version (from meta, e.g. "PgBouncer 1.18.0" -> 1.18)."""
    out = dict(DEFAULT_LABELS)
    for t in ("pgbouncer", "pgbouncer125"):
        words = (meta.get(f"{t}_version") or "").split()
        if len(words) >= 2 and words[0] == "PgBouncer" and words[1][:1].isdigit():
            v = words[1]
            if v.count(".") == 2 and v.endswith(".0"):
                v = v[:-2]
            out[t] = f"pgbouncer-{v}"
    return out


def fmt(v, nd=0, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.{nd}f}{unit}"
    return f"{v:,}{unit}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    return f"×{a / b:.2f}"


MEDIAN_FIELDS = ("tps", "p50", "p99", "cpu_us_per_tx")


def median(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def medians(runs: list[dict]) -> dict:
    """The run with the median tps (lower middle), with every MEDIAN_FIELDS figure replaced by its
    median over `runs`; memory figures stay those of that run."""
    by_tps = sorted(runs, key=lambda r: r["tps"])
    merged = dict(by_tps[(len(by_tps) - 1) // 2])
    for field in MEDIAN_FIELDS:
        merged[field] = median([r.get(field) for r in runs])
    return merged


def scenario_name(r) -> str:
    return f"{r['mode']}{' -C' if r['reconnect'] else ''}, {r['clients']} c"


def main() -> int:
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    meta = json.load(open(sys.argv[2])) if len(sys.argv) > 2 else {}
    # pgbouncer125 gets columns when the run had it (even as n/a); older results show the three
    # targets they had.
    seen = {r["target"] for r in rows}
    TARGETS = [t for t in ALL_TARGETS if t != "pgbouncer125" or t in seen]
    poolers = [t for t in POOLERS if t in TARGETS]
    bouncers = [t for t in poolers if t != "doorman"]
    L = labels(meta)
    # With BENCH_ROUNDS > 1 a scenario has several runs per target: report the median of each figure
    # (tps, p50, p99, CPU per transaction) over those runs, each on its own — a single run's p99 moves
    # by ±20% on this VM — and the tps range of all of them.
    runs: "OrderedDict[tuple, dict[str, list[dict]]]" = OrderedDict()
    for r in rows:
        key = (r["reconnect"], r["mode"], r["clients"])
        runs.setdefault(key, {}).setdefault(r["target"], []).append(r)
    by_scn: "OrderedDict[tuple, dict[str, dict]]" = OrderedDict()
    spread: dict[tuple, str] = {}
    rounds = max((len(v) for t in runs.values() for v in t.values()), default=1)
    for key, per_target in runs.items():
        for target, rs in per_target.items():
            ok = sorted((r for r in rs if r.get("ok") and r.get("tps") is not None), key=lambda r: r["tps"])
            by_scn.setdefault(key, {})[target] = medians(ok) if ok else rs[-1]
            if len(ok) > 1:
                spread[(key, target)] = f"{fmt(ok[0]['tps'])}–{fmt(ok[-1]['tps'])}"
    # reconnect scenarios after the regular ones, modes in their run order
    keys = list(by_scn.keys())

    def tps(r):
        return r.get("tps") if r and r.get("ok") else None

    out = []
    out.append(f"# pg_doorman benchmark — {meta.get('date', '')}\n")
    if meta:
        out.append("| | |\n|---|---|")
        for k in ("machine", "kernel", "postgres", "pgbouncer", "pgbouncer125", "doorman", "duration", "pgbench",
                  "notes"):
            if k in meta:
                out.append(f"| {k} | {meta[k]} |")
        out.append("")
    out.append("## Throughput (tps) and ratios\n")
    if rounds > 1:
        out.append(f"Each scenario ran {rounds} times, targets alternating within every round; tps, p50, "
                   "p99 and CPU per transaction below are each the median of that target's runs (tps range "
                   "of all runs in the last table); memory figures come from the run with the median tps.\n")
    # ratio columns: doorman against each PgBouncer (side by side), doorman and each PgBouncer against direct
    pairs = [("doorman", b) for b in bouncers] + [("doorman", "direct")] + [(b, "direct") for b in bouncers]
    out.append("| scenario | " + " | ".join(L[x] for x in TARGETS) + " | "
               + " | ".join(f"{L[a]}/{L[b]}" for a, b in pairs) + " |")
    out.append("|---|" + "---:|" * (len(TARGETS) + len(pairs)))
    for k in keys:
        t = by_scn[k]
        v = {x: tps(t.get(x)) for x in TARGETS}
        out.append(f"| {scenario_name(next(iter(t.values())))} | " + " | ".join(fmt(v[x]) for x in TARGETS) + " | "
                   + " | ".join(ratio(v[a], v[b]) for a, b in pairs) + " |")
    out.append("")
    out.append("## Latency p50 / p99 (ms, from pgbench --log)\n")
    out.append("| scenario | " + " | ".join(L[x] for x in TARGETS) + " |")
    out.append("|---|" + "---:|" * len(TARGETS))
    for k in keys:
        t = by_scn[k]
        cells = []
        for x in TARGETS:
            r = t.get(x)
            if r and r.get("ok"):
                cells.append(f"{fmt(r.get('p50'), 3)} / {fmt(r.get('p99'), 3)}")
            else:
                cells.append("n/a")
        out.append(f"| {scenario_name(next(iter(t.values())))} | " + " | ".join(cells) + " |")
    out.append("")
    out.append("## Pooler resources\n")
    out.append("CPU µs/tx: pooler process utime+stime between the first and last pgbench progress line "
               "divided by the transactions in that window (connection setup excluded, except with -C). "
               "RSS: VmRSS mid-run; peak: VmHWM after the run (process lifetime); per client: "
               "(mid-run RSS − RSS at pooler start) / clients, shown for runs that raised the client count "
               "above every earlier run.\n")
    out.append("| scenario | " + " | ".join(f"{L[x]} CPU µs/tx" for x in poolers) + " | "
               + " | ".join(f"{L[x]} RSS MiB (peak)" for x in poolers) + " | "
               + " | ".join(f"{L[x]} KiB/client" for x in poolers) + " |")
    out.append("|---|" + "---:|" * (3 * len(poolers)))
    base = meta.get("rss_start_kib", {})
    # RSS per client is only meaningful for a run that pushes the client count past every earlier run
    # (freed memory is rarely returned to the OS, so later smaller runs would be charged for it).
    growing: set[tuple] = set()
    most: dict[str, int] = {}
    for r in rows:
        if r.get("ok") and not r.get("reconnect"):
            if r["clients"] > most.get(r["target"], 0):
                growing.add((r["target"], r["mode"], r["clients"]))
            most[r["target"]] = max(most.get(r["target"], 0), r["clients"])
    for k in keys:
        t = by_scn[k]
        cpu, rss, per = [], [], []
        for x in poolers:
            r = t.get(x)
            if r and r.get("ok"):
                cpu.append(fmt(r.get("cpu_us_per_tx"), 1))
                mid, hwm = r.get("rss_mid_kib"), r.get("hwm_kib")
                rss.append(f"{fmt(mid / 1024 if mid else None, 1)} ({fmt(hwm / 1024 if hwm else None, 1)})")
                b = base.get(x)
                if mid and b and r["clients"] >= 100 and (x, r["mode"], r["clients"]) in growing:
                    per.append(fmt((mid - b) / r["clients"], 1))
                else:
                    per.append("—")
            else:
                cpu.append("n/a"); rss.append("n/a"); per.append("n/a")
        out.append(f"| {scenario_name(next(iter(t.values())))} | " + " | ".join(cpu + rss + per) + " |")
    out.append("")
    if spread:
        out.append(f"## tps range over the {rounds} rounds\n")
        out.append("| scenario | " + " | ".join(L[x] for x in TARGETS) + " |")
        out.append("|---|" + "---:|" * len(TARGETS))
        for k in keys:
            cells = [spread.get((k, x), "n/a") for x in TARGETS]
            out.append(f"| {scenario_name(next(iter(by_scn[k].values())))} | " + " | ".join(cells) + " |")
        out.append("")
    notes = []
    skipped: "OrderedDict[tuple, list[str]]" = OrderedDict()
    for k in keys:
        for x in TARGETS:
            r = by_scn[k].get(x)
            if r is None:
                continue
            if r.get("skipped"):
                skipped.setdefault((x, r.get("reason")), []).append(scenario_name(r))
            elif not r.get("ok"):
                last = (r.get("stderr") or "").strip().splitlines()[-1:] or ["?"]
                notes.append(f"- {L[x]}, {scenario_name(r)}: failed (rc={r.get('rc')}) — {last[0][:200]}")
            elif r.get("failed"):
                notes.append(f"- {L[x]}, {scenario_name(r)}: {r['failed']} failed transactions")
    for (x, reason), scns in skipped.items():
        where = "every scenario" if len(scns) == len(keys) else "; ".join(scns)
        notes.append(f"- {L[x]}: n/a in {where} — {reason}")
    if notes:
        out.append("## Notes\n")
        out.extend(notes)
        out.append("")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
