#!/usr/bin/env python3
"""Run the pgbench scenarios against every target and append one JSON record per (scenario, target).

Called by bench/run.sh:  scenarios.py TARGETS_JSON WORK_DIR OUT_JSONL

TARGETS_JSON: {"targets": [{"name": "direct", "host": ..., "port": ..., "pid": null | int,
                             "available": bool, "reason": str}, ...],
               "user": ..., "password": ..., "database": ...}

Per run: pgbench -n -T D -j min(2,c) -c c -M mode -P 1 --log --log-prefix ... -f script [-C].
Measured: tps (pgbench's "without initial connection time"), failed count, p50/p99 from the per-transaction
log files (third column = latency in microseconds), pooler CPU per transaction (utime+stime from
/proc/PID/stat sampled at the first and last progress line, divided by the transactions pgbench reported
in between, so connection setup is excluded except in the -C variant where it is the point), VmRSS sampled
mid-run, VmHWM after the run.
"""
from __future__ import annotations

import glob
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "lib"))
from pgbench_report import parse_report  # noqa: E402  (shared with Tests/Integration)

CLK_TCK = os.sysconf("SC_CLK_TCK")
SCRIPT = "\\set aid random(1, 100000)\nSELECT :aid;\n"
PROGRESS = re.compile(r"^progress: ([0-9.]+) s, ([0-9.]+) tps")


def env_list(name: str, default: str) -> list[str]:
    return [x for x in re.split(r"[,\s]+", os.environ.get(name, default)) if x]


def cpu_ticks(pid: int | None) -> int | None:
    if not pid:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # fields after the ")" of comm; utime and stime are fields 14 and 15 (1-based)
    rest = stat.rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])


def mem_kib(pid: int | None, key: str) -> int | None:
    if not pid:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def percentiles(values: list[int], ps=(50, 99)) -> dict[str, float | None]:
    if not values:
        return {f"p{p}": None for p in ps}
    values.sort()
    n = len(values)
    out = {}
    for p in ps:
        k = min(n - 1, max(0, int(round(p / 100 * n + 0.5)) - 1))  # nearest-rank
        out[f"p{p}"] = values[k] / 1000.0  # ms
    return out


def read_latencies(prefix: str) -> tuple[list[int], int]:
    lat: list[int] = []
    failed = 0
    for path in glob.glob(prefix + ".*"):
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                if parts[2].isdigit():
                    lat.append(int(parts[2]))
                else:  # "failed" / "skipped"
                    failed += 1
    return lat, failed


def run_pgbench(target: dict, cfg: dict, mode: str, clients: int, duration: int, reconnect: bool,
                work: Path, tag: str) -> dict:
    pid = target.get("pid")
    run_dir = work / "runs" / tag
    run_dir.mkdir(parents=True, exist_ok=True)
    script = run_dir / "bench.sql"
    script.write_text(SCRIPT)
    prefix = str(run_dir / "lat")
    cmd = ["pgbench", "-n", "-T", str(duration), "-j", str(min(2, clients)), "-c", str(clients), "-M", mode,
           "-P", "1", "--log", f"--log-prefix={prefix}", "-f", str(script)]
    if reconnect:
        cmd.append("-C")
    env = dict(os.environ, PGHOST=target["host"], PGPORT=str(target["port"]), PGUSER=cfg["user"],
               PGPASSWORD=cfg["password"], PGDATABASE=cfg["database"], PGCONNECT_TIMEOUT="30",
               PGPASSFILE="/dev/null")
    if target.get("sslmode"):
        env["PGSSLMODE"] = target["sslmode"]

    rss_base = mem_kib(pid, "VmRSS")
    cpu_start = cpu_ticks(pid)
    samples: list[tuple[float, float, int | None, int | None]] = []  # (t, tps, cpu ticks, rss)
    err_lines: list[str] = []
    out_path = run_dir / "stdout.txt"
    t0 = time.monotonic()
    with open(out_path, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env,
                                text=True, bufsize=1)

        def reader():
            for line in proc.stderr:
                m = PROGRESS.match(line)
                if m:
                    samples.append((float(m.group(1)), float(m.group(2)), cpu_ticks(pid), mem_kib(pid, "VmRSS")))
                elif len(err_lines) < 200:
                    err_lines.append(line.rstrip())

        th = threading.Thread(target=reader, daemon=True)
        th.start()
        # connection setup of thousands of SCRAM clients can take a while; bound it anyway
        limit = duration + 60 + clients * 0.05
        try:
            rc = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = 124
            err_lines.append(f"[bench] pgbench killed after {limit:.0f}s")
        th.join(timeout=5)
    wall = time.monotonic() - t0
    cpu_end = cpu_ticks(pid)
    stdout = out_path.read_text()
    rep = parse_report(stdout)
    lat, log_failed = read_latencies(prefix)
    pct = percentiles(lat)
    rec = {
        "target": target["name"], "mode": mode, "clients": clients, "reconnect": reconnect,
        "duration": duration, "rc": rc, "wall_s": round(wall, 2), **rep, **pct, "logged": len(lat),
        "cpu_us_per_tx": None, "cpu_window": None, "rss_mid_kib": None, "rss_base_kib": rss_base,
        "hwm_kib": mem_kib(pid, "VmHWM"), "stderr": "\n".join(err_lines[-15:]),
    }
    if rep["conn_time_ms"] is not None and not reconnect:
        rec["measured_s"] = round(duration - rep["conn_time_ms"] / 1000.0, 2)
    else:
        rec["measured_s"] = duration
    if pid:
        steady = [s for s in samples if s[2] is not None]
        # progress lines during connection setup show 0 tps; start the window at the first busy second
        first_busy = next((i for i, s in enumerate(steady) if s[1] > 0), len(steady))
        steady = steady[first_busy:]
        if len(steady) >= 2:
            tx = sum(s[1] for s in steady[1:]) * 1.0  # -P 1: each line covers one second
            dt = steady[-1][2] - steady[0][2]
            if tx > 0:
                rec["cpu_us_per_tx"] = dt / CLK_TCK / tx * 1e6
                rec["cpu_window"] = "steady"
        elif cpu_start is not None and cpu_end is not None and rep["processed"]:
            rec["cpu_us_per_tx"] = (cpu_end - cpu_start) / CLK_TCK / rep["processed"] * 1e6
            rec["cpu_window"] = "whole-run"
        rss = [s[3] for s in samples if s[3] is not None]
        if rss:
            rec["rss_mid_kib"] = rss[len(rss) // 2]
    ok = rc == 0 and (rep["processed"] or 0) > 0
    rec["ok"] = ok
    if rc == 0 and not rep["processed"]:
        rec["stderr"] = (rec["stderr"] + "\n" if rec["stderr"] else "") + \
            f"no transaction completed in -T {duration} (initial connection time {rep['conn_time_ms']} ms)"
    elif not ok and not rec["stderr"]:
        rec["stderr"] = stdout[-1000:]
    # latency logs are large; keep the text output only
    for p in glob.glob(prefix + ".*"):
        os.unlink(p)
    return rec


def main() -> int:
    targets_path, work, out_path = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    cfg = json.loads(targets_path.read_text())
    targets = cfg["targets"]
    duration = int(os.environ.get("BENCH_DURATION", "10"))
    modes = env_list("BENCH_MODES", "simple extended prepared")
    clients_list = [int(c) for c in env_list("BENCH_CLIENTS", "1 40 120 500 2000")]
    reconnect_clients = [int(c) for c in env_list("BENCH_RECONNECT_CLIENTS", "1 40")]
    reconnect_modes = env_list("BENCH_RECONNECT_MODES", "simple")
    direct_max = int(cfg.get("direct_max_clients", 10**9))
    max_connect = int(os.environ.get("BENCH_MAX_CONNECT", "60"))  # cap on the connection allowance (s)

    scenarios = [(m, c, False) for m in modes for c in clients_list]
    scenarios += [(m, c, True) for m in reconnect_modes for c in reconnect_clients]
    if os.environ.get("BENCH_RECONNECT", "1") == "0":
        scenarios = [s for s in scenarios if not s[2]]

    # The first scenario would pay for cold caches and pool fill; warm every target up, unrecorded.
    warmup = int(os.environ.get("BENCH_WARMUP", "2"))
    if warmup > 0:
        for t in targets:
            if t.get("available"):
                r = run_pgbench(t, cfg, "simple", 40 if direct_max >= 40 else 1, warmup, False, work, f"warmup-{t['name']}")
                print(f"[bench] warm-up {t['name']}: {'ok' if r['ok'] else 'FAILED ' + r['stderr'][-200:]}", flush=True)
    # BENCH_ROUNDS > 1: each scenario runs that many times, targets alternating within every round, so
    # the report can take the median run per target (this VM's noise moves single runs by ±15%).
    rounds = max(1, int(os.environ.get("BENCH_ROUNDS", "1")))
    with open(out_path, "a") as out:
        for i, (mode, clients, reconnect) in enumerate(scenarios):
            for rnd in range(rounds):
                shift = (i + rnd) % len(targets)
                order = targets[shift:] + targets[:shift]  # rotate who goes first
                for t in order:
                    name = f"{mode}{'-C' if reconnect else ''}-c{clients}" + (f"-r{rnd + 1}" if rounds > 1 else "")
                    base = {"target": t["name"], "mode": mode, "clients": clients, "reconnect": reconnect,
                            "duration": duration, "round": rnd + 1}
                    if not t.get("available"):
                        rec = {**base, "ok": False, "skipped": True, "reason": t.get("reason", "unavailable")}
                    elif mode == "prepared" and t.get("no_prepared"):
                        rec = {**base, "ok": False, "skipped": True, "reason": t["no_prepared"]}
                    elif t["name"] == "direct" and clients > direct_max:
                        rec = {**base, "ok": False, "skipped": True,
                               "reason": f"PostgreSQL max_connections too low for {clients} direct clients"}
                    else:
                        print(f"[bench] {name:<22} {t['name']:<10} ...", end="", flush=True)
                        # pgbench's -T clock includes connecting all clients (thousands of SCRAM handshakes);
                        # give that time on top of the measured duration, and retry once with more if short.
                        allowance = 0 if reconnect else math.ceil(clients / 100)
                        rec = run_pgbench(t, cfg, mode, clients, duration + allowance, reconnect, work,
                                          f"{name}-{t['name']}")
                        retry = None
                        if not reconnect and rec["rc"] == 0 and rec.get("conn_time_ms") is not None \
                                and rec["measured_s"] < 0.8 * duration:
                            retry = math.ceil(rec["conn_time_ms"] / 1000.0 * 1.5) + 1
                        elif not reconnect and rec["rc"] == 0 and not rec.get("processed"):
                            retry = allowance * 3  # connecting outlasted -T; pgbench then prints no timing
                        if retry is not None:
                            allowance = min(retry, max_connect)
                            print(f" connection setup too slow ({rec.get('conn_time_ms')} ms), rerun with -T "
                                  f"{duration + allowance} ...", end="", flush=True)
                            rec = run_pgbench(t, cfg, mode, clients, duration + allowance, reconnect, work,
                                              f"{name}-{t['name']}-retry")
                        if rec["ok"]:
                            print(f" tps={rec['tps']} p50={rec['p50']}ms p99={rec['p99']}ms failed={rec['failed']}"
                                  f" cpu/tx={rec['cpu_us_per_tx'] and round(rec['cpu_us_per_tx'], 1)}us", flush=True)
                        else:
                            print(f" FAILED rc={rec['rc']}: {rec['stderr'].splitlines()[-1:] }", flush=True)
                    out.write(json.dumps(rec) + "\n")
                    out.flush()
    shutil.rmtree(work / "runs", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
