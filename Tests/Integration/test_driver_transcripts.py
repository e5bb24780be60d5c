"""Cross-driver session transcripts: does every client keep its own session through the pooler?

The same small program, written for each real driver (Tests/Integration/drivers/<driver>/), runs once
straight against PostgreSQL and once through pg_doorman in transaction mode with pool_size 2 (its
concurrency section runs 4 workers), and the two transcripts are compared section by section:

- startup      TimeZone=Asia/Tokyo, DateStyle='German, DMY', application_name=transcript_<driver>,
               statement_timeout=1500, extra_float_digits=0 in the startup packet, as far as the driver can
               send them; SHOW of each, pg_stat_activity.application_name, formatted timestamptz/interval/float8
- set          SET TimeZone outside a transaction, then transactions (every other one while a second client
               holds a server) showing TimeZone and a timestamptz; SET IntervalStyle, an interval
- encoding     client_encoding=LATIN1: the bytes the driver received for 'café ñ' and its decoded text
               (`skipped` for drivers that cannot use another client_encoding)
- timeout      statement_timeout=1500 at startup, SELECT pg_sleep(3): SQLSTATE, then SELECT 1
- prepared     the driver's own prepared statement executed 10 times in separate transactions
- concurrency  4 connections with their own TimeZone at startup, 20 transactions each: values seen

Transcript format: `== <section>` headers, then one `label: value` per line; `== end` closes a run.
The programs read PGT_HOST PGT_PORT PGT_USER PGT_PASSWORD PGT_DB.

XFAIL lists (driver, section) pairs known to differ, with the issue that tracks each (empty since #18
made every client keep its own session). Entries are strict and only absorb a transcript difference
(SectionDiffers): a crash, a build failure or a broken direct run still fails, and a fixed entry XPASSes,
which fails the run until it is removed.
"""
from __future__ import annotations

import concurrent.futures
import difflib
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness import Doorman, free_port, make_tmp_dir, rmtree_quiet, to_yaml

# (driver, section) pairs whose pooled transcript differs from the direct one, with the issue tracking it.
XFAIL: dict[tuple[str, str], str] = {}

DRIVERS = ["psycopg", "asyncpg", "pgx", "node-pg", "ruby-pg", "pgjdbc"]
SECTIONS = ["startup", "set", "encoding", "timeout", "prepared", "concurrency"]
HERE = Path(__file__).resolve().parent
SRC = HERE / "drivers"
USER, PASSWORD = "example_user_scram", "scrampass"
POOL_SIZE = 2
RUN_TIMEOUT = 90.0     # per program run; the programs stop themselves after 50 s
BUILD_TIMEOUT = 240.0  # a cold `go build` of pgx on a loaded 2-core machine

pytestmark = [pytest.mark.timeout(420)]


class SectionDiffers(AssertionError):
    """The pooled transcript of a section is not the direct one (the only failure XFAIL absorbs)."""


def _xfail(driver: str, section: str):
    reason = XFAIL.get((driver, section))
    if reason is None:
        return []
    return [pytest.mark.xfail(strict=True, raises=SectionDiffers, reason=reason)]


CASES = [pytest.param(d, s, id=f"{d}-{s}", marks=_xfail(d, s)) for d in DRIVERS for s in SECTIONS]


# --------------------------------------------------------------------------- toolchains and builds

class Unavailable(Exception):
    """The driver's toolchain is not installed: the driver's tests skip."""


def _which(*tools: str) -> None:
    for t in tools:
        if shutil.which(t) is None:
            raise Unavailable(f"`{t}` not found (scripts/lib/driver-deps.sh installs it)")


def _check(cmd: list[str], what: str, env: dict[str, str] | None = None) -> None:
    try:
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Unavailable(f"{what}: {e}") from e
    if cp.returncode != 0:
        raise Unavailable(f"{what} (scripts/lib/driver-deps.sh installs it): {cp.stderr.strip()[-300:]}")


def _build_cmd(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
    """A build step of a present toolchain: any failure is a test failure, not a skip."""
    cp = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT, env=env, cwd=cwd,
                        stdin=subprocess.DEVNULL)
    if cp.returncode != 0:
        raise RuntimeError(f"build failed: {' '.join(cmd)}\n{cp.stdout[-3000:]}\n{cp.stderr[-3000:]}")


def _node_path() -> str:
    parts = [os.environ.get("NODE_PATH", ""),
             str(Path(os.environ.get("DRIVER_DEPS_NODE_DIR", "/var/cache/pg_doorman-node")) / "usr/share/nodejs"),
             "/usr/share/nodejs", "/usr/lib/nodejs"]
    return ":".join(p for p in parts if p)


@dataclass
class Program:
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)


def _prepare(driver: str, out: Path) -> Program:
    """Check the toolchain (Unavailable when absent) and build the program into `out`."""
    py = sys.executable
    if driver in ("psycopg", "asyncpg"):
        _check([py, "-c", f"import {driver}"], f"python module {driver} missing")
        return Program([py, str(SRC / driver / "transcript.py")])
    if driver == "pgx":
        _which("go")
        gopath = os.environ.get("PGX_GOPATH", "/usr/share/gocode")
        if not (Path(gopath) / "src/github.com/jackc/pgx/v4").is_dir():
            raise Unavailable(f"pgx v4 sources not in {gopath} (apt golang-github-jackc-pgx-v4-dev)")
        gocache = os.environ.get("PGDM_GOCACHE", "/tmp/pg_doorman-gocache")
        env = {**os.environ, "GO111MODULE": "off", "GOPATH": gopath, "GOCACHE": gocache, "GOFLAGS": "",
               "CGO_ENABLED": "0", "HOME": os.environ.get("HOME", str(out))}
        binary = out / "pgx-transcript"
        _build_cmd(["go", "build", "-o", str(binary), "."], env=env, cwd=SRC / "pgx")
        return Program([str(binary)])
    if driver == "node-pg":
        _which("node")
        env = {**os.environ, "NODE_PATH": _node_path()}
        _check(["node", "-e", "require('pg')"], "node module pg missing", env=env)
        return Program(["node", str(SRC / "node-pg" / "transcript.js")], {"NODE_PATH": env["NODE_PATH"]})
    if driver == "ruby-pg":
        _which("ruby")
        _check(["ruby", "-e", "require 'pg'"], "ruby gem pg missing")
        return Program(["ruby", str(SRC / "ruby-pg" / "transcript.rb")])
    if driver == "pgjdbc":
        _which("java", "javac")
        jar = Path(os.environ.get("PGJDBC_JAR", "/usr/share/java/postgresql.jar"))
        if not jar.is_file():
            raise Unavailable(f"{jar} missing (apt libpostgresql-jdbc-java)")
        classes = out / "classes"
        _build_cmd(["javac", "-nowarn", "-encoding", "UTF-8", "-cp", str(jar), "-d", str(classes),
                    str(SRC / "pgjdbc" / "Transcript.java")])
        return Program(["java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Dfile.encoding=UTF-8",
                        "-cp", f"{classes}:{jar}", "Transcript"])
    raise ValueError(driver)


class Builds:
    """Session-wide: each driver's program is built once, on first use (thread-safe)."""

    def __init__(self, root: Path):
        self.root = root
        self._lock = threading.Lock()
        self._futures: dict[str, concurrent.futures.Future] = {}
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(DRIVERS))

    def get(self, driver: str) -> concurrent.futures.Future:
        with self._lock:
            if driver not in self._futures:
                d = self.root / driver
                d.mkdir(parents=True, exist_ok=True)
                self._futures[driver] = self._pool.submit(_prepare, driver, d)
            return self._futures[driver]

    def close(self) -> None:
        self._pool.shutdown(wait=True)


@pytest.fixture(scope="session")
def driver_builds():
    root = make_tmp_dir("pgdm-drv-")
    b = Builds(root)
    yield b
    b.close()
    rmtree_quiet(root)


# --------------------------------------------------------------------------- runs

@dataclass
class Run:
    rc: int | None
    stdout: str
    stderr: str
    sections: dict[str, list[str]]
    ended: bool

    def describe(self) -> str:
        return f"rc={self.rc}\n--- stdout ---\n{self.stdout[-4000:]}\n--- stderr ---\n{self.stderr[-4000:]}"


def parse(text: str) -> tuple[dict[str, list[str]], bool]:
    sections: dict[str, list[str]] = {}
    cur: list[str] | None = None
    ended = False
    for line in text.splitlines():
        if line.startswith("== "):
            name = line[3:].strip()
            if name == "end":
                ended = True
                cur = None
                continue
            cur = sections.setdefault(name, [])
            continue
        if cur is not None:
            cur.append(line.rstrip())
    return sections, ended


def run_program(prog: Program, host: str, port: int) -> Run:
    env = {**os.environ, **prog.env, "PGT_HOST": host, "PGT_PORT": str(port), "PGT_USER": USER,
           "PGT_PASSWORD": PASSWORD, "PGT_DB": "example_db", "PYTHONIOENCODING": "utf-8",
           "PGPASSFILE": "/dev/null", "PGCONNECT_TIMEOUT": "10", "LC_ALL": "C.UTF-8"}
    for var in ("PGTZ", "PGDATESTYLE", "PGOPTIONS", "PGCLIENTENCODING", "PGAPPNAME", "PGSERVICE", "TZ"):
        env.pop(var, None)
    try:
        cp = subprocess.run(prog.cmd, capture_output=True, timeout=RUN_TIMEOUT, env=env, stdin=subprocess.DEVNULL)
        rc, out, err = cp.returncode, cp.stdout, cp.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = None, e.stdout or b"", (e.stderr or b"") + f"\n[killed after {RUN_TIMEOUT}s]".encode()
    text = out.decode("utf-8", errors="replace")
    sections, ended = parse(text)
    return Run(rc, text, err.decode("utf-8", errors="replace"), sections, ended)


@dataclass
class DriverResult:
    skip: str | None = None
    error: str | None = None
    direct: Run | None = None
    pooled: Run | None = None
    doorman: Doorman | None = None


def _pooler_config(pg, port: int) -> str:
    return to_yaml({
        "general": {"host": "127.0.0.1", "port": port, "admin_username": "admin", "admin_password": "admin"},
        "pools": {"example_db": {
            "server_host": pg.host, "server_port": pg.port, "pool_mode": "transaction",
            "users": [{"username": USER, "password": pg.hashes[USER], "pool_size": POOL_SIZE}],
        }},
    })


@pytest.fixture(scope="module")
def transcripts(pg, driver_builds, doorman_binary, request):
    """Every selected driver: build, start its own pooler, run direct and pooled — all drivers in parallel."""
    wanted = sorted({it.callspec.params["driver"] for it in request.session.items
                     if it.module is request.module and hasattr(it, "callspec") and "driver" in it.callspec.params})
    root = make_tmp_dir("pgdm-drvrun-")
    results: dict[str, DriverResult] = {d: DriverResult() for d in wanted}
    started: list[Doorman] = []

    def one_driver(driver: str) -> None:
        r = results[driver]
        try:
            prog = driver_builds.get(driver).result(timeout=BUILD_TIMEOUT + 30)
        except Unavailable as e:
            r.skip = str(e)
            return
        except Exception as e:  # noqa: BLE001
            r.error = f"{type(e).__name__}: {e}"
            return
        d = root / driver
        d.mkdir()
        port = free_port()
        cfg = d / "pg_doorman.yaml"
        cfg.write_text(_pooler_config(pg, port))
        dm = Doorman(cfg, port=port, log_path=d / "pg_doorman.log", args=("-l", "info"))
        started.append(dm)
        r.doorman = dm
        try:
            dm.wait_ready(timeout=15)
        except RuntimeError as e:
            r.error = str(e)
            return
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            fd = ex.submit(run_program, prog, pg.host, pg.port)
            fp = ex.submit(run_program, prog, dm.host, dm.port)
            r.direct, r.pooled = fd.result(), fp.result()

    try:
        with concurrent.futures.ThreadPoolExecutor(max(1, len(wanted))) as ex:
            for f in [ex.submit(one_driver, d) for d in wanted]:
                f.result()
        yield results
    finally:
        for dm in started:
            dm.stop()
        rmtree_quiet(root)


# --------------------------------------------------------------------------- the tests

@pytest.mark.parametrize("driver,section", CASES)
def test_transcript(transcripts, driver, section, request):
    r = transcripts[driver]
    if r.skip:
        pytest.skip(f"{driver}: {r.skip}")
    if r.doorman is not None:
        request.node._doormen = [r.doorman]  # conftest attaches the pooler's log to a failure
    assert r.error is None, f"{driver}: {r.error}"
    assert r.direct is not None and r.pooled is not None
    direct, pooled = r.direct, r.pooled

    # The direct run is the reference: it must be complete and clean, or the comparison means nothing.
    assert direct.ended and direct.rc == 0, f"{driver}: the direct run did not finish\n{direct.describe()}"
    assert section in direct.sections, f"{driver}: no `{section}` section in the direct run\n{direct.describe()}"
    want = direct.sections[section]
    bad = [line for line in want if line.startswith("error:")]
    assert not bad, f"{driver} {section}: the direct run failed: {bad}\n{direct.describe()}"
    assert want, f"{driver} {section}: empty section in the direct run"

    assert section in pooled.sections, (
        f"{driver}: no `{section}` section in the pooled run (crashed or hung?)\n{pooled.describe()}")
    got = pooled.sections[section]
    if want == ["skipped"] and got == ["skipped"]:
        pytest.skip(f"{driver} cannot run the {section} section")
    if got != want:
        diff = "\n".join(difflib.unified_diff(want, got, "direct", "pooled", lineterm="", n=2))
        raise SectionDiffers(f"{driver} {section}: pooled transcript differs from direct\n{diff}")
