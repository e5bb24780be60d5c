"""Issue 23: binary upgrade with live session migration. Idle client sessions move to the new
process with their connection (passed over a Unix socket), their own parameters and prepared
statements; the old process exits as soon as it has no clients, not at shutdown_timeout."""
from __future__ import annotations

import os
import re
import signal
import threading
import time

import psycopg
import pytest

from harness import admin_rows, alive, pgbench, wait_until
from wire import Wire, bind, execute, parse, rows, sync

MD5_USER, MD5_PW = "example_user_md5", "md5pass"
SCRAM_USER, SCRAM_PW = "example_user_scram", "scrampass"


def new_pid(dm) -> int:
    assert dm.wait_for_log(r"new process pid \d+ is serving", 15), dm.log()
    return int(re.findall(r"new process pid (\d+) is serving", dm.log())[-1])


def test_idle_session_moves_with_its_parameters_and_statements(doorman, doorman_config, reap):
    dm = doorman(doorman_config(pool_size=4, shutdown_timeout=60000), args=("-l", "info"))
    old = dm.pid
    w = Wire.connect(dm.host, dm.port, MD5_USER, MD5_PW, params={"application_name": "migrant"})
    assert w.scalar("SET TimeZone = 'Asia/Tokyo'") is None or True
    w.send(parse("s1", "SELECT $1::int * 3"), bind("", "s1", [b"14"]), execute(), sync())
    assert rows(w.read_until_ready()) == [[b"42"]]
    time.sleep(1.2)  # an age the new process must keep
    dm.signal(signal.SIGUSR2)
    new = new_pid(dm)
    reap.append(new)
    # the old process has nobody left: it exits long before shutdown_timeout (60 s)
    assert wait_until(lambda: not alive(old), 10), dm.log()
    assert re.search(r"1 client session\(s\) moved to the new process", dm.log()), dm.log()
    # the same connection, now served by the new process, with its TimeZone and statement
    assert w.scalar("SHOW TimeZone") == "Asia/Tokyo"
    w.send(bind("", "s1", [b"5"]), execute(), sync())
    assert rows(w.read_until_ready()) == [[b"15"]]
    clients = [r for r in admin_rows(dm, "SHOW CLIENTS") if r["application_name"] == "migrant"]
    assert len(clients) == 1 and int(clients[0]["age_seconds"]) >= 1, clients
    w.close()


def test_pgbench_prepared_across_an_upgrade_loses_nothing(doorman, doorman_config, reap):
    """20 persistent pgbench clients (-M prepared, transaction mode): each moves at its next idle
    point; no transaction fails, no client reconnects, the old process exits within seconds."""
    dm = doorman(doorman_config(pool_size=5, shutdown_timeout=60000, log_client_connections=True),
                 args=("-l", "info"))
    old = dm.pid
    result = {}

    def bench():
        # One thread per client: pgbench prepares a script's statements with blocking PQprepare
        # calls, so a thread sharing clients stalls them all while one waits for a server the
        # others hold (with any transaction pooler once clients outnumber servers).
        result["r"] = pgbench(["-n", "-c", "20", "-j", "20", "-T", "12", "-M", "prepared", "example_db"],
                              env=dm.env(MD5_USER, MD5_PW), timeout=120)

    t = threading.Thread(target=bench)
    t.start()
    assert wait_until(lambda: len(re.findall(r"client \S+ connected: ", dm.log())) >= 20, 10), dm.log()
    time.sleep(2)
    before = len(re.findall(r"client \S+ connected: ", dm.log()))  # 20 + pgbench's first check
    dm.signal(signal.SIGUSR2)
    new = new_pid(dm)
    reap.append(new)
    t0 = time.monotonic()
    assert wait_until(lambda: not alive(old), 15), dm.log()
    gone_after = time.monotonic() - t0
    t.join(90)
    r = result["r"]
    assert r.rc == 0, r.stdout + r.stderr
    assert (r.failed or 0) == 0 and (r.processed or 0) > 0, r.stdout
    assert "aborted" not in r.stdout + r.stderr or re.search(r"aborted[^\n]*: 0", r.stdout + r.stderr)
    log = dm.log()
    assert re.search(r"20 client session\(s\) moved to the new process, 0 stayed", log), log
    assert re.search(r"20 client session\(s\) adopted from the old process", log), log
    # pgbench never reconnected: no client login after the upgrade
    logins = re.findall(r"client \S+ connected: .*", log)
    assert len(logins) == before, logins
    assert gone_after < 10


def test_session_mode_client_holding_a_server_stays_until_it_leaves(doorman, doorman_config, reap):
    dm = doorman(doorman_config(pool_mode="session", pool_size=4, shutdown_timeout=20000), args=("-l", "info"))
    old = dm.pid
    c = psycopg.connect(dm.dsn(MD5_USER, MD5_PW), autocommit=True)
    c.execute("SELECT 1")
    dm.signal(signal.SIGUSR2)
    new = new_pid(dm)
    reap.append(new)
    time.sleep(1.5)
    assert alive(old)  # it still serves its session-mode client
    assert c.execute("SELECT 3").fetchone()[0] == 3
    c.close()
    assert wait_until(lambda: not alive(old), 10)
    assert re.search(r"0 client session\(s\) moved", dm.log()), dm.log()


def test_a_failed_new_process_keeps_every_client(doorman, doorman_config, tmp_path):
    """The new binary fails to start (a config error it sees but -t of the old... here: its port is
    taken by the old listener's validation) — simplest honest case: break the config after start so
    the upgrade is aborted; every client keeps working on the old process."""
    dm = doorman(doorman_config(pool_size=4, shutdown_timeout=20000), args=("-l", "info"))
    w = Wire.connect(dm.host, dm.port, MD5_USER, MD5_PW)
    assert w.scalar("SELECT 1") == "1"
    text = dm.config_path.read_text()
    dm.config_path.write_text(text + "\nthis is: [not valid\n")
    dm.signal(signal.SIGUSR2)
    assert dm.wait_for_log(r"BINARY UPGRADE ABORTED", 15), dm.log()
    assert dm.alive()
    assert w.scalar("SELECT 2") == "2"
    w.close()


def test_cancel_sent_after_the_upgrade_reaches_a_query_on_the_old_process(doorman, doorman_config, reap):
    """A long query started before the upgrade keeps its client on the old process; the cancel the
    client sends afterwards reaches the listening socket, now the new process's, which passes it on."""
    dm = doorman(doorman_config(pool_mode="session", pool_size=4, shutdown_timeout=30000), args=("-l", "info"))
    old = dm.pid
    c = psycopg.connect(dm.dsn(MD5_USER, MD5_PW), autocommit=True)
    outcome = {}

    def sleeper():
        t0 = time.monotonic()
        try:
            c.execute("SELECT pg_sleep(30)")
            outcome["r"] = "finished"
        except psycopg.errors.QueryCanceled:
            outcome["r"] = "cancelled"
        outcome["t"] = time.monotonic() - t0

    th = threading.Thread(target=sleeper, daemon=True)
    th.start()
    time.sleep(0.5)
    dm.signal(signal.SIGUSR2)
    reap.append(new_pid(dm))
    time.sleep(0.5)
    c.cancel()
    th.join(10)
    assert outcome.get("r") == "cancelled", outcome
    assert outcome["t"] < 5
    assert alive(old)
    assert c.execute("SELECT 5").fetchone()[0] == 5
    c.close()
    assert wait_until(lambda: not alive(old), 10)


def test_asyncpg_pool_across_an_upgrade(doorman, doorman_config, reap):
    import asyncio
    asyncpg = pytest.importorskip("asyncpg")
    dm = doorman(doorman_config(pool_size=4, shutdown_timeout=60000), args=("-l", "info"))
    old = dm.pid

    async def run():
        pool = await asyncpg.create_pool(host=dm.host, port=dm.port, user=MD5_USER, password=MD5_PW,
                                         database="example_db", min_size=6, max_size=6)
        try:
            async def work(i):
                async with pool.acquire() as con:
                    return await con.fetchval("SELECT $1::int + 1", i)
            assert await asyncio.gather(*(work(i) for i in range(30))) == [i + 1 for i in range(30)]
            dm.signal(signal.SIGUSR2)
            failures = 0
            deadline = time.monotonic() + 4
            n = 0
            while time.monotonic() < deadline:
                try:
                    assert await work(n) == n + 1
                except Exception:  # noqa: BLE001
                    failures += 1
                n += 1
                await asyncio.sleep(0.01)
            assert failures == 0
            return n
        finally:
            await pool.close()

    assert asyncio.run(run()) > 50
    reap.append(new_pid(dm))
    assert wait_until(lambda: not alive(old), 10), dm.log()
    assert re.search(r"6 client session\(s\) moved to the new process", dm.log()), dm.log()


def test_pgjdbc_connections_across_an_upgrade(doorman, doorman_config, reap, tmp_path):
    import shutil
    import subprocess
    jar = os.environ.get("PGJDBC_JAR", "/usr/share/java/postgresql.jar")
    if not (shutil.which("javac") and shutil.which("java") and os.path.isfile(jar)):
        pytest.skip("pgjdbc or a JDK is not installed (scripts/lib/driver-deps.sh installs them)")
    src = os.path.join(os.path.dirname(__file__), "drivers", "pgjdbc", "UpgradeLoop.java")
    cp = subprocess.run(["javac", "-nowarn", "-cp", jar, "-d", str(tmp_path), src], capture_output=True, text=True,
                        timeout=120)
    assert cp.returncode == 0, cp.stderr
    dm = doorman(doorman_config(pool_size=4, shutdown_timeout=60000), args=("-l", "info"))
    old = dm.pid
    url = f"jdbc:postgresql://{dm.host}:{dm.port}/example_db?sslmode=disable"
    proc = subprocess.Popen(["java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp", f"{tmp_path}:{jar}",
                             "UpgradeLoop", url, MD5_USER, MD5_PW, "4", "8"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout.readline().strip() == "connected 4"
        time.sleep(1.5)
        dm.signal(signal.SIGUSR2)
        reap.append(new_pid(dm))
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert re.search(r"queries \d+ failures 0", out), out
    assert wait_until(lambda: not alive(old), 10), dm.log()
    assert re.search(r"4 client session\(s\) moved to the new process", dm.log()), dm.log()


def test_a_session_the_new_process_refuses_stays_with_the_old_one(doorman, doorman_config, reap):
    """The new process's config no longer has the client's pool: it refuses the session, which goes
    on being served by the old process (until it leaves or shutdown_timeout), with nothing lost."""
    from harness import to_yaml
    cfg = doorman_config(pool_size=4, shutdown_timeout=30000)
    dm = doorman(cfg, args=("-l", "info"))
    old = dm.pid
    w = Wire.connect(dm.host, dm.port, SCRAM_USER, SCRAM_PW)
    assert w.scalar("SELECT 1") == "1"
    cfg["pools"]["example_db"]["users"] = [u for u in cfg["pools"]["example_db"]["users"] if u["username"] == MD5_USER]
    dm.config_path.write_text(to_yaml(cfg))
    dm.signal(signal.SIGUSR2)
    reap.append(new_pid(dm))
    assert dm.wait_for_log(r"1 idle client session\(s\) move now", 5), dm.log()
    time.sleep(1.0)
    assert alive(old)
    assert w.scalar("SELECT 2") == "2"  # still served, by the old process
    assert w.scalar("SELECT 3") == "3"  # (and not offered again at each transaction's end)
    w.close()
    assert wait_until(lambda: not alive(old), 10)
    assert re.search(r"0 client session\(s\) moved to the new process, 0 stayed here until the end "
                     r"\(1 refused by the new process", dm.log()), dm.log()
