"""The relay's own event loop (`RelayLoop`): TCP clients are accepted and log in there, plain
servers move there after their login, and the traffic runs on its thread, not on SwiftNIO's;
PG_DOORMAN_RELAY_LOOP=0 keeps everything on NIO. Seen from outside: the threads' names and CPU time in /proc."""
from __future__ import annotations

import os
import resource
import socket
import threading
import time

import psycopg
import pytest

from harness import pgbench

MD5_USER, MD5_PW = "example_user_md5", "md5pass"


def _threads(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) per thread name."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def _cpu(before: dict[str, float], after: dict[str, float], prefix: str) -> float:
    """CPU seconds the threads named `prefix`... used between two `_threads` readings."""
    return sum(v - before.get(n, 0.0) for n, v in after.items() if n.startswith(prefix))


def _bench(dm, *args: str, user: str = MD5_USER, password: str = MD5_PW, minimum: int = 500) -> tuple[float, float]:
    """pgbench -S through `dm` with `args`; the CPU seconds its relay threads and its NIO threads used."""
    before = _threads(dm.pid)
    assert any(n.startswith("pgdm relay") for n in before) == (dm.env_relay != "0"), before
    r = pgbench(["-h", "127.0.0.1", "-p", str(dm.port), "-U", user, *args, "-S", "example_db"],
                env={"PGPASSWORD": password})
    assert r.rc == 0, r.stdout
    assert r.processed > minimum
    after = _threads(dm.pid)
    return _cpu(before, after, "pgdm relay"), _cpu(before, after, "NIO-ELT")


def _start(doorman, doorman_config, relay: str = "1"):
    dm = doorman(doorman_config(), env={"PG_DOORMAN_RELAY_LOOP": relay})
    dm.env_relay = relay
    return dm


@pytest.mark.parametrize("protocol", ["simple", "prepared"])
def test_transaction_traffic_runs_on_the_relay_loop(doorman, doorman_config, protocol):
    dm = _start(doorman, doorman_config)
    relay, nio = _bench(dm, "-c", "8", "-j", "2", "-T", "3", "-M", protocol)
    # The relay thread did the transactions (and the logins); NIO only the servers' logins.
    assert relay > 0.3, (nio, relay)
    assert nio < relay / 3, (nio, relay)


def test_connections_are_accepted_and_logged_in_on_the_relay_loop(doorman, doorman_config):
    """TCP clients are accepted by the RelayLoop itself: a stream of new connections (pgbench -C,
    SCRAM logins) costs SwiftNIO's threads next to nothing."""
    dm = _start(doorman, doorman_config)
    relay, nio = _bench(dm, "-c", "2", "-j", "1", "-T", "3", "-C", user="example_user_scram",
                        password="scrampass", minimum=100)
    assert relay > 0.1, (nio, relay)
    assert nio < relay / 10, (nio, relay)


def test_out_of_descriptors_pauses_accepting_without_spinning(doorman, doorman_config):
    """A connection flood that exhausts the pooler's descriptors: the RelayLoop stops watching the
    listener for a while instead of waking on it at every turn (level-triggered), says so once per
    pause, and accepts again once descriptors are free."""
    dm = doorman(doorman_config(), env={"PG_DOORMAN_RELAY_LOOP": "1"})
    login = dict(host="127.0.0.1", port=dm.port, user=MD5_USER, password=MD5_PW, dbname="example_db",
                 autocommit=True, connect_timeout=5)
    with psycopg.connect(**login) as c:
        assert c.execute("SELECT 1").fetchone()[0] == 1
    soft, hard = resource.prlimit(dm.pid, resource.RLIMIT_NOFILE)
    used = len(os.listdir(f"/proc/{dm.pid}/fd"))
    resource.prlimit(dm.pid, resource.RLIMIT_NOFILE, (used + 6, hard))
    flood = []
    try:
        for _ in range(40):  # the kernel's backlog completes them; the pooler can take 6 at most
            flood.append(socket.create_connection(("127.0.0.1", dm.port), timeout=5))
        assert dm.wait_for_log("cannot accept client connections", timeout=10), dm.log()[-3000:]
        before = _threads(dm.pid)
        time.sleep(2.0)
        after = _threads(dm.pid)
        relay = _cpu(before, after, "pgdm relay")
        assert relay < 0.3, f"relay thread busy while out of descriptors: {relay:.2f} s of CPU in 2 s"
    finally:
        for f in flood:
            f.close()
        resource.prlimit(dm.pid, resource.RLIMIT_NOFILE, (soft, hard))
    deadline = time.monotonic() + 10
    while True:
        try:
            with psycopg.connect(**login) as c:
                assert c.execute("SELECT 2").fetchone()[0] == 2
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert dm.alive()


def test_without_the_relay_loop_nio_relays(doorman, doorman_config):
    dm = _start(doorman, doorman_config, relay="0")
    _bench(dm, "-c", "8", "-j", "2", "-T", "3")  # (checks that no relay thread exists)


def test_session_mode_and_moved_clients_side_by_side(doorman, doorman_config, pg):
    """A moved client keeps its session (SET, a cancel by its key, SHOW CLIENTS), next to a
    session-mode pool whose clients stay on NIO."""
    cfg = doorman_config()
    cfg["pools"]["sessiondb"] = dict(cfg["pools"][pg.database], pool_mode="session", server_database=pg.database)
    dm = doorman(cfg, env={"PG_DOORMAN_RELAY_LOOP": "1"})
    with psycopg.connect(host="127.0.0.1", port=dm.port, user=MD5_USER, password=MD5_PW, dbname="example_db",
                         autocommit=True, application_name="moved") as c, \
            psycopg.connect(host="127.0.0.1", port=dm.port, user=MD5_USER, password=MD5_PW, dbname="sessiondb",
                            autocommit=True) as s:
        c.execute("SET TimeZone = 'Asia/Tokyo'")
        for _ in range(20):
            assert c.execute("SHOW TimeZone").fetchone()[0] == "Asia/Tokyo"
            assert s.execute("SELECT 1").fetchone()[0] == 1
        started = time.monotonic()
        threading.Timer(0.5, c.cancel).start()
        with pytest.raises(psycopg.errors.QueryCanceled):
            c.execute("SELECT pg_sleep(30)")
        assert time.monotonic() - started < 10
        assert c.execute("SELECT 2").fetchone()[0] == 2
        with psycopg.connect(host="127.0.0.1", port=dm.port, user="admin", password="admin", dbname="pgdoorman",
                             autocommit=True) as a:
            cur = a.execute("SHOW CLIENTS")
            names = [d.name for d in cur.description]
            rows = [dict(zip(names, r)) for r in cur.fetchall()]
        assert any(r.get("application_name") == "moved" for r in rows), rows
