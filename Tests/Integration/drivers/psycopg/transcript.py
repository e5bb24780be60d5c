"""Session transcript for psycopg 3 (libpq). See test_driver_transcripts.py for the sections.

Connection from env: PGT_HOST PGT_PORT PGT_USER PGT_PASSWORD PGT_DB. TimeZone and DateStyle go in the
startup packet the libpq way (PGTZ / PGDATESTYLE), statement_timeout and extra_float_digits through
`options=-c ...`, application_name and client_encoding as connection keywords.
"""
import os
import sys
import threading

import psycopg

NAME = "psycopg"
TZS = ["UTC", "Asia/Tokyo", "America/New_York", "Europe/Berlin"]
TS = "SELECT '2024-03-01 12:34:56+00'::timestamptz::text"
ENC_Q = "SELECT 'caf' || chr(233) || ' ' || chr(241)"


def out(*parts):
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


def connect(tz=None, datestyle=None, options=None, **kw):
    env = os.environ
    for var, val in (("PGTZ", tz), ("PGDATESTYLE", datestyle)):
        if val is None:
            env.pop(var, None)
        else:
            env[var] = val
    params = dict(host=env["PGT_HOST"], port=env["PGT_PORT"], user=env["PGT_USER"], password=env["PGT_PASSWORD"],
                  dbname=env["PGT_DB"], connect_timeout=10, autocommit=True, application_name=f"transcript_{NAME}")
    if options:
        params["options"] = options
    params.update(kw)
    try:
        return psycopg.connect(**params)
    finally:
        env.pop("PGTZ", None)
        env.pop("PGDATESTYLE", None)


def one(conn, sql, params=None):
    return conn.execute(sql, params).fetchone()[0]


def s_startup():
    with connect("Asia/Tokyo", "German, DMY", "-c statement_timeout=1500 -c extra_float_digits=0") as c:
        for p in ("TimeZone", "DateStyle", "application_name", "statement_timeout", "extra_float_digits"):
            out(f"{p}:", one(c, f"SHOW {p}"))
        out("pg_stat_activity.application_name:",
            one(c, "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"))
        out("timestamptz:", one(c, TS))
        out("interval:", one(c, "SELECT '1 day 02:03:04'::interval::text"))
        out("float 0.1:", one(c, "SELECT 0.1::float8::text"))
        out("float 1/3:", one(c, "SELECT (1/3::float8)::text"))


def in_tx(c, fn):
    with c.transaction():
        return fn()


def s_set():
    with connect() as c, connect() as other:
        c.execute("SET TimeZone = 'America/New_York'")
        for i in range(1, 5):
            hold = i % 2 == 0
            if hold:  # another client holds a server, so this transaction may land on a different one
                other.execute("BEGIN")
                other.execute("SELECT 1")
            with c.transaction():
                out(f"tx{i} TimeZone:", one(c, "SHOW TimeZone"))
                out(f"tx{i} timestamptz:", one(c, TS))
            if hold:
                out(f"tx{i} other client TimeZone:", one(other, "SHOW TimeZone"))
                other.execute("COMMIT")
        c.execute("SET IntervalStyle = 'postgres_verbose'")
        for i in range(1, 3):
            if i == 2:
                other.execute("BEGIN")
                other.execute("SELECT 1")
            with c.transaction():
                out(f"interval tx{i}:", one(c, "SELECT '1 day 02:03:04'::interval::text"))
            if i == 2:
                out("other client IntervalStyle:", one(other, "SHOW IntervalStyle"))
                other.execute("COMMIT")


def s_encoding():
    with connect(client_encoding="LATIN1") as c:
        out("client_encoding:", one(c, "SHOW client_encoding"))
        res = c.pgconn.exec_(ENC_Q.encode())
        out("bytes:", res.get_value(0, 0).hex())
        out("text:", one(c, ENC_Q))


def s_timeout():
    with connect(options="-c statement_timeout=1500") as c:
        out("statement_timeout:", one(c, "SHOW statement_timeout"))
        try:
            c.execute("SELECT pg_sleep(3)")
            out("pg_sleep(3): completed")
        except psycopg.Error as e:
            out("pg_sleep(3): error", e.sqlstate)
        out("after:", one(c, "SELECT 1"))


def s_prepared():
    with connect() as c, connect() as other:
        for i in range(1, 11):
            hold = i % 2 == 0
            if hold:
                other.execute("BEGIN")
                other.execute("SELECT 1")
            with c.transaction():
                row = c.execute("SELECT %s::int * 7, %s::text || '!'", (i, f"v{i}"), prepare=True).fetchone()
            out(f"exec {i}:", row[0], row[1])
            if hold:
                other.execute("COMMIT")


def s_concurrency():
    conns = [connect(tz) for tz in TZS]
    seen = [set() for _ in TZS]
    counts = [0] * len(TZS)
    barrier = threading.Barrier(len(TZS))
    errors = []

    def work(k):
        try:
            barrier.wait(10)
            for _ in range(20):
                with conns[k].transaction():
                    seen[k].add(one(conns[k], "SHOW TimeZone"))
                    conns[k].execute("SELECT pg_sleep(0.005)")
                counts[k] += 1
        except Exception as e:  # noqa: BLE001
            errors.append(f"worker {k}: {describe(e)}")

    threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(len(TZS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for c in conns:
        c.close()
    for k, tz in enumerate(TZS):
        out(f"worker {k} ({tz}) transactions:", counts[k])
        out(f"worker {k} ({tz}) saw:", ",".join(sorted(seen[k])))
    for e in sorted(errors):
        out("error:", e)


def describe(e):
    st = getattr(e, "sqlstate", None)
    return f"{st or type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def main():
    threading.Timer(50, lambda: (out("== watchdog: timed out"), os._exit(3))).start()
    for name, fn in (("startup", s_startup), ("set", s_set), ("encoding", s_encoding), ("timeout", s_timeout),
                     ("prepared", s_prepared), ("concurrency", s_concurrency)):
        out("==", name)
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            out("error:", describe(e))
    out("== end")
    os._exit(0)


if __name__ == "__main__":
    main()
