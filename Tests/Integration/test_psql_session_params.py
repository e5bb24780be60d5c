"""psql's session parameters, straight to PostgreSQL and through the pooler in transaction mode.

libpq puts PGTZ / PGDATESTYLE / PGOPTIONS / PGCLIENTENCODING / PGAPPNAME in the startup packet. Each test
runs psql directly first (the reference, checked against the expected value), then through the pooler,
and compares the two outputs. XFAIL lists what is known to differ, with its issue (empty since #18): such
tests are strict and only absorb a SessionDiffers; a fixed one XPASSes, which fails the run until it is
removed. Companion of test_driver_transcripts.py.
"""
from __future__ import annotations

import difflib
import os
import subprocess

import pytest

XFAIL: dict[str, str] = {}

USER, PASSWORD = "example_user_scram", "scrampass"
TS = "SELECT '2024-03-01 12:34:56+00'::timestamptz::text"

pytestmark = [pytest.mark.timeout(120)]


class SessionDiffers(AssertionError):
    """The pooled psql output is not the direct one (the only failure XFAIL absorbs)."""


def case(name: str):
    """Mark a test with its XFAIL entry, if any."""
    reason = XFAIL.get(name)
    if reason is None:
        return lambda f: f
    return pytest.mark.xfail(strict=True, raises=SessionDiffers, reason=reason)


def _env(host: str, port: int, extra: dict[str, str]) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items()
         if k not in ("PGTZ", "PGDATESTYLE", "PGOPTIONS", "PGCLIENTENCODING", "PGAPPNAME", "PGSERVICE", "TZ")}
    e.update({"PGHOST": host, "PGPORT": str(port), "PGUSER": USER, "PGPASSWORD": PASSWORD,
              "PGDATABASE": "example_db", "PGPASSFILE": "/dev/null", "PGCONNECT_TIMEOUT": "10"})
    e.update(extra)
    return e


def run_psql(host: str, port: int, extra_env: dict[str, str], commands: list[str], timeout: float = 30) -> bytes:
    """psql -X -At with one -c per command; returns raw stdout (bytes: the encoding test needs them)."""
    args = ["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1"]
    for c in commands:
        args += ["-c", c]
    cp = subprocess.run(args, env=_env(host, port, extra_env), capture_output=True, timeout=timeout,
                        stdin=subprocess.DEVNULL)
    assert cp.returncode == 0, f"psql rc={cp.returncode} port={port}: {cp.stderr.decode(errors='replace')}"
    return cp.stdout


def compare(direct: bytes, pooled: bytes) -> None:
    if direct != pooled:
        a = direct.decode("latin-1").splitlines()
        b = pooled.decode("latin-1").splitlines()
        diff = "\n".join(difflib.unified_diff(a, b, "direct", "pooled", lineterm=""))
        raise SessionDiffers(f"pooled psql output differs from direct\n{diff}\n(raw: {direct!r} vs {pooled!r})")


def check_param(pg, dm, extra_env: dict[str, str], commands: list[str], expected: bytes) -> None:
    direct = run_psql(pg.host, pg.port, extra_env, commands)
    assert direct == expected, f"direct run: {direct!r}, expected {expected!r}"  # the reference itself
    compare(direct, run_psql(dm.host, dm.port, extra_env, commands))


@pytest.fixture
def pooled(doorman, doorman_config):
    return doorman(doorman_config(pool_mode="transaction", pool_size=2))


@case("pgtz")
def test_pgtz(pg, pooled):
    check_param(pg, pooled, {"PGTZ": "Asia/Tokyo"}, ["SHOW TimeZone", TS],
                b"Asia/Tokyo\n2024-03-01 21:34:56+09\n")


@case("pgdatestyle")
def test_pgdatestyle(pg, pooled):
    check_param(pg, pooled, {"PGDATESTYLE": "German, DMY"}, ["SHOW DateStyle", "SELECT '2024-03-01'::date::text"],
                b"German, DMY\n01.03.2024\n")


@case("pgoptions_search_path")
def test_pgoptions_search_path(pg, pooled):
    check_param(pg, pooled, {"PGOPTIONS": "-c search_path=transcript_s,public"}, ["SHOW search_path"],
                b"transcript_s,public\n")


@case("pgclientencoding_latin1")
def test_pgclientencoding_latin1(pg, pooled):
    check_param(pg, pooled, {"PGCLIENTENCODING": "LATIN1"},
                ["SHOW client_encoding", "SELECT 'caf' || chr(233) || ' ' || chr(241)"],
                b"LATIN1\ncaf\xe9 \xf1\n")


@case("application_name")
def test_application_name(pg, pooled):
    check_param(pg, pooled, {"PGAPPNAME": "psql_session_params"},
                ["SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()",
                 "SHOW application_name"],
                b"psql_session_params\npsql_session_params\n")


# --------------------------------------------------------------------------- two clients, one server

ROUNDS = 15
CLIENT_TZS = ("Asia/Tokyo", "America/New_York")


def alternate(host: str, port: int, use_set: bool) -> dict[str, list[str]]:
    """Two psql clients at once, each with its own TimeZone (PGTZ at startup, or SET first), each
    running ROUNDS short transactions `SHOW TimeZone` with a pause between; returns the values each saw."""
    procs = {}
    for tz in CLIENT_TZS:
        script = (f"SET TimeZone = '{tz}';\n" if use_set else "") + \
            "SHOW TimeZone;\nSELECT pg_sleep(0.02);\n" * ROUNDS
        env = {} if use_set else {"PGTZ": tz}
        p = subprocess.Popen(["psql", "-X", "-At", "-q", "-v", "ON_ERROR_STOP=1"], env=_env(host, port, env),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        procs[tz] = (p, script)
    seen = {}
    try:
        for tz, (p, script) in procs.items():
            p.stdin.write(script.encode())
            p.stdin.close()
        for tz, (p, _) in procs.items():
            out = p.stdout.read()
            err = p.stderr.read()
            rc = p.wait(timeout=60)
            assert rc == 0, f"psql ({tz}) rc={rc}: {err.decode(errors='replace')}"
            seen[tz] = [line for line in out.decode().splitlines() if line]
    finally:
        for p, _ in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    return seen


def check_alternating(pg, dm, use_set: bool) -> None:
    direct = alternate(pg.host, pg.port, use_set)
    assert direct == {tz: [tz] * ROUNDS for tz in CLIENT_TZS}, direct
    pooled = alternate(dm.host, dm.port, use_set)
    if pooled != direct:
        lines = [f"{tz}: direct saw {sorted(set(direct[tz]))} x{len(direct[tz])}, "
                 f"pooled saw {sorted(set(pooled.get(tz, [])))} x{len(pooled.get(tz, []))}" for tz in CLIENT_TZS]
        raise SessionDiffers("two clients on one server do not keep their own TimeZone\n" + "\n".join(lines))


@case("alternating_pgtz_pool_size_1")
def test_alternating_pgtz_pool_size_1(pg, doorman, doorman_config):
    dm = doorman(doorman_config(pool_mode="transaction", pool_size=1))
    check_alternating(pg, dm, use_set=False)


@case("alternating_set_pool_size_1")
def test_alternating_set_pool_size_1(pg, doorman, doorman_config):
    dm = doorman(doorman_config(pool_mode="transaction", pool_size=1))
    check_alternating(pg, dm, use_set=True)


# --------------------------------------------------------------------------- sync_server_parameters

def test_sync_server_parameters_false_keeps_the_pools_values(pg, doorman, doorman_config):
    """The reference pooler's default: servers keep the pool's values, the client is told its own back."""
    from wire import Wire
    cfg = doorman_config(pool_size=1, sync_server_parameters=False)
    dm = doorman(cfg)
    direct = Wire.connect(pg.host, pg.port, USER, PASSWORD)
    server_tz = direct.scalar("SHOW TimeZone")
    direct.close()
    w = Wire.connect(dm.host, dm.port, USER, PASSWORD, params={"TimeZone": "Asia/Tokyo"})
    assert w.params.get("TimeZone") == "Asia/Tokyo"
    assert w.scalar("SHOW TimeZone") == server_tz
    w.close()


def test_bad_startup_parameter_gets_postgresqls_error(pg, doorman, doorman_config):
    from wire import Wire, WireError
    dm = doorman(doorman_config(pool_size=1))
    for params in ({"TimeZone": "Mars/Olympus_Mons"}, {"no_such_parameter": "1"}):
        errors = []
        for host, port in ((pg.host, pg.port), (dm.host, dm.port)):
            try:
                Wire.connect(host, port, USER, PASSWORD, params=params).close()
                errors.append(None)
            except WireError as e:
                errors.append(str(e))
        assert errors[0] is not None and errors[1] is not None, errors
        # the same SQLSTATE and message as PostgreSQL's own
        direct, pooled = (eval(e.split("startup error: ", 1)[1]) for e in errors)
        assert (pooled.get("C"), pooled.get("M")) == (direct.get("C"), direct.get("M")), (direct, pooled)
    # and a good client still gets in
    w = Wire.connect(dm.host, dm.port, USER, PASSWORD, params={"TimeZone": "Asia/Tokyo"})
    assert w.params["TimeZone"] == "Asia/Tokyo" and w.scalar("SHOW TimeZone") == "Asia/Tokyo"
    w.close()


def test_cleanup_resets_what_the_client_left_and_keeps_the_poolers_statements(pg, doorman, doorman_config):
    """A client's SET is reset before the server's next user (RESET ALL), but the pooler's own
    prepared statements stay on the backend (DISCARD ALL used to drop them)."""
    from wire import Wire, bind, execute, parse, sync
    dm = doorman(doorman_config(pool_size=1, prepared_statements_cache_size=100))
    a = Wire.connect(dm.host, dm.port, USER, PASSWORD)
    a.send(parse("s1", "SELECT 41 + 1"), bind("", "s1"), execute(), sync())
    a.read_until_ready()
    b = Wire.connect(dm.host, dm.port, USER, PASSWORD)
    default_work_mem = b.scalar("SHOW work_mem")
    b.scalar("SET work_mem = '8MB'")
    assert a.scalar("SHOW work_mem") == default_work_mem, "another client's SET leaked"
    kept = a.scalar("SELECT count(*) FROM pg_prepared_statements WHERE name ILIKE 'doorman%'")
    assert int(kept) >= 1, "the pooler's prepared statement was dropped by the cleanup"
    a.close()
    b.close()


def test_show_clients_lists_each_clients_own_parameters(doorman, doorman_config):
    from wire import Wire
    dm = doorman(doorman_config(pool_size=1))
    w = Wire.connect(dm.host, dm.port, USER, PASSWORD, params={"TimeZone": "Asia/Tokyo", "statement_timeout": "5s"})
    w.scalar("SELECT 1")
    env = {"PGHOST": dm.host, "PGPORT": str(dm.port), "PGUSER": "admin", "PGPASSWORD": "admin",
           "PGDATABASE": "pgdoorman"}
    out = subprocess.run(["psql", "-X", "-At", "-F", "|", "-c", "SHOW CLIENTS"], env={**os.environ, **env},
                         capture_output=True, text=True, timeout=20).stdout
    assert "TimeZone=Asia/Tokyo, statement_timeout=5s" in out, out
    w.close()


@pytest.mark.parametrize("tracked", [True, False])
def test_track_extra_parameters_carries_a_set_across_servers(doorman, doorman_config, tracked):
    from wire import Wire
    cfg = doorman_config(pool_size=1, track_extra_parameters=["search_path"] if tracked else [])
    dm = doorman(cfg)
    a = Wire.connect(dm.host, dm.port, USER, PASSWORD)
    b = Wire.connect(dm.host, dm.port, USER, PASSWORD)
    default = b.scalar("SHOW search_path")
    a.scalar("SET search_path TO pg_catalog, public")
    assert b.scalar("SHOW search_path") == default, "a client's SET leaked to another client"
    expected = "pg_catalog, public" if tracked else default
    assert a.scalar("SHOW search_path") == expected
    a.close()
    b.close()


def test_show_startup_parameters(doorman, doorman_config):
    cfg = doorman_config(pool_size=1)
    cfg["general"]["startup_parameters"] = {"statement_timeout": "30s"}
    cfg["pools"]["example_db"]["startup_parameters"] = {"work_mem": "8MB"}
    dm = doorman(cfg)
    env = {"PGHOST": dm.host, "PGPORT": str(dm.port), "PGUSER": "admin", "PGPASSWORD": "admin",
           "PGDATABASE": "pgdoorman"}
    out = subprocess.run(["psql", "-X", "-At", "-F", "|", "-c", "SHOW STARTUP_PARAMETERS"], env={**os.environ, **env},
                         capture_output=True, text=True, timeout=20).stdout
    rows = {tuple(line.split("|")) for line in out.splitlines() if line}
    assert (USER, "example_db", "statement_timeout", "30s", "general", "applied") in rows, out
    assert (USER, "example_db", "work_mem", "8MB", "pool", "applied") in rows, out
    # and the servers really run with them, whatever the client asks at startup
    from wire import Wire
    w = Wire.connect(dm.host, dm.port, USER, PASSWORD, params={"work_mem": "16MB"})
    assert w.scalar("SHOW work_mem") == "8MB"
    w.close()
