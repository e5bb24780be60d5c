"""Binary upgrade hands the new process only the descriptors meant for it (issue #24).

Before the fix the new process inherited a copy of every client and server socket the old one had
open (SwiftNIO's sockets are not close-on-exec): a client the old process ended never saw EOF, and
PostgreSQL backends the old process closed stayed connected for as long as the new process lived."""
from __future__ import annotations

import os
import re
import signal
import socket
import time

import psycopg

from test_lifecycle import MD5_PW, MD5_USER, admin_rows, alive, query, wait_until  # noqa: F401


def socket_inodes(pid: int) -> set[str]:
    """The socket inodes a process holds, from /proc/<pid>/fd."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        m = re.fullmatch(r"socket:\[(\d+)\]", target)
        if m:
            found.add(m.group(1))
    return found


def listening_inodes() -> set[str]:
    """Inodes of listening TCP sockets and of Unix sockets in the listening state."""
    found = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(name) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[3] == "0A":  # TCP_LISTEN
                    found.add(cols[9])
    with open("/proc/net/unix") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if int(cols[3], 16) & 0x10000:  # __SO_ACCEPTCON
                found.add(cols[6])
    return found


def backends_of(pg, user: str) -> int:
    out = pg.su_psql(f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{user}' "
                     "AND backend_type = 'client backend'")
    return int(out.strip())


def upgrade(dm, pid: int, count: int) -> int:
    """SIGUSR2 to `pid`; returns the pid of the process that reports serving (the `count`-th one)."""
    os.kill(pid, signal.SIGUSR2)
    assert wait_until(lambda: len(re.findall(r"new process pid \d+ is serving", dm.log())) >= count, 20), dm.log()
    return int(re.findall(r"new process pid (\d+) is serving", dm.log())[-1])


def test_new_process_holds_no_client_or_server_socket_of_the_old_one(doorman, doorman_config, reap):
    dm = doorman(doorman_config(pool_mode="session", shutdown_timeout=3000), args=("-l", "info"))
    old = dm.pid
    # a session-mode client holds a server connection: one client socket and one server socket
    c = psycopg.connect(dm.dsn(MD5_USER, MD5_PW), autocommit=True)
    assert c.execute("SELECT 1").fetchone()[0] == 1
    old_sockets = socket_inodes(old)
    new = upgrade(dm, old, 1)
    reap.append(new)
    shared = (socket_inodes(new) & old_sockets) - listening_inodes()
    assert not shared, f"the new process holds {len(shared)} non-listening sockets of the old one"
    c.close()


def test_client_ended_at_shutdown_timeout_sees_eof_at_once(doorman, doorman_config, reap):
    # Session mode: the client holds a server, so it stays with the old process (an idle
    # transaction-mode client would move to the new one: test_live_migration.py).
    dm = doorman(doorman_config(pool_mode="session", shutdown_timeout=2000), args=("-l", "info"))
    c = psycopg.connect(dm.dsn(MD5_USER, MD5_PW), autocommit=True)
    assert c.execute("SELECT 1").fetchone()[0] == 1
    new = upgrade(dm, dm.pid, 1)
    reap.append(new)
    dm.proc.wait(15)  # the old process ends its idle client at shutdown_timeout and exits
    exited = time.monotonic()
    # Read the client's socket directly: whatever the old process sent last, then EOF.
    s = socket.socket(fileno=os.dup(c.fileno()))
    s.settimeout(1.0)
    got_eof = False
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                got_eof = True
                break
    except (TimeoutError, socket.timeout):
        pass
    except ConnectionResetError:
        got_eof = True
    finally:
        s.close()
    assert got_eof, "the client's connection stayed open after the old process exited"
    assert time.monotonic() - exited < 1.5
    # and the client reconnects at once to the new process
    assert query(dm, "SELECT 2")[0] == 0
    c.close()


def test_backends_after_two_upgrades_are_the_new_process_own(doorman, doorman_config, reap, pg):
    dm = doorman(doorman_config(pool_mode="session", shutdown_timeout=1500, users=[MD5_USER]),
                 args=("-l", "info"))
    clients = [psycopg.connect(dm.dsn(MD5_USER, MD5_PW), autocommit=True) for _ in range(3)]
    for c in clients:
        c.execute("SELECT 1")
    assert backends_of(pg, MD5_USER) >= 3
    first = upgrade(dm, dm.pid, 1)
    reap.append(first)
    dm.proc.wait(15)
    for c in clients:
        c.close()
    # the new process serves its own client through its own server connection
    c2 = psycopg.connect(dm.dsn(MD5_USER, MD5_PW), autocommit=True)
    c2.execute("SELECT 1")
    second = upgrade(dm, first, 2)
    reap.append(second)
    c2.close()
    assert wait_until(lambda: not alive(first), 15), dm.log()

    def servers_of_newest() -> int:
        return sum(1 for r in admin_rows(dm.port, "SHOW SERVERS") if r.get("user") == MD5_USER)

    # PostgreSQL lists a closed backend until it exits: let the count settle.
    assert wait_until(lambda: backends_of(pg, MD5_USER) == servers_of_newest(), 10), \
        (backends_of(pg, MD5_USER), servers_of_newest(), dm.log())
