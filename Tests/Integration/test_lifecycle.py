"""Process lifecycle (issue 6) with the real binary: CLI flags and env vars, log formats, daemon mode,
signals (SIGHUP reload, SIGTERM, SIGINT, SIGUSR2 binary upgrade) and the admin SHUTDOWN/UPGRADE commands.
Contract: the seed's "Command Line Options" / "Signal Handling" sections and runtime-spec.md §4."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import psycopg
import pytest

from harness import (admin_rows, alive, doorman_bin, free_port, pgbench, psql, run_doorman_cli, to_yaml,
                     wait_for_port, wait_until)

MD5_USER, MD5_PW = "example_user_md5", "md5pass"
ANSI = re.compile(r"\x1b\[")


# ----------------------------------------------------------------------------- helpers

def query(dm_or_port, sql: str = "SELECT 1", user=MD5_USER, pw=MD5_PW, db="example_db", timeout=20):
    port = dm_or_port if isinstance(dm_or_port, int) else dm_or_port.port
    env = {"PGHOST": "127.0.0.1", "PGPORT": str(port), "PGUSER": user, "PGPASSWORD": pw, "PGDATABASE": db}
    return psql(["-At", "-c", sql], env=env, timeout=timeout)


def pool_size_of(port: int) -> str:
    rows = [r for r in admin_rows(port, "SHOW DATABASES") if r["name"] == "example_db"
            and r["force_user"] == MD5_USER]
    assert rows, "example_db missing from SHOW DATABASES"
    return rows[0]["pool_size"]


def new_pid_from_log(log: str, old_pid: int) -> int | None:
    m = re.search(r"new process pid (\d+) is serving", log)
    if m:
        return int(m.group(1))
    pids = [int(p) for p in re.findall(r"started, .*pid (\d+)", log)]
    pids = [p for p in pids if p != old_pid]
    return pids[-1] if pids else None


def write_config(directory: Path, cfg: dict, name: str = "pg_doorman.yaml") -> Path:
    p = directory / name
    p.write_text(to_yaml(cfg))
    return p


BROKEN = """general:
  host: "127.0.0.1"
  port: 99999
  admin_username: "admin"
  admin_password: "admin"
pools:
  example_db:
    server_host: "127.0.0.1"
    server_port: 5432
    pool_mode: "weird"
    users:
      - username: "u"
        password: "p"
        pool_size: -1
"""


def start_plain(cfg_path: Path, log_path: Path, args=(), env=None, cwd=None) -> subprocess.Popen:
    e = dict(os.environ)
    for k in ("LOG_LEVEL", "LOG_FORMAT", "NO_COLOR", "DAEMON", "CONFIG_FILE"):
        e.pop(k, None)
    e.update(env or {})
    argv = [str(doorman_bin()), *([str(cfg_path)] if cfg_path else []), *args]
    return subprocess.Popen(argv, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=e, cwd=cwd, start_new_session=True)


def stop_proc(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


# ----------------------------------------------------------------------------- CLI

def test_help_lists_every_flag_and_env_var(doorman_binary):
    rc, out, err = run_doorman_cli(["--help"])
    assert rc == 0, err
    text = out + err
    for needle in ("-l, --log-level", "-F, --log-format", "-n, --no-color", "-d, --daemon", "-t, --test-config",
                   "-h, --help", "-V, --version", "CONFIG_FILE", "LOG_LEVEL", "LOG_FORMAT", "NO_COLOR", "DAEMON",
                   "text", "structured", "debug", "generate"):
        assert needle in text, f"--help lacks {needle!r}:\n{text}"
    assert "inherit-fd" not in text, "the upgrade-internal --inherit-fd flag is hidden"


def test_version_flag(doorman_binary):
    for flag in ("-V", "--version"):
        rc, out, err = run_doorman_cli([flag])
        assert rc == 0 and re.fullmatch(r"pg_doorman \d+\.\d+\.\d+\S*\n", out), (rc, out, err)


def test_test_config_good_file(doorman_config, tmp_dir):
    cfg = write_config(tmp_dir, doorman_config())
    for flag in ("-t", "--test-config"):
        rc, out, err = run_doorman_cli([str(cfg), flag])
        assert rc == 0, err
        lines = out.splitlines()
        assert len(lines) == 2, out
        assert lines[0] == f"pg_doorman: the configuration file {cfg} syntax is ok", out
        assert lines[1] == f"pg_doorman: configuration file {cfg} test is successful", out


def test_test_config_broken_file_lists_every_problem(tmp_dir):
    cfg = tmp_dir / "bad.yaml"
    cfg.write_text(BROKEN)
    rc, out, err = run_doorman_cli(["-t", str(cfg)])
    assert rc == 78, (rc, out, err)
    assert "port must be between 1 and 65535" in err, err
    assert "unknown pool_mode 'weird'" in err, err
    assert "pool_size cannot be negative" in err, err
    assert "test failed (3 errors)" in err, err
    # starting with the broken file fails the same way
    rc, out, err = run_doorman_cli([str(cfg)])
    assert rc == 78, (rc, out, err)
    assert "unknown pool_mode 'weird'" in err and "pool_size cannot be negative" in err, err


def test_config_file_env_var(doorman_config, tmp_dir):
    cfg = write_config(tmp_dir, doorman_config(), name="from_env.yaml")
    rc, out, err = run_doorman_cli(["-t"], env={"CONFIG_FILE": str(cfg)})
    assert rc == 0 and str(cfg) in out, (rc, out, err)
    # and the server itself starts from it
    port = doorman_config()["general"]["port"]
    cfg = write_config(tmp_dir, doorman_config(port=port), name="from_env.yaml")
    p = start_plain(None, tmp_dir / "log", env={"CONFIG_FILE": str(cfg)})
    try:
        assert wait_for_port(port, proc=p), (tmp_dir / "log").read_text()
        rc, out, err = query(port)
        assert rc == 0 and out.strip() == "1", err
    finally:
        stop_proc(p)


def test_default_config_file_is_pg_doorman_toml_in_cwd(tmp_dir):
    rc, out, err = run_doorman_cli([], cwd=str(tmp_dir), timeout=10)
    assert rc != 0 and "pg_doorman.toml" in err, (rc, out, err)


@pytest.mark.parametrize("how", ["flag", "env"])
def test_log_level(doorman, doorman_config, how):
    args = ("-l", "debug") if how == "flag" else ()
    env = {"LOG_LEVEL": "debug"} if how == "env" else None
    dm = doorman(doorman_config(), args=args, env=env)
    assert query(dm)[0] == 0
    assert dm.wait_for_log(r"\bDEBUG\b", 5), dm.log()
    quiet = doorman(doorman_config(), args=("-l", "warn"))
    assert query(quiet)[0] == 0
    time.sleep(0.3)
    log = quiet.log()
    assert not re.search(r"\b(DEBUG|INFO)\b", log), log


@pytest.mark.parametrize("how", ["-F", "--log-format", "env"])
def test_structured_log_lines_are_json(doorman, doorman_config, how):
    args = ("-l", "debug") + (("-F" if how == "-F" else "--log-format", "structured") if how != "env" else ())
    env = {"LOG_FORMAT": "structured"} if how == "env" else None
    dm = doorman(doorman_config(log_client_connections=True, log_client_disconnections=True), args=args, env=env)
    assert query(dm)[0] == 0
    dm.signal(signal.SIGHUP)
    assert dm.wait_for_log("config unchanged", 5)
    dm.stop()
    lines = [line for line in dm.log().splitlines() if line.strip()]
    assert len(lines) >= 4, lines
    for line in lines:
        obj = json.loads(line)  # every line, including config warnings printed before logging starts
        assert {"timestamp", "level", "message"} <= set(obj), obj
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", obj["timestamp"]), obj
    msgs = " | ".join(json.loads(line)["message"] for line in lines)
    assert "connected" in msgs and "disconnected" in msgs, msgs


def test_text_log_format(doorman, doorman_config):
    dm = doorman(doorman_config(), args=("-l", "info", "-F", "text"))
    dm.stop()
    lines = [line for line in dm.log().splitlines() if line.strip()]
    assert lines
    for line in lines:
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z +(ERROR|WARN|INFO|DEBUG|TRACE) ", line), line
    dbg = doorman(doorman_config(), args=("-l", "info", "-F", "debug"))
    dbg.stop()
    assert re.search(r"INFO \w+\.swift:\d+ ", dbg.log()), dbg.log()


def test_bad_log_format_rejected(doorman_config, tmp_dir):
    cfg = write_config(tmp_dir, doorman_config())
    rc, out, err = run_doorman_cli([str(cfg), "-F", "xml"], timeout=10)
    assert rc != 0 and "xml" in err, (rc, out, err)
    rc, out, err = run_doorman_cli([str(cfg), "-l", "loud"], timeout=10)
    assert rc != 0 and "loud" in err, (rc, out, err)


def test_no_color(doorman_config, tmp_dir):
    """Colour needs a terminal: run under a pty and check -n / NO_COLOR remove the escapes."""
    import pty

    def run_tty(args, env):
        port = free_port()
        cfg = write_config(tmp_dir, doorman_config(port=port), name=f"c{port}.yaml")
        master, slave = pty.openpty()
        e = dict(os.environ)
        for k in ("NO_COLOR", "LOG_FORMAT"):
            e.pop(k, None)
        e.update(env)
        p = subprocess.Popen([str(doorman_bin()), str(cfg), "-l", "info", *args], stdin=subprocess.DEVNULL,
                             stdout=slave, stderr=slave, env=e, start_new_session=True)
        os.close(slave)
        out = b""
        try:
            assert wait_for_port(port, proc=p)
            time.sleep(0.3)
        finally:
            stop_proc(p)
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        os.close(master)
        return out.decode(errors="replace")

    coloured = run_tty([], {})
    assert ANSI.search(coloured), f"a terminal gets colour: {coloured!r}"
    assert not ANSI.search(run_tty(["-n"], {}))
    assert not ANSI.search(run_tty(["--no-color"], {}))
    assert not ANSI.search(run_tty([], {"NO_COLOR": "1"}))


def test_no_color_without_tty(doorman, doorman_config):
    dm = doorman(doorman_config(), args=("-l", "debug"))
    assert query(dm)[0] == 0
    dm.stop()
    assert not ANSI.search(dm.log())


# ----------------------------------------------------------------------------- daemon

def _daemon_cfg(doorman_config, tmp_dir, **extra):
    pid_file = tmp_dir / "pg_doorman.pid"
    cfg = doorman_config(daemon_pid_file=str(pid_file), **extra)
    return write_config(tmp_dir, cfg), pid_file, cfg["general"]["port"]


def _read_pid(pid_file: Path) -> int:
    return int(pid_file.read_text().strip())


@pytest.mark.parametrize("how", ["-d", "--daemon", "DAEMON=1"])
def test_daemon_mode(doorman_config, tmp_dir, reap, how):
    cfg, pid_file, port = _daemon_cfg(doorman_config, tmp_dir)
    args = [str(cfg)] + ([how] if how.startswith("-") else [])
    env = {"DAEMON": "1"} if how == "DAEMON=1" else None
    t0 = time.monotonic()
    rc, out, err = run_doorman_cli(args, env=env, timeout=20)
    assert rc == 0, (rc, out, err)
    assert time.monotonic() - t0 < 10
    # the pid file was written before the parent exited, and names a live pooler
    assert pid_file.exists(), (out, err)
    pid = _read_pid(pid_file)
    reap.append(pid)
    assert alive(pid)
    assert "pg_doorman" in Path(f"/proc/{pid}/cmdline").read_text()
    assert str(pid) in out, out  # tells where it runs (and where logs go)
    assert "log" in (out + err).lower()
    rc, qout, qerr = query(port)
    assert rc == 0 and qout.strip() == "1", qerr
    # detached: own session
    assert os.getsid(pid) == pid
    # a second daemon on the same pid file refuses to start
    port2 = free_port()
    cfg2 = write_config(tmp_dir, doorman_config(port=port2, daemon_pid_file=str(pid_file)), name="second.yaml")
    rc2, out2, err2 = run_doorman_cli([str(cfg2), "-d"], timeout=20)
    assert rc2 != 0 and str(pid) in err2, (rc2, out2, err2)
    assert _read_pid(pid_file) == pid
    assert not wait_for_port(port2, timeout=0.5)
    # SIGTERM stops it and removes the pid file
    os.kill(pid, signal.SIGTERM)
    assert wait_until(lambda: not alive(pid), 5)
    assert wait_until(lambda: not pid_file.exists(), 2)


def test_daemon_stale_pid_file_is_replaced(doorman_config, tmp_dir, reap):
    cfg, pid_file, port = _daemon_cfg(doorman_config, tmp_dir)
    pid_file.write_text("999999\n")
    rc, out, err = run_doorman_cli([str(cfg), "-d"], timeout=20)
    assert rc == 0, (rc, out, err)
    pid = _read_pid(pid_file)
    reap.append(pid)
    assert pid != 999999 and alive(pid)


def test_daemon_binary_upgrade_rewrites_pid_file(doorman_config, tmp_dir, reap):
    cfg, pid_file, port = _daemon_cfg(doorman_config, tmp_dir, shutdown_timeout=5000)
    rc, out, err = run_doorman_cli([str(cfg), "-d"], timeout=20)
    assert rc == 0, (rc, out, err)
    old = _read_pid(pid_file)
    reap.append(old)
    os.kill(old, signal.SIGUSR2)
    assert wait_until(lambda: pid_file.exists() and _read_pid(pid_file) != old, 15), "pid file not rewritten"
    new = _read_pid(pid_file)
    reap.append(new)
    assert alive(new)
    assert wait_until(lambda: not alive(old), 10), "the old daemon did not exit"
    rc, qout, qerr = query(port)
    assert rc == 0 and qout.strip() == "1", qerr
    # and the new one still stops cleanly
    os.kill(new, signal.SIGTERM)
    assert wait_until(lambda: not alive(new), 5)
    assert wait_until(lambda: not pid_file.exists(), 2)


# ----------------------------------------------------------------------------- SIGHUP / RELOAD

def test_sighup_applies_pool_size(doorman, doorman_config):
    cfg = doorman_config(pool_size=3)
    dm = doorman(cfg)
    assert pool_size_of(dm.port) == "3"
    cfg["pools"]["example_db"]["users"][0]["pool_size"] = 9
    dm.config_path.write_text(to_yaml(cfg))
    dm.signal(signal.SIGHUP)
    assert wait_until(lambda: pool_size_of(dm.port) == "9", 5), dm.log()
    assert dm.wait_for_log(r"config changed: pools\.example_db\.users\[example_user_md5\]\.pool_size: 3 -> 9", 5), dm.log()
    assert query(dm)[0] == 0
    assert dm.alive()


def test_sighup_pool_change_keeps_connected_clients(doorman, doorman_config):
    cfg = doorman_config(pool_size=3)
    dm = doorman(cfg)
    with psycopg.connect(dm.dsn(MD5_USER, MD5_PW), autocommit=True) as kept:
        kept.execute("SELECT 1")
        cfg["pools"]["example_db"]["users"][0]["pool_size"] = 9
        dm.config_path.write_text(to_yaml(cfg))
        dm.signal(signal.SIGHUP)
        assert wait_until(lambda: pool_size_of(dm.port) == "9", 5), dm.log()
        assert kept.execute("SELECT 2").fetchone()[0] == 2


def test_sighup_broken_file_keeps_serving(doorman, doorman_config):
    cfg = doorman_config(pool_size=3)
    dm = doorman(cfg)
    dm.config_path.write_text(BROKEN)
    dm.signal(signal.SIGHUP)
    assert dm.wait_for_log(r"pool_size cannot be negative", 5), dm.log()
    log = dm.log()
    assert "unknown pool_mode 'weird'" in log and "port must be between" in log, log
    assert dm.alive()
    assert query(dm)[0] == 0
    assert pool_size_of(dm.port) == "3"


def test_sighup_unchanged_file(doorman, doorman_config):
    dm = doorman(doorman_config())
    dm.signal(signal.SIGHUP)
    assert dm.wait_for_log("config unchanged", 5), dm.log()
    assert query(dm)[0] == 0


def test_sighup_logs_what_changed(doorman, doorman_config):
    cfg = doorman_config(pool_size=3)
    dm = doorman(cfg)
    cfg["pools"]["example_db"]["users"][0]["pool_size"] = 4
    dm.config_path.write_text(to_yaml(cfg))
    dm.signal(signal.SIGHUP)
    assert dm.wait_for_log(r"config changed: .*pool_size: 3 -> 4", 5), dm.log()
    assert "config unchanged" not in dm.log()
    # secrets are never printed
    cfg["general"]["admin_password"] = "s3cret-new"
    dm.config_path.write_text(to_yaml(cfg))
    dm.signal(signal.SIGHUP)
    assert dm.wait_for_log(r"config changed: general\.admin_password changed", 5), dm.log()
    assert "s3cret-new" not in dm.log()


# ----------------------------------------------------------------------------- SIGTERM / SIGINT / SHUTDOWN

def test_sigterm_exits_at_once(doorman, doorman_config):
    dm = doorman(doorman_config(shutdown_timeout=30000))
    c = psycopg.connect(dm.dsn(MD5_USER, MD5_PW), autocommit=True)
    c.execute("BEGIN")
    c.execute("SELECT 1")
    t0 = time.monotonic()
    dm.signal(signal.SIGTERM)
    dm.proc.wait(5)
    assert time.monotonic() - t0 < 3
    assert dm.proc.returncode == 0
    assert "SIGTERM" in dm.log()
    c.close()


def test_admin_shutdown_is_graceful(doorman, doorman_config):
    dm = doorman(doorman_config(shutdown_timeout=20000))
    idle = psycopg.connect(dm.dsn(MD5_USER, MD5_PW), autocommit=True)
    idle.execute("SELECT 1")
    busy = psycopg.connect(dm.dsn(MD5_USER, MD5_PW), autocommit=True)
    busy.execute("BEGIN")
    busy.execute("SELECT 1")
    rows = admin_rows(dm.port, "SHUTDOWN")
    assert rows and rows[0].get("success") == "t"
    # idle client: told 58006
    time.sleep(0.3)
    with pytest.raises(psycopg.Error) as ei:
        idle.execute("SELECT 1")
    assert ei.value.sqlstate == "58006" or "shut down" in str(ei.value), repr(ei.value)
    # new clients are refused
    assert query(dm)[0] != 0
    # the transaction in flight completes, then the client is let go and the process exits
    assert busy.execute("SELECT 42").fetchone()[0] == 42
    busy.execute("COMMIT")
    busy.close()
    dm.proc.wait(10)
    assert dm.proc.returncode == 0, dm.log()


def test_sigint_without_tty_is_binary_upgrade(doorman, doorman_config, reap):
    dm = doorman(doorman_config(shutdown_timeout=5000))
    dm.signal(signal.SIGINT)
    assert dm.wait_for_log(r"new process pid \d+ is serving", 15), dm.log()
    new = new_pid_from_log(dm.log(), dm.pid)
    reap.append(new)
    dm.proc.wait(10)
    assert alive(new)
    assert query(dm)[0] == 0


def test_sigint_ci_shutdown_only(doorman, doorman_config):
    dm = doorman(doorman_config(shutdown_timeout=5000), env={"PG_DOORMAN_CI_SHUTDOWN_ONLY": "1"})
    dm.signal(signal.SIGINT)
    dm.proc.wait(10)
    assert "graceful shutdown" in dm.log()
    assert "binary upgrade" not in dm.log()


# ----------------------------------------------------------------------------- binary upgrade

def test_sigusr2_under_pgbench_zero_failures(doorman, doorman_config, reap):
    dm = doorman(doorman_config(pool_size=5, shutdown_timeout=30000), args=("-l", "info"))
    old = dm.pid
    result = {}

    def bench():
        result["r"] = pgbench(["-n", "-c", "20", "-j", "4", "-T", "8", "example_db"],
                              env=dm.env(MD5_USER, MD5_PW), timeout=120)

    t = threading.Thread(target=bench)
    t.start()
    time.sleep(2.5)
    dm.signal(signal.SIGUSR2)
    assert dm.wait_for_log(r"new process pid \d+ is serving", 15), dm.log()
    new = new_pid_from_log(dm.log(), old)
    assert new and new != old
    reap.append(new)
    handed = int(re.search(r"lets its (\d+) clients finish", dm.log()).group(1))
    assert handed >= 20, dm.log()  # the upgrade really happened under load
    # while pgbench still runs on the old process, new connections already reach the new one
    rc, out, err = query(dm)
    assert rc == 0, err
    t.join(60)
    r = result["r"]
    assert r.rc == 0, r.stdout + r.stderr
    assert (r.failed or 0) == 0 and (r.processed or 0) > 0, r.stdout
    # the old process exits once its clients are gone; the new one serves the port
    dm.proc.wait(15)
    assert dm.proc.returncode == 0
    assert alive(new)
    rc, out, err = query(dm, "SELECT 7")
    assert rc == 0 and out.strip() == "7", err
    assert admin_rows(dm.port, "SHOW VERSION")
    # the new process logs to the same place as the old one
    assert re.search(rf"started, .*pid {new}\b", dm.log()), dm.log()
    # and a second upgrade of the new process works as well
    os.kill(new, signal.SIGUSR2)
    assert wait_until(lambda: len(re.findall(r"new process pid \d+ is serving", dm.log())) >= 2, 15), dm.log()
    newer = int(re.findall(r"new process pid (\d+) is serving", dm.log())[-1])
    reap.append(newer)
    assert wait_until(lambda: not alive(new), 10)
    assert query(dm)[0] == 0


def test_upgrade_with_broken_config_is_aborted(doorman, doorman_config):
    dm = doorman(doorman_config())
    dm.config_path.write_text(BROKEN)
    dm.signal(signal.SIGUSR2)
    assert dm.wait_for_log("BINARY UPGRADE ABORTED", 15), dm.log()
    time.sleep(0.5)
    assert dm.alive()
    assert query(dm)[0] == 0
    assert "new process pid" not in dm.log()
    assert "pool_size cannot be negative" in dm.log()


def test_admin_upgrade(doorman, doorman_config, reap):
    dm = doorman(doorman_config(shutdown_timeout=5000))
    rows = admin_rows(dm.port, "UPGRADE")
    assert rows and rows[0].get("success") == "t"
    assert dm.wait_for_log(r"new process pid \d+ is serving", 15), dm.log()
    new = new_pid_from_log(dm.log(), dm.pid)
    reap.append(new)
    dm.proc.wait(10)
    assert alive(new)
    assert query(dm)[0] == 0


def test_upgrade_idle_client_moves_and_the_old_process_exits_at_once(doorman, doorman_config, reap):
    """Transaction mode: the idle client's session moves to the new process (live migration) and
    keeps working on the same connection; the old process, left without clients, exits long before
    shutdown_timeout (20 s)."""
    dm = doorman(doorman_config(shutdown_timeout=20000))
    c = psycopg.connect(dm.dsn(MD5_USER, MD5_PW), autocommit=True)
    c.execute("SELECT 1")
    dm.signal(signal.SIGUSR2)
    assert dm.wait_for_log(r"new process pid \d+ is serving", 15), dm.log()
    reap.append(new_pid_from_log(dm.log(), dm.pid))
    assert c.execute("SELECT 3").fetchone()[0] == 3
    dm.proc.wait(10)
    assert c.execute("SELECT 4").fetchone()[0] == 4
    c.close()



def test_upgrade_keeps_unix_socket(doorman, doorman_config, tmp_dir, reap):
    sock_dir = tmp_dir / "sock"
    sock_dir.mkdir()
    dm = doorman(doorman_config(shutdown_timeout=5000, unix_socket_dir=str(sock_dir)))
    env = {"PGHOST": str(sock_dir), "PGPORT": str(dm.port), "PGUSER": MD5_USER, "PGPASSWORD": MD5_PW,
           "PGDATABASE": "example_db"}
    assert psql(["-At", "-c", "SELECT 1"], env=env)[0] == 0
    dm.signal(signal.SIGUSR2)
    assert dm.wait_for_log(r"new process pid \d+ is serving", 15), dm.log()
    reap.append(new_pid_from_log(dm.log(), dm.pid))
    dm.proc.wait(10)
    # the old process must not unlink the socket file the new one has bound
    rc, out, err = psql(["-At", "-c", "SELECT 5"], env=env)
    assert rc == 0 and out.strip() == "5", err


def test_systemd_notify_protocol(doorman, doorman_config, tmp_dir, reap):
    """Type=notify: READY=1/MAINPID at start; after SIGUSR2 (ExecReload) MAINPID=<new pid> from the old
    process, then the old one exits while the new one serves."""
    import socket as pysocket

    path = str(tmp_dir / "notify.sock")
    srv = pysocket.socket(pysocket.AF_UNIX, pysocket.SOCK_DGRAM)
    srv.bind(path)
    srv.settimeout(15)
    try:
        dm = doorman(doorman_config(shutdown_timeout=5000), env={"NOTIFY_SOCKET": path})
        msgs = [srv.recv(4096).decode()]
        assert "READY=1" in msgs[0] and f"MAINPID={dm.pid}" in msgs[0], msgs
        dm.signal(signal.SIGUSR2)
        deadline = time.monotonic() + 15
        new = None
        announced = set()
        while time.monotonic() < deadline and (new is None or new not in announced):
            m = srv.recv(4096).decode()
            msgs.append(m)
            found = re.search(r"^MAINPID=(\d+)$", m, re.M)
            if found and "READY=1" in m:
                announced.add(int(found.group(1)))
            elif found:
                new = int(found.group(1))  # the old process hands MAINPID over
        assert new and new != dm.pid, msgs
        reap.append(new)
        assert new in announced, msgs
        dm.proc.wait(10)
        assert alive(new) and query(dm)[0] == 0
    finally:
        srv.close()


def test_upgrade_aborts_when_new_process_does_not_start(doorman_config, tmp_dir):
    """The binary on disk passes -t but dies at start: the old process keeps serving."""
    from harness import Doorman

    exe = tmp_dir / "pg_doorman"
    exe.symlink_to(doorman_bin())
    cfg = write_config(tmp_dir, doorman_config(shutdown_timeout=5000))
    port = int(re.search(r"port: (\d+)", cfg.read_text()).group(1))
    dm = Doorman(cfg, port=port, log_path=tmp_dir / "log", binary=exe, args=("-l", "info"))
    try:
        dm.wait_ready()
        exe.unlink()
        exe.write_text("#!/bin/sh\nfor a; do [ \"$a\" = -t ] && exec %s \"$@\"; done\n"
                       "echo 'broken new binary' >&2\nexit 3\n" % doorman_bin())
        exe.chmod(0o755)
        dm.signal(signal.SIGUSR2)
        assert dm.wait_for_log("BINARY UPGRADE ABORTED", 15), dm.log()
        assert "exited before it was ready" in dm.log(), dm.log()
        assert dm.alive()
        assert query(port)[0] == 0
    finally:
        dm.stop()


def test_sigusr2_under_pgbench_reconnecting_clients(doorman, doorman_config, reap):
    """pgbench -C opens a connection per transaction: connections keep arriving during the hand-over."""
    dm = doorman(doorman_config(pool_size=5, shutdown_timeout=30000), args=("-l", "info"))
    result = {}

    def bench():
        result["r"] = pgbench(["-n", "-C", "-c", "10", "-j", "2", "-T", "6", "-S", "example_db"],
                              env=dm.env(MD5_USER, MD5_PW), timeout=120)

    t = threading.Thread(target=bench)
    t.start()
    time.sleep(2)
    dm.signal(signal.SIGUSR2)
    assert dm.wait_for_log(r"new process pid \d+ is serving", 15), dm.log()
    reap.append(new_pid_from_log(dm.log(), dm.pid))
    t.join(60)
    r = result["r"]
    assert r.rc == 0, r.stdout + r.stderr
    assert (r.failed or 0) == 0 and (r.processed or 0) > 0, r.stdout
    dm.proc.wait(15)


def test_daemon_start_failure_is_reported(doorman_config, tmp_dir):
    import socket as pysocket

    with pysocket.socket() as busy:
        busy.setsockopt(pysocket.SOL_SOCKET, pysocket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        pid_file = tmp_dir / "pid"
        cfg = write_config(tmp_dir, doorman_config(port=port, daemon_pid_file=str(pid_file)))
        rc, out, err = run_doorman_cli([str(cfg), "-d"], timeout=30)
    assert rc != 0, (rc, out, err)
    assert "could not start" in err and "cannot start" in err, err  # the daemon's own reason
    assert not pid_file.exists()


def test_sigterm_during_graceful_drain_exits_at_once(doorman, doorman_config):
    dm = doorman(doorman_config(shutdown_timeout=30000))
    busy = psycopg.connect(dm.dsn(MD5_USER, MD5_PW), autocommit=True)
    busy.execute("BEGIN")
    rows = admin_rows(dm.port, "SHUTDOWN")
    assert rows
    assert dm.wait_for_log("graceful shutdown", 5)
    time.sleep(0.3)
    assert dm.alive()  # the transaction holds it
    t0 = time.monotonic()
    dm.signal(signal.SIGTERM)
    dm.proc.wait(5)
    assert time.monotonic() - t0 < 3
    busy.close()
