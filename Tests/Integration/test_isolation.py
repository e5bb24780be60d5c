"""One client's bad input never reaches another client (issue #19)."""
from __future__ import annotations

import struct
import threading
import time

import pytest

from wire import Wire, WireError, error_fields, query, rows

MD5_USER, MD5_PW = "example_user_md5", "md5pass"


def stray(kind: bytes) -> bytes:
    """A frontend message PostgreSQL rejects in an established session."""
    return kind + struct.pack("!i", 4)


def read_error(w: Wire) -> dict[str, str]:
    """Reads until an ErrorResponse; returns its fields."""
    while True:
        t, b = w.read_message(timeout=10)
        if t == b"E":
            return error_fields(b)


@pytest.mark.parametrize("kind", [b"z", b"p"])
def test_stray_message_before_the_end_of_a_transaction_does_not_kill_the_next_client(doorman, doorman_config, kind):
    # One server: the client queued behind the offender gets the server the offender used.
    dm = doorman(doorman_config(pool_size=1))
    offender = Wire.connect(dm.host, dm.port, MD5_USER, MD5_PW)
    innocent = Wire.connect(dm.host, dm.port, MD5_USER, MD5_PW)
    assert innocent.scalar("SELECT 1") in (1, "1", b"1")
    result: dict[str, object] = {}

    def run_innocent():
        time.sleep(0.05)  # queue behind the offender's transaction
        try:
            innocent.send(query("SELECT 2"))
            result["rows"] = rows(innocent.read_until_ready())
        except (WireError, OSError) as e:
            result["error"] = e

    t = threading.Thread(target=run_innocent)
    t.start()
    # The stray message follows a statement that ends the offender's transaction in the same write.
    offender.send(query("SELECT pg_sleep(0.3)") + stray(kind))
    fields = read_error(offender)
    assert fields.get("C") == "08P01", fields
    assert "invalid frontend message type" in fields.get("M", ""), fields
    t.join(15)
    assert "error" not in result, result
    assert result.get("rows") == [[b"2"]], result
    # and the innocent client goes on using the pool
    innocent.send(query("SELECT 3"))
    assert rows(innocent.read_until_ready()) == [[b"3"]]
    innocent.close()


def test_stray_message_in_session_mode_is_answered_by_the_pooler(doorman, doorman_config):
    dm = doorman(doorman_config(pool_mode="session", pool_size=1))
    offender = Wire.connect(dm.host, dm.port, MD5_USER, MD5_PW)
    offender.send(query("SELECT 1"))
    offender.read_until_ready()
    offender.send(stray(b"z"))
    fields = read_error(offender)
    assert fields.get("C") == "08P01", fields
    # the server the offender held was clean: the next client gets in and works
    nxt = Wire.connect(dm.host, dm.port, MD5_USER, MD5_PW)
    nxt.send(query("SELECT 4"))
    assert rows(nxt.read_until_ready()) == [[b"4"]]
    nxt.close()


# --------------------------------------------------------------------------- memory stays bounded

def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def send_for(sock, header: bytes, total: int, seconds: float) -> int:
    """Sends a message header then up to `total` body bytes for at most `seconds`, without blocking
    on a full socket (a pooler that stops reading makes the send stall). Returns the bytes sent."""
    sock.setblocking(False)
    sent = 0
    chunk = b"x" * 65536
    deadline = time.monotonic() + seconds
    pending = header
    import select
    while time.monotonic() < deadline and sent < total:
        _, w, _ = select.select([], [sock], [], 0.05)
        if not w:
            continue
        data = pending or chunk[: min(len(chunk), total - sent)]
        try:
            n = sock.send(data)
        except BlockingIOError:
            continue
        if pending:
            pending = pending[n:]
        else:
            sent += n
    return sent


def test_client_waiting_for_a_server_cannot_fill_the_poolers_memory(doorman, doorman_config):
    dm = doorman(doorman_config(pool_size=1, query_wait_timeout=20000))
    holder = Wire.connect(dm.host, dm.port, MD5_USER, MD5_PW)
    holder.send(query("BEGIN"))
    holder.read_until_ready()  # holds the only server
    waiter = Wire.connect(dm.host, dm.port, MD5_USER, MD5_PW)
    before = rss_kib(dm.pid)
    size = 200 * 1024 * 1024
    header = b"Q" + struct.pack("!i", 4 + size + 1)
    sent = send_for(waiter.sock, header, size, 6.0)
    grown = rss_kib(dm.pid) - before
    # the pooler stopped reading: the client could not push the whole query, and memory stayed small
    assert sent < size, sent
    assert grown < 64 * 1024, f"RSS grew by {grown} KiB while a waiting client sent {sent} bytes"
    holder.abort()
    waiter.abort()


def test_huge_query_in_prepared_mode_is_streamed_and_others_keep_running(doorman, doorman_config):
    dm = doorman(doorman_config(pool_size=4, prepared_statements_cache_size=100))
    big = Wire.connect(dm.host, dm.port, MD5_USER, MD5_PW)
    # switch the big client to the rewriter first (a named statement)
    from wire import parse, bind, execute, sync
    big.send(parse("s1", "SELECT 1"), bind("", "s1"), execute(), sync())
    big.read_until_ready()
    others = [Wire.connect(dm.host, dm.port, MD5_USER, MD5_PW) for _ in range(3)]
    before = rss_kib(dm.pid)
    size = 120 * 1024 * 1024
    sql_head = b"SELECT length('"
    header = b"Q" + struct.pack("!i", 4 + len(sql_head) + size + 3)  # body: head, x…, quote, paren, NUL
    worst = [0.0]
    stop = threading.Event()

    def probe():
        while not stop.is_set():
            for o in others:
                t0 = time.monotonic()
                o.send(query("SELECT 1"))
                o.read_until_ready()
                worst[0] = max(worst[0], time.monotonic() - t0)
            time.sleep(0.05)

    t = threading.Thread(target=probe)
    t.start()
    try:
        sent = send_for(big.sock, header + sql_head, size, 20.0)
    finally:
        stop.set()
        t.join(30)
    grown = rss_kib(dm.pid) - before
    assert sent == size, f"only {sent} of {size} bytes went through in 20 s"
    assert grown < 96 * 1024, f"RSS grew by {grown} KiB for a {size >> 20} MiB query"
    assert worst[0] < 2.0, f"another client waited {worst[0]:.2f} s for SELECT 1"
    big.sock.setblocking(True)
    big.send(b"')")
    big.sock.sendall(b"\0")
    msgs = big.read_until_ready(timeout=60)
    assert rows(msgs) == [[str(size).encode()]], msgs[:3]
    for o in others:
        o.close()
    big.close()


# --------------------------------------------------------------------------- a client that dies mid-statement

def test_client_killed_mid_statement_has_its_statement_cancelled(doorman, doorman_config, pg):
    import psycopg
    pg.su_psql("CREATE TABLE IF NOT EXISTS isolation_lock (id int primary key, v int); "
               "INSERT INTO isolation_lock VALUES (1, 0) ON CONFLICT DO NOTHING; "
               f"GRANT ALL ON isolation_lock TO {MD5_USER}", db="example_db")
    dm = doorman(doorman_config(pool_size=2))
    victim = Wire.connect(dm.host, dm.port, MD5_USER, MD5_PW)
    victim.send(query("BEGIN; UPDATE isolation_lock SET v = v + 1 WHERE id = 1; SELECT pg_sleep(20)"))
    time.sleep(0.5)
    victim.abort()  # gone in the middle of its statement, its row lock held
    t0 = time.monotonic()
    with psycopg.connect(pg.dsn(MD5_USER), autocommit=True) as c:
        c.execute("SET lock_timeout = '15s'")
        c.execute("UPDATE isolation_lock SET v = v + 1 WHERE id = 1")
    waited = time.monotonic() - t0
    assert waited < 3.0, f"the next writer waited {waited:.1f} s for the dead client's row lock"


# --------------------------------------------------------------------------- fuzzed sessions beside canaries

def mutated_session(rng) -> bytes:
    """What a buggy or hostile client might send after logging in: valid messages, stray types,
    lengths that lie, cut messages and random bytes, in random order."""
    from wire import bind, describe, execute, parse, sync, flush, copy_data, copy_done
    pieces = [
        query("SELECT 1"), query("BEGIN"), query("SELECT pg_sleep(0.01)"), query("COMMIT"), query("ROLLBACK"),
        query("SET TimeZone = 'Asia/Tokyo'"), query("SET work_mem = '9MB'"), query("LISTEN fuzz"),
        parse("", "SELECT $1::int"), parse("fz", "SELECT 2"), bind("", "", [b"7"]), bind("", "fz"),
        describe("S", "fz"), execute(), sync(), flush(), copy_data(b"junk"), copy_done(),
        stray(b"z"), stray(b"p"), b"Q" + struct.pack("!i", 3), b"Q" + struct.pack("!i", 0x7fffffff),
        bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 40))),
    ]
    out = b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 8)))
    if rng.random() < 0.3:
        out = out[: rng.randint(1, len(out))]  # cut anywhere
    return out


def test_fuzzed_sessions_never_harm_canary_clients(doorman, doorman_config):
    import random
    dm = doorman(doorman_config(pool_size=4, prepared_statements_cache_size=100))
    before = rss_kib(dm.pid)
    stop = threading.Event()
    harmed: list[str] = []
    done = [0]

    def canary(n: int):
        try:
            w = Wire.connect(dm.host, dm.port, MD5_USER, MD5_PW)
            while not stop.is_set():
                w.send(query(f"SELECT {n}, current_setting('TimeZone'), current_setting('work_mem')"))
                r = rows(w.read_until_ready(timeout=20))
                if r[0][0] != str(n).encode() or r[0][2] != b"4MB":
                    harmed.append(f"canary {n} got {r}")
                    return
                done[0] += 1
            w.close()
        except Exception as e:  # noqa: BLE001 - any failure of a well-behaved client is the finding
            harmed.append(f"canary {n}: {e!r}")

    canaries = [threading.Thread(target=canary, args=(n,)) for n in range(4)]
    for t in canaries:
        t.start()
    rng = random.Random(20261204)
    sessions = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and sessions < 400 and not harmed:
        try:
            f = Wire.connect(dm.host, dm.port, MD5_USER, MD5_PW, timeout=5)
            f.sock.settimeout(0.2)
            try:
                f.sock.sendall(mutated_session(rng))
                f.sock.recv(65536)
            except OSError:
                pass
            if rng.random() < 0.5:
                f.abort()
            else:
                f.close()
        except (WireError, OSError):
            pass
        sessions += 1
    stop.set()
    for t in canaries:
        t.join(30)
    assert not harmed, harmed[:5]
    assert done[0] > 0
    assert dm.alive()
    grown = rss_kib(dm.pid) - before
    assert grown < 100 * 1024, f"RSS grew by {grown} KiB over {sessions} fuzzed sessions"


def test_max_memory_usage_refuses_a_message_too_large_to_hold(doorman, doorman_config):
    from wire import bind, execute, parse, sync
    dm = doorman(doorman_config(pool_size=2, prepared_statements_cache_size=100, max_memory_usage="1MB"))
    big = Wire.connect(dm.host, dm.port, MD5_USER, MD5_PW)
    big.send(parse("s1", "SELECT length($1::text)"), bind("", "s1", [b"ok"]), execute(), sync())
    assert rows(big.read_until_ready()) == [[b"2"]]
    # a Bind the rewriter must hold whole (it renames the statement), larger than the whole budget
    # The pooler answers and closes while the client is still sending: the client's kernel may
    # reset the connection before it reads the error, so the log says what the client was told.
    try:
        big.send(bind("", "s1", [b"x" * (3 << 20)]), execute(), sync())
        fields = read_error(big)
        assert fields.get("C") == "53200", fields
    except (ConnectionResetError, BrokenPipeError, WireError):
        pass
    assert dm.wait_for_log("FATAL 53200", 5), dm.log()
    # nobody else is hurt, and a message within the budget still goes through
    other = Wire.connect(dm.host, dm.port, MD5_USER, MD5_PW)
    other.send(parse("s2", "SELECT length($1::text)"), bind("", "s2", [b"y" * (512 << 10)]), execute(), sync())
    assert rows(other.read_until_ready()) == [[str(512 << 10).encode()]]
    other.close()


def test_large_rows_in_prepared_mode_are_relayed_in_pieces(doorman, doorman_config):
    """message_size_to_be_stream: a DataRow larger than it is relayed as it arrives, even where the
    rewriter relays the session (named statements), so it is never held whole: 20 MB rows come through
    a pooler whose whole in-flight budget is 4 MB. A threshold above the budget makes the pooler hold
    the row whole, which the budget then refuses (53200) — the setting is what decides."""
    from wire import bind, execute, parse, sync
    rowsize = 20 << 20
    for threshold, fits in (("64KB", True), ("64MB", False)):
        dm = doorman(doorman_config(pool_size=2, prepared_statements_cache_size=100, max_memory_usage="4MB",
                                    message_size_to_be_stream=threshold))
        w = Wire.connect(dm.host, dm.port, MD5_USER, MD5_PW)
        w.send(parse("big", "SELECT repeat('x', $1::int), 7"), bind("", "big", [str(rowsize).encode()]), execute(),
               sync())
        if fits:
            for _ in range(3):  # twice more on the same session: the stream stays in step
                msgs = w.read_until_ready(timeout=30)
                got = rows(msgs)
                assert len(got) == 1 and len(got[0][0]) == rowsize and got[0][1] == b"7", [t for t, _ in msgs]
                w.send(bind("", "big", [str(rowsize).encode()]), execute(), sync())
            w.read_until_ready(timeout=30)
            assert w.scalar("SELECT 1") == "1"
            w.close()
        else:
            fields = read_error(w)
            assert fields.get("C") == "53200", fields
        dm.stop()
