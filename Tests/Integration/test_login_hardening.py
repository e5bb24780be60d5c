"""Issue 19 (B): login hardening.

- An unknown user gets the same exchange as a known user with a wrong password (a SCRAM challenge
  with a salt stable per user name, then 28P01 `password authentication failed for user "..."`).
- Failed logins are logged at info level with address, user, database and reason, control
  characters escaped, and rate-limited."""
from __future__ import annotations

import base64
import hashlib
import re
import socket
import struct
import time

import pytest

from wire import PROTOCOL_V3, _Scram, _cstr, _msg, error_fields

SCRAM_USER = "example_user_scram"
MD5_USER = "example_user_md5"


def exchange(port: int, user: str, password: str, database: str = "example_db",
             params: dict[str, str] | None = None) -> dict:
    """Logs in with a raw socket and records what the client sees: the authentication request codes,
    the SCRAM salt and iteration count, and the final ErrorResponse fields."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    body = struct.pack("!I", PROTOCOL_V3) + _cstr("user") + _cstr(user) + _cstr("database") + _cstr(database)
    for k, v in (params or {}).items():
        body += _cstr(k) + _cstr(v)
    body += b"\0"
    s.sendall(struct.pack("!I", len(body) + 4) + body)
    buf = b""
    seen: dict = {"codes": [], "salt": None, "iterations": None, "error": None, "ok": False}
    scram = None
    try:
        while True:
            while len(buf) < 5 or len(buf) < 1 + struct.unpack("!I", buf[1:5])[0]:
                chunk = s.recv(65536)
                if not chunk:
                    return seen
                buf += chunk
            n = struct.unpack("!I", buf[1:5])[0]
            t, b, buf = buf[:1], buf[5:1 + n], buf[1 + n:]
            if t == b"E":
                seen["error"] = error_fields(b)
                return seen
            if t == b"Z":
                seen["ok"] = True
                return seen
            if t != b"R":
                continue
            code = struct.unpack("!I", b[:4])[0]
            seen["codes"].append(code)
            if code == 5:
                inner = hashlib.md5(password.encode() + user.encode()).hexdigest()
                s.sendall(_msg(b"p", _cstr("md5" + hashlib.md5(inner.encode() + b[4:8]).hexdigest())))
            elif code == 10:
                scram = _Scram(password)
                first = scram.client_first()
                s.sendall(_msg(b"p", _cstr("SCRAM-SHA-256") + struct.pack("!i", len(first)) + first))
            elif code == 11:
                attrs = dict(kv.split("=", 1) for kv in b[4:].decode().split(","))
                seen["salt"], seen["iterations"] = attrs["s"], attrs["i"]
                s.sendall(_msg(b"p", scram.client_final(b[4:])))
    finally:
        s.close()


def shape(seen: dict) -> tuple:
    e = seen["error"] or {}
    return tuple(seen["codes"]), len(base64.b64decode(seen["salt"] or "")), seen["iterations"], e.get("S"), e.get("C")


def test_unknown_user_gets_the_same_exchange_as_a_wrong_password(doorman, doorman_config):
    dm = doorman(doorman_config(users=[SCRAM_USER]))
    wrong = exchange(dm.port, SCRAM_USER, "not-the-password")
    unknown = exchange(dm.port, "no_such_user", "whatever")
    assert wrong["codes"] == [10, 11], wrong
    assert shape(unknown) == shape(wrong), (unknown, wrong)
    assert shape(wrong)[3:] == ("FATAL", "28P01")
    assert wrong["error"]["M"] == f'password authentication failed for user "{SCRAM_USER}"'
    assert unknown["error"]["M"] == 'password authentication failed for user "no_such_user"'
    # The same salt for the same unknown name on every try (as for a configured verifier); another
    # name, another salt.
    assert exchange(dm.port, "no_such_user", "x")["salt"] == unknown["salt"]
    assert exchange(dm.port, SCRAM_USER, "y")["salt"] == wrong["salt"]
    assert exchange(dm.port, "someone_else", "x")["salt"] != unknown["salt"]
    # A known user configured for another database only is unknown here too (when the database exists).
    # The right password still works.
    ok = exchange(dm.port, SCRAM_USER, "scrampass")
    assert ok["ok"], ok


def test_unknown_user_gets_md5_when_every_configured_user_has_an_md5_hash(doorman, doorman_config):
    dm = doorman(doorman_config(users=[MD5_USER]))
    wrong = exchange(dm.port, MD5_USER, "not-the-password")
    unknown = exchange(dm.port, "no_such_user", "whatever")
    assert wrong["codes"] == [5], wrong
    assert unknown["codes"] == [5], unknown
    assert (unknown["error"]["S"], unknown["error"]["C"]) == (wrong["error"]["S"], wrong["error"]["C"]) == ("FATAL", "28P01")
    assert unknown["error"]["M"] == 'password authentication failed for user "no_such_user"'
    assert exchange(dm.port, MD5_USER, "md5pass")["ok"]


def test_unknown_admin_user_gets_the_admin_md5_exchange(doorman, doorman_config):
    dm = doorman(doorman_config())
    wrong = exchange(dm.port, "admin", "nope", database="pgdoorman")
    unknown = exchange(dm.port, "not_admin", "nope", database="pgdoorman")
    assert wrong["codes"] == [5], wrong
    assert unknown["codes"] == wrong["codes"], unknown
    assert (unknown["error"]["S"], unknown["error"]["C"]) == (wrong["error"]["S"], wrong["error"]["C"]) == ("FATAL", "28P01")
    assert unknown["error"]["M"] == 'password authentication failed for user "not_admin"'


def wait_for_log(dm, pattern: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = dm.log()
        if re.search(pattern, log):
            return log
        time.sleep(0.05)
    return dm.log()


def test_failed_login_is_logged_at_info_with_control_characters_escaped(doorman, doorman_config):
    dm = doorman(doorman_config(users=[SCRAM_USER]), args=("-l", "info"))
    exchange(dm.port, "evil\nINFO forged line", "x", params={"application_name": "app\r\x1b[2J"})
    exchange(dm.port, SCRAM_USER, "wrong", params={"application_name": "psql"})
    exchange(dm.port, SCRAM_USER, "x", database="no_such_db")
    log = wait_for_log(dm, r"no_such_db.*3D000")
    lines = log.splitlines()
    assert any('login failed: client 127.0.0.1:' in l and r'user "evil\nINFO forged line"' in l
               and r'application_name "app\r\x1B[2J"' in l and "28P01" in l for l in lines), log[-3000:]
    assert not any(l.startswith("INFO forged line") for l in lines), log[-3000:]
    assert "\x1b[2J" not in log
    assert any(f'user "{SCRAM_USER}" database "example_db" application_name "psql": 28P01 password '
               f'authentication failed for user "{SCRAM_USER}"' in l for l in lines), log[-3000:]
    assert any('database "no_such_db"' in l and '3D000 database "no_such_db" does not exist' in l
               for l in lines), log[-3000:]


def test_failed_login_log_is_rate_limited(doorman, doorman_config):
    dm = doorman(doorman_config(users=[SCRAM_USER], log_client_connections=True, log_client_disconnections=True),
                 args=("-l", "info"))
    t0 = time.monotonic()
    for i in range(150):
        exchange(dm.port, f"flood_{i}", "x", database="no_such_db")
    elapsed = time.monotonic() - t0
    # The count of left-out lines is written when the burst is over, without waiting for another failure.
    assert re.search(r"more failed logins suppressed", wait_for_log(dm, r"more failed logins suppressed", 3.0))
    exchange(dm.port, "after_the_flood", "x", database="no_such_db")
    log = wait_for_log(dm, r"after_the_flood")
    logged = log.count("login failed:")
    # 20 a second at most (+1 window of slack)
    assert logged <= 20 * (int(elapsed) + 2) + 1, (logged, elapsed)
    assert logged < 150
    m = re.findall(r"\.\.\. (\d+) more failed logins suppressed", log)
    assert m and sum(map(int, m)) + logged == 151, (m, logged)
    # A refused login has no "disconnected" line besides (that one would not be rate-limited).
    assert "disconnected:" not in log, log[-2000:]


def test_client_login_timeout_is_configurable(doorman, doorman_config):
    """client_login_timeout (PgBouncer's name; default 15 s): a client that stops in the middle of
    authentication is cut off that long after connecting (the sweep runs once a second)."""
    dm = doorman(doorman_config(users=[SCRAM_USER], client_login_timeout="2s"))
    t0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", dm.port), timeout=10)
    try:
        body = struct.pack("!I", PROTOCOL_V3) + _cstr("user") + _cstr(SCRAM_USER) + _cstr("database") \
            + _cstr("example_db") + b"\0"
        s.sendall(struct.pack("!I", len(body) + 4) + body)  # then never answers the SCRAM request
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        elapsed = time.monotonic() - t0
    finally:
        s.close()
    assert 1.9 <= elapsed < 4, elapsed
    assert data[:1] == b"R" and b"08P01" in data and b"did not complete startup within 2 seconds" in data, data


def test_auth_failure_delay_slows_failed_logins_per_address_without_slowing_others(doorman, doorman_config):
    """auth_failure_delay (PostgreSQL's auth_delay as the model): the 28P01 answer to a failed login
    waits, doubling per further failure from the same address; an unknown user waits the same; a
    correct login meanwhile is not slowed (the wait is scheduled, not slept on the event loop)."""
    import threading
    dm = doorman(doorman_config(users=[SCRAM_USER], auth_failure_delay="300ms", worker_threads=1))

    def timed(user: str, password: str) -> tuple[float, dict]:
        t0 = time.monotonic()
        seen = exchange(dm.port, user, password)
        return time.monotonic() - t0, seen

    first, seen = timed(SCRAM_USER, "wrong")
    assert seen["error"]["C"] == "28P01" and 0.3 <= first < 1.2, (first, seen)
    second, seen = timed(SCRAM_USER, "wrong")
    assert seen["error"]["C"] == "28P01" and 0.6 <= second < 1.5, (second, seen)
    third, unknown = timed("no_such_user", "whatever")
    assert shape(unknown) == shape(seen) and 1.2 <= third < 2.2, (third, unknown)

    # A fourth failure waits 2.4 s; a correct login in the meantime goes through at once.
    slow: dict = {}
    t = threading.Thread(target=lambda: slow.update(zip(("elapsed", "seen"), timed(SCRAM_USER, "wrong"))))
    t.start()
    time.sleep(0.3)
    quick, ok = timed(SCRAM_USER, "scrampass")
    t.join()
    assert ok["ok"] and quick < 0.5, (quick, ok)
    assert slow["seen"]["error"]["C"] == "28P01" and 2.4 <= slow["elapsed"] < 3.5, slow
    # The successful login forgave the address: the next failure waits the base delay again.
    again, seen = timed(SCRAM_USER, "wrong")
    assert seen["error"]["C"] == "28P01" and 0.3 <= again < 1.2, (again, seen)


def test_auth_failure_delay_is_off_by_default(doorman, doorman_config):
    dm = doorman(doorman_config(users=[SCRAM_USER]))
    for _ in range(3):
        t0 = time.monotonic()
        seen = exchange(dm.port, SCRAM_USER, "wrong")
        assert seen["error"]["C"] == "28P01" and time.monotonic() - t0 < 0.5
