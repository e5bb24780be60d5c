"""The client sockets' TCP options as the pooler's process holds them, read through pidfd_getfd(2)
(a duplicate of the pooler's descriptor, as root): what the config says reaches the accepted socket."""
from __future__ import annotations

import ctypes
import os
import socket

import psycopg
import pytest

MD5_USER, MD5_PW = "example_user_md5", "md5pass"
SYS_pidfd_open, SYS_pidfd_getfd = 434, 438
_libc = ctypes.CDLL(None, use_errno=True)


def _sockets(pid: int, local_port: int | None = None, peer_port: int | None = None,
             listening: bool = False) -> list[socket.socket]:
    """Duplicates of the pooler's connected (or listening) TCP sockets with that local or peer port."""
    pidfd = _libc.syscall(SYS_pidfd_open, pid, 0)
    if pidfd < 0:
        pytest.skip(f"pidfd_open: errno {ctypes.get_errno()}")
    out = []
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                    continue
            except OSError:
                continue
            fd = _libc.syscall(SYS_pidfd_getfd, pidfd, int(name), 0)
            if fd < 0:
                pytest.skip(f"pidfd_getfd: errno {ctypes.get_errno()}")
            s = socket.socket(fileno=fd)
            try:
                ok = (s.family in (socket.AF_INET, socket.AF_INET6)
                      and s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == (1 if listening else 0)
                      and (local_port is None or s.getsockname()[1] == local_port)
                      and (peer_port is None or (not listening and s.getpeername()[1] == peer_port)))
            except OSError:
                ok = False
            if ok:
                out.append(s)
            else:
                s.close()
    finally:
        os.close(pidfd)
    return out


@pytest.mark.parametrize("no_delay", [True, False])
def test_tcp_no_delay_reaches_client_and_server_sockets(doorman, doorman_config, pg, no_delay):
    if os.geteuid() != 0:
        pytest.skip("needs root to duplicate the pooler's descriptors")
    dm = doorman(doorman_config(tcp_no_delay=no_delay, tcp_keepalives_idle=77))
    with psycopg.connect(host="127.0.0.1", port=dm.port, user=MD5_USER, password=MD5_PW, dbname="example_db",
                         autocommit=True) as c:
        assert c.execute("SELECT 1").fetchone()[0] == 1
        clients = _sockets(dm.pid, local_port=dm.port)
        servers = _sockets(dm.pid, peer_port=int(pg.port)) if not str(pg.host).startswith("/") else []
        try:
            assert clients, "no accepted client socket found"
            for s in clients:
                assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == (1 if no_delay else 0)
                assert s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
                assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 77
            for s in servers:
                assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == (1 if no_delay else 0)
                assert s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        finally:
            for s in clients + servers:
                s.close()


def test_connections_reach_the_pooler_with_their_first_bytes(doorman, doorman_config):
    """The TCP listener defers the accept until the client's first bytes arrive (TCP_DEFER_ACCEPT,
    one second, as PgBouncer): a connection that says nothing holds no descriptor of the pooler's
    meanwhile, and one that sends its SSLRequest is accepted and answered at once."""
    if os.geteuid() != 0:
        pytest.skip("needs root to duplicate the pooler's descriptors")
    dm = doorman(doorman_config())
    listeners = _sockets(dm.pid, local_port=dm.port, listening=True)
    try:
        assert listeners, "no listening socket found"
        for s in listeners:
            assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT) >= 1
    finally:
        for s in listeners:
            s.close()
    silent = socket.create_connection(("127.0.0.1", dm.port), timeout=5)
    speaking = socket.create_connection(("127.0.0.1", dm.port), timeout=5)
    try:
        speaking.sendall((8).to_bytes(4, "big") + (80877103).to_bytes(4, "big"))  # SSLRequest
        assert speaking.recv(1) == b"N"
        # Found by the peer's port, not by counting descriptors: the pooler may open and close others
        # (its own start-up, a pool's first server) while the test looks.
        held = {name: _sockets(dm.pid, peer_port=s.getsockname()[1])
                for name, s in (("silent", silent), ("speaking", speaking))}
        try:
            assert len(held["speaking"]) == 1, "the connection that spoke was not accepted"
            assert held["silent"] == [], "the silent connection was accepted before its first bytes"
        finally:
            for socks in held.values():
                for s in socks:
                    s.close()
    finally:
        silent.close()
        speaking.close()
