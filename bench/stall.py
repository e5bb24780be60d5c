#!/usr/bin/env python3
"""Event-loop stalls: the worst `SELECT 1` latency of well-behaved clients while one hostile client
(a) sends a 200 MB simple query, (b) streams 200 MB of CopyData, (c) pipelines 100k
Parse/Bind/Execute/Sync without reading the replies, (d) reads a 100 MB result slowly.

Usage: bench/stall.sh (or python3 bench/stall.py) — see bench/README.md. Env knobs:
  PG_DOORMAN_BIN        pooler binary (default .build/release/pg_doorman)
  STALL_TARGETS         comma list of doorman,direct (default doorman,direct; direct = the same
                        clients straight to PostgreSQL: what the machine itself adds)
  STALL_CASES           comma list of baseline,query,copy,pipeline,slowread (default all)
  STALL_CANARIES        well-behaved clients (default 3)
  STALL_SCALE           size factor for the hostile payloads (default 1.0: 200 MB, 100k, 100 MB)
  STALL_WORKERS         general.worker_threads of pg_doorman (default: its own default)
  STALL_PERF=1          also sample pg_doorman with `perf record -g` during each case and print
                        "hold ms": the longest time its event-loop thread ran without returning to
                        epoll_wait (how long the pooler itself kept other clients waiting, as
                        opposed to waiting for a CPU on a loaded machine)

Each case prints, for the canaries' `SELECT 1` round trips while the hostile client ran: count,
p50, p99, max (ms). Canaries and the hostile client run in separate processes (no shared GIL).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Tests" / "Integration"))
from harness import Doorman, PgInstance, free_port, make_tmp_dir, rmtree_quiet, to_yaml  # noqa: E402
from wire import Wire, bind, copy_data, copy_done, execute, parse, query, sync  # noqa: E402

USER, PASSWORD, DB = "example_user_scram", "scrampass", "example_db"
SCALE = float(os.environ.get("STALL_SCALE", "1"))
MB = 1 << 20
READY = b"Z\x00\x00\x00\x05I"


# --------------------------------------------------------------------------- hostile clients

def hostile_query(host: str, port: int) -> None:
    w = Wire.connect(host, port, USER, PASSWORD, DB, timeout=120)
    size = int(200 * MB * SCALE)
    w.send(query("SELECT length('" + "x" * size + "')"))
    w.read_until_ready(timeout=300)
    w.close()


def hostile_copy(host: str, port: int) -> None:
    w = Wire.connect(host, port, USER, PASSWORD, DB, timeout=120)
    w.send(query("COPY stall_copy FROM STDIN"))
    w.read_until(b"G", timeout=30)
    line = b"y" * 1023 + b"\n"
    chunk = copy_data(line * 256)  # 256 KiB per CopyData
    total = int(200 * MB * SCALE)
    sent = 0
    while sent < total:
        w.sock.sendall(chunk)
        sent += 256 * 1024
    w.send(copy_done())
    w.read_until_ready(timeout=300)
    w.close()


def hostile_pipeline(host: str, port: int) -> None:
    w = Wire.connect(host, port, USER, PASSWORD, DB, timeout=120)
    n = int(100_000 * SCALE)
    one = parse("", "SELECT 1") + bind() + execute() + sync()
    w.sock.settimeout(300)
    # Sends everything and reads nothing for 3 s (the sender blocks once the pooler stops reading),
    # then reads every reply.
    sender = threading.Thread(target=w.sock.sendall, args=(one * n,))
    sender.start()
    time.sleep(3.0)
    # Counts ReadyForQuery messages in the raw bytes (parsing 100k messages in Python would make
    # this process, not the pooler, the CPU hog of the case).
    ready, tail = w.buf.count(READY), w.buf[-5:]
    w.sock.settimeout(60)
    while ready < n:
        chunk = w.sock.recv(1 << 20)
        if not chunk:
            break
        ready += (tail + chunk).count(READY)
        tail = chunk[-5:]
    sender.join()
    w.close()


def hostile_slowread(host: str, port: int) -> None:
    w = Wire.connect(host, port, USER, PASSWORD, DB, timeout=120)
    rows = int(100_000 * SCALE)
    w.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    w.send(query(f"SELECT repeat('z', 1000) FROM generate_series(1, {rows})"))
    deadline = time.monotonic() + 10.0
    got = 0
    w.sock.settimeout(2.0)
    while time.monotonic() < deadline:  # 64 KiB every 20 ms: ~3 MB/s against a 100 MB result
        try:
            chunk = w.sock.recv(64 * 1024)
        except socket.timeout:
            break
        if not chunk:
            break
        got += len(chunk)
        time.sleep(0.02)
    w.abort()


HOSTILE = {"query": hostile_query, "copy": hostile_copy, "pipeline": hostile_pipeline, "slowread": hostile_slowread}


# --------------------------------------------------------------------------- canaries

def canary(host: str, port: int, stop: mp.Event, out: mp.Queue) -> None:
    w = Wire.connect(host, port, USER, PASSWORD, DB, timeout=30)
    msg = query("SELECT 1")
    lat: list[float] = []
    while not stop.is_set():
        t0 = time.perf_counter()
        w.sock.sendall(msg)
        w.read_until_ready(timeout=120)
        lat.append(time.perf_counter() - t0)
        time.sleep(0.002)
    w.close()
    out.put(lat)


def longest_hold(data: Path) -> float:
    """The longest stretch (ms) in which the pooler's event-loop thread ran without going back to
    epoll_wait: samples ~0.5 ms apart (1999 Hz) of one thread, none inside epoll_wait, no gap over
    1.5 ms (a gap means the thread was off the CPU: waiting for a core, not holding its loop)."""
    out = subprocess.run(["perf", "script", "-i", str(data), "-F", "tid,time,sym"], capture_output=True, text=True,
                         check=False).stdout
    header = re.compile(r"^\s*(\d+)\s+([\d.]+):")
    samples: list[list] = []
    for line in out.splitlines():
        m = header.match(line)
        if m:
            samples.append([m.group(1), float(m.group(2)), False])
        elif samples and "epoll_wait" in line:
            samples[-1][2] = True
    best, start = 0.0, None
    for i, (tid, t, waiting) in enumerate(samples):
        if waiting or start is None or tid != samples[i - 1][0] or t - samples[i - 1][1] > 0.0015:
            start = None if waiting else i
            continue
        best = max(best, t - samples[start][1])
    return best * 1000


def run_case(name: str, host: str, port: int, canaries: int, perf_pid: int | None = None,
             perf_data: Path | None = None) -> dict[str, float]:
    stop = mp.Event()
    q: mp.Queue = mp.Queue()
    procs = [mp.Process(target=canary, args=(host, port, stop, q)) for _ in range(canaries)]
    for p in procs:
        p.start()
    time.sleep(1.0)  # canaries logged in and warm
    perf = None
    if perf_pid and perf_data:
        perf = subprocess.Popen(["perf", "record", "-g", "-F", "1999", "-p", str(perf_pid), "-o", str(perf_data)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    if name == "baseline":
        time.sleep(5.0)
    else:
        h = mp.Process(target=HOSTILE[name], args=(host, port))
        h.start()
        h.join(600)
        if h.is_alive():
            h.terminate()
    elapsed = time.monotonic() - t0
    busy = None
    if perf:
        perf.send_signal(signal.SIGINT)
        perf.wait(60)
        busy = longest_hold(perf_data)
    stop.set()
    lat: list[float] = []
    for _ in procs:
        lat += q.get(timeout=180)
    for p in procs:
        p.join(30)
    lat.sort()
    if not lat:
        return {"n": 0, "seconds": elapsed}
    extra = {} if busy is None else {"busy": busy}

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000

    return {"n": len(lat), "seconds": elapsed, "p50": pct(0.5), "p99": pct(0.99), "max": lat[-1] * 1000, **extra}


def main() -> int:
    targets = os.environ.get("STALL_TARGETS", "doorman,direct").split(",")
    cases = os.environ.get("STALL_CASES", "baseline,query,copy,pipeline,slowread").split(",")
    canaries = int(os.environ.get("STALL_CANARIES", "3"))
    binary = Path(os.environ.get("PG_DOORMAN_BIN", ROOT / ".build" / "release" / "pg_doorman"))
    work = make_tmp_dir("pgdm-stall-")
    pg = PgInstance.start(work / "pg", pgbench_init=False)
    dm = None
    try:
        pg.su_psql(f"CREATE TABLE stall_copy (t text); GRANT ALL ON stall_copy TO {USER}", db=DB)
        general = {"host": "127.0.0.1", "port": free_port(), "admin_username": "admin", "admin_password": "admin"}
        if os.environ.get("STALL_WORKERS"):
            general["worker_threads"] = int(os.environ["STALL_WORKERS"])
        cfg = {"general": general,
               "pools": {DB: {"server_host": pg.host, "server_port": pg.port, "pool_mode": "transaction",
                              "users": [{"username": USER, "password": pg.hashes[USER], "pool_size": 10}]}}}
        (work / "pg_doorman.yaml").write_text(to_yaml(cfg))
        if "doorman" in targets:
            dm = Doorman(work / "pg_doorman.yaml", general["port"], work / "doorman.log", args=("-l", "info"),
                         binary=binary)
            dm.wait_ready()
        print(f"pooler: {binary}  canaries: {canaries}  scale: {SCALE}")
        use_perf = os.environ.get("STALL_PERF") == "1"
        print(f"{'target':8} {'case':9} {'seconds':>7} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
              + (f" {'hold ms':>8}" if use_perf else ""))
        for target in targets:
            host, port = ("127.0.0.1", general["port"]) if target == "doorman" else (pg.host, pg.port)
            for case in cases:
                pg.su_psql("TRUNCATE stall_copy", db=DB)
                sampled = dm.pid if use_perf and dm and target == "doorman" else None
                r = run_case(case, host, port, canaries, sampled, work / "perf.data")
                print(f"{target:8} {case:9} {r['seconds']:7.1f} {r['n']:6d} {r.get('p50', 0):8.2f} "
                      f"{r.get('p99', 0):8.2f} {r.get('max', 0):8.2f}"
                      + (f" {r['busy']:8.1f}" if 'busy' in r else ""), flush=True)
    finally:
        if dm:
            dm.stop()
        pg.stop()
        rmtree_quiet(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
