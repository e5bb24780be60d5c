"""A small raw PostgreSQL v3 wire-protocol client for protocol-fidelity tests.

    c = Wire.connect(host, port, user, password, database)
    c.send(parse("s1", "SELECT $1::int"), bind("", "s1", params=[b"1"]), execute(), sync())
    msgs = c.read_until_ready()          # [(type, body), ...] up to and including ReadyForQuery
    c.close()

Message builders return bytes; `send` concatenates them into one write. `read_until_ready(n)` reads
until the n-th ReadyForQuery; `read_for(seconds)` reads whatever arrives within a quiet period
(for Flush without Sync). `normalise(msgs)` drops messages that legitimately differ between a direct
connection and a pooled one (ParameterStatus, BackendKeyData, NoticeResponse, NotificationResponse).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import struct
import time
from typing import Iterable, Sequence

PROTOCOL_V3 = 196608


# --------------------------------------------------------------------------- frontend messages

def _msg(t: bytes, body: bytes = b"") -> bytes:
    return t + struct.pack("!I", len(body) + 4) + body


def _cstr(s: str | bytes) -> bytes:
    if isinstance(s, str):
        s = s.encode()
    return s + b"\0"


def query(sql: str) -> bytes:
    return _msg(b"Q", _cstr(sql))


def parse(name: str, sql: str, oids: Sequence[int] = ()) -> bytes:
    return _msg(b"P", _cstr(name) + _cstr(sql) + struct.pack("!H", len(oids)) + b"".join(struct.pack("!I", o) for o in oids))


def bind(portal: str = "", stmt: str = "", params: Sequence[bytes | None] = (), param_formats: Sequence[int] = (),
         result_formats: Sequence[int] = ()) -> bytes:
    body = _cstr(portal) + _cstr(stmt)
    body += struct.pack("!H", len(param_formats)) + b"".join(struct.pack("!H", f) for f in param_formats)
    body += struct.pack("!H", len(params))
    for p in params:
        if p is None:
            body += struct.pack("!i", -1)
        else:
            if isinstance(p, str):
                p = p.encode()
            body += struct.pack("!i", len(p)) + p
    body += struct.pack("!H", len(result_formats)) + b"".join(struct.pack("!H", f) for f in result_formats)
    return _msg(b"B", body)


def describe(kind: str, name: str = "") -> bytes:
    return _msg(b"D", kind.encode() + _cstr(name))


def execute(portal: str = "", max_rows: int = 0) -> bytes:
    return _msg(b"E", _cstr(portal) + struct.pack("!I", max_rows))


def close(kind: str, name: str = "") -> bytes:
    return _msg(b"C", kind.encode() + _cstr(name))


def sync() -> bytes:
    return _msg(b"S")


def flush() -> bytes:
    return _msg(b"H")


def copy_data(data: bytes) -> bytes:
    return _msg(b"d", data)


def copy_done() -> bytes:
    return _msg(b"c")


def copy_fail(message: str) -> bytes:
    return _msg(b"f", _cstr(message))


def function_call(oid: int, args: Sequence[bytes | None] = (), arg_formats: Sequence[int] = (), result_format: int = 0) -> bytes:
    body = struct.pack("!I", oid)
    body += struct.pack("!H", len(arg_formats)) + b"".join(struct.pack("!H", f) for f in arg_formats)
    body += struct.pack("!H", len(args))
    for a in args:
        if a is None:
            body += struct.pack("!i", -1)
        else:
            body += struct.pack("!i", len(a)) + a
    body += struct.pack("!H", result_format)
    return _msg(b"F", body)


def terminate() -> bytes:
    return _msg(b"X")


# --------------------------------------------------------------------------- backend message helpers

def error_fields(body: bytes) -> dict[str, str]:
    out = {}
    for f in body.split(b"\0"):
        if f:
            out[f[:1].decode()] = f[1:].decode(errors="replace")
    return out


def data_row(body: bytes) -> list[bytes | None]:
    n = struct.unpack("!H", body[:2])[0]
    pos, cols = 2, []
    for _ in range(n):
        ln = struct.unpack("!i", body[pos:pos + 4])[0]
        pos += 4
        if ln < 0:
            cols.append(None)
        else:
            cols.append(body[pos:pos + ln])
            pos += ln
    return cols


def rows(msgs: Iterable[tuple[bytes, bytes]]) -> list[list[bytes | None]]:
    return [data_row(b) for t, b in msgs if t == b"D"]


def types(msgs: Iterable[tuple[bytes, bytes]]) -> str:
    return "".join(t.decode() for t, _ in msgs)


IGNORED = {b"S", b"K", b"N", b"A"}


def normalise(msgs: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, object]]:
    """Readable, comparable form: ignored kinds dropped; ErrorResponse reduced to its severity, code and
    message (file/line/routine are the same server anyway, but keep the comparison about meaning)."""
    out: list[tuple[str, object]] = []
    for t, b in msgs:
        if t in IGNORED:
            continue
        if t == b"E":
            f = error_fields(b)
            out.append(("E", (f.get("S"), f.get("C"), f.get("M"), f.get("D"), f.get("P"))))
        elif t == b"D":
            out.append(("D", tuple(data_row(b))))
        else:
            out.append((t.decode(), b))
    return out


class WireError(Exception):
    pass


class Wire:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""
        self.params: dict[str, str] = {}
        self.backend_key: tuple[int, int] | None = None

    # -- connection
    @classmethod
    def connect(cls, host: str, port: int, user: str, password: str, database: str = "example_db",
                timeout: float = 10.0, params: dict[str, str] | None = None) -> "Wire":
        s = socket.create_connection((host, port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c = cls(s)
        c._startup(user, password, database, params or {})
        return c

    def _startup(self, user: str, password: str, database: str, params: dict[str, str]) -> None:
        body = struct.pack("!I", PROTOCOL_V3) + _cstr("user") + _cstr(user) + _cstr("database") + _cstr(database)
        for k, v in params.items():
            body += _cstr(k) + _cstr(v)
        body += b"\0"
        self.sock.sendall(struct.pack("!I", len(body) + 4) + body)
        scram = None
        while True:
            t, b = self.read_message()
            if t == b"E":
                raise WireError(f"startup error: {error_fields(b)}")
            if t == b"R":
                code = struct.unpack("!I", b[:4])[0]
                if code == 0:
                    continue
                if code == 3:
                    self.sock.sendall(_msg(b"p", _cstr(password)))
                elif code == 5:
                    salt = b[4:8]
                    inner = hashlib.md5(password.encode() + user.encode()).hexdigest()
                    outer = "md5" + hashlib.md5(inner.encode() + salt).hexdigest()
                    self.sock.sendall(_msg(b"p", _cstr(outer)))
                elif code == 10:
                    mechs = [m.decode() for m in b[4:].split(b"\0") if m]
                    if "SCRAM-SHA-256" not in mechs:
                        raise WireError(f"no supported SASL mechanism in {mechs}")
                    scram = _Scram(password)
                    first = scram.client_first()
                    self.sock.sendall(_msg(b"p", _cstr("SCRAM-SHA-256") + struct.pack("!i", len(first)) + first))
                elif code == 11:
                    assert scram is not None
                    final = scram.client_final(b[4:])
                    self.sock.sendall(_msg(b"p", final))
                elif code == 12:
                    assert scram is not None
                    scram.verify_server_final(b[4:])
                else:
                    raise WireError(f"unsupported auth code {code}")
            elif t == b"S":
                k, v, _ = b.split(b"\0", 2)
                self.params[k.decode()] = v.decode()
            elif t == b"K":
                self.backend_key = struct.unpack("!ii", b[:8])
            elif t == b"Z":
                return

    def close(self) -> None:
        try:
            self.sock.sendall(terminate())
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self) -> None:
        """Close the socket without Terminate (a client vanishing)."""
        try:
            self.sock.close()
        except OSError:
            pass

    # -- I/O
    def send(self, *msgs: bytes) -> None:
        self.sock.sendall(b"".join(msgs))

    def _fill(self, timeout: float | None) -> bool:
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        if not chunk:
            raise ConnectionError("connection closed by peer")
        self.buf += chunk
        return True

    def _take(self) -> tuple[bytes, bytes] | None:
        if len(self.buf) < 5:
            return None
        t = self.buf[:1]
        ln = struct.unpack("!I", self.buf[1:5])[0]
        if len(self.buf) < 1 + ln:
            return None
        body = self.buf[5:1 + ln]
        self.buf = self.buf[1 + ln:]
        return t, body

    def read_message(self, timeout: float = 10.0) -> tuple[bytes, bytes]:
        deadline = time.monotonic() + timeout
        while True:
            m = self._take()
            if m is not None:
                return m
            left = deadline - time.monotonic()
            if left <= 0 or not self._fill(left):
                raise TimeoutError(f"no complete message within {timeout}s (buffered {len(self.buf)} bytes)")

    def read_until_ready(self, count: int = 1, timeout: float = 10.0) -> list[tuple[bytes, bytes]]:
        """Messages up to and including the `count`-th ReadyForQuery. Raises TimeoutError (with what
        arrived so far attached as `.partial`) on timeout."""
        out: list[tuple[bytes, bytes]] = []
        deadline = time.monotonic() + timeout
        seen = 0
        while seen < count:
            try:
                m = self.read_message(timeout=max(0.01, deadline - time.monotonic()))
            except TimeoutError as e:
                e.partial = out  # type: ignore[attr-defined]
                raise TimeoutError(f"{e}; got so far: {types(out)!r}") from None
            out.append(m)
            if m[0] == b"Z":
                seen += 1
        return out

    def read_until(self, stop: bytes, timeout: float = 10.0) -> list[tuple[bytes, bytes]]:
        """Messages up to and including the first of type `stop` (e.g. b'G' CopyInResponse)."""
        out: list[tuple[bytes, bytes]] = []
        deadline = time.monotonic() + timeout
        while True:
            m = self.read_message(timeout=max(0.01, deadline - time.monotonic()))
            out.append(m)
            if m[0] == stop:
                return out

    def read_for(self, quiet: float = 0.5, limit: float = 5.0) -> list[tuple[bytes, bytes]]:
        """Whatever arrives until nothing more comes for `quiet` seconds (at most `limit`)."""
        out: list[tuple[bytes, bytes]] = []
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            m = self._take()
            if m is not None:
                out.append(m)
                continue
            if not self._fill(quiet):
                break
        while (m := self._take()) is not None:
            out.append(m)
        return out

    def query(self, sql: str, timeout: float = 10.0) -> list[tuple[bytes, bytes]]:
        self.send(query(sql))
        return self.read_until_ready(timeout=timeout)

    def scalar(self, sql: str):
        msgs = self.query(sql)
        errs = [error_fields(b) for t, b in msgs if t == b"E"]
        if errs:
            raise WireError(errs[0])
        r = rows(msgs)
        v = r[0][0] if r else None
        return v.decode() if isinstance(v, bytes) else v


# --------------------------------------------------------------------------- SCRAM-SHA-256 client

class _Scram:
    def __init__(self, password: str):
        self.password = password.encode()
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.first_bare = f"n=,r={self.nonce}"
        self.server_sig = b""

    def client_first(self) -> bytes:
        return ("n,," + self.first_bare).encode()

    def client_final(self, server_first: bytes) -> bytes:
        sf = server_first.decode()
        attrs = dict(kv.split("=", 1) for kv in sf.split(","))
        rnonce, salt, iters = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
        if not rnonce.startswith(self.nonce):
            raise WireError("SCRAM nonce mismatch")
        salted = hashlib.pbkdf2_hmac("sha256", self.password, salt, iters)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={rnonce}"
        auth_msg = f"{self.first_bare},{sf},{without_proof}".encode()
        sig = hmac.new(stored_key, auth_msg, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, sig))
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        self.server_sig = hmac.new(server_key, auth_msg, hashlib.sha256).digest()
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify_server_final(self, data: bytes) -> None:
        attrs = dict(kv.split("=", 1) for kv in data.decode().split(","))
        if base64.b64decode(attrs.get("v", "")) != self.server_sig:
            raise WireError("SCRAM server signature mismatch")
