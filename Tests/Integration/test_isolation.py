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
