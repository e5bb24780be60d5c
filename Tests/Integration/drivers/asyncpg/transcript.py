"""Session transcript for asyncpg. See test_driver_transcripts.py for the sections.

Connection from env: PGT_HOST PGT_PORT PGT_USER PGT_PASSWORD PGT_DB. Every parameter goes in the startup
packet through `server_settings`.
"""
import asyncio
import os
import sys

import asyncpg

NAME = "asyncpg"
TZS = ["UTC", "Asia/Tokyo", "America/New_York", "Europe/Berlin"]
TS = "SELECT '2024-03-01 12:34:56+00'::timestamptz::text"
ENC_Q = "SELECT 'caf' || chr(233) || ' ' || chr(241)"


def out(*parts):
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


async def connect(**settings):
    e = os.environ
    server_settings = {"application_name": f"transcript_{NAME}", **settings}
    return await asyncpg.connect(host=e["PGT_HOST"], port=int(e["PGT_PORT"]), user=e["PGT_USER"],
                                 password=e["PGT_PASSWORD"], database=e["PGT_DB"], timeout=10,
                                 command_timeout=20, server_settings=server_settings)


async def s_startup():
    c = await connect(TimeZone="Asia/Tokyo", DateStyle="German, DMY", statement_timeout="1500",
                      extra_float_digits="0")
    try:
        for p in ("TimeZone", "DateStyle", "application_name", "statement_timeout", "extra_float_digits"):
            out(f"{p}:", await c.fetchval(f"SHOW {p}"))
        out("pg_stat_activity.application_name:",
            await c.fetchval("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"))
        out("timestamptz:", await c.fetchval(TS))
        out("interval:", await c.fetchval("SELECT '1 day 02:03:04'::interval::text"))
        out("float 0.1:", await c.fetchval("SELECT 0.1::float8::text"))
        out("float 1/3:", await c.fetchval("SELECT (1/3::float8)::text"))
    finally:
        await c.close()


async def hold(other):
    """Another client holds a server, so the next transaction may land on a different one."""
    tx = other.transaction()
    await tx.start()
    await other.execute("SELECT 1")
    return tx


async def s_set():
    c, other = await connect(), await connect()
    try:
        await c.execute("SET TimeZone = 'America/New_York'")
        for i in range(1, 5):
            tx = await hold(other) if i % 2 == 0 else None
            async with c.transaction():
                out(f"tx{i} TimeZone:", await c.fetchval("SHOW TimeZone"))
                out(f"tx{i} timestamptz:", await c.fetchval(TS))
            if tx:
                out(f"tx{i} other client TimeZone:", await other.fetchval("SHOW TimeZone"))
                await tx.commit()
        await c.execute("SET IntervalStyle = 'postgres_verbose'")
        for i in range(1, 3):
            tx = await hold(other) if i == 2 else None
            async with c.transaction():
                out(f"interval tx{i}:", await c.fetchval("SELECT '1 day 02:03:04'::interval::text"))
            if tx:
                out("other client IntervalStyle:", await other.fetchval("SHOW IntervalStyle"))
                await tx.commit()
    finally:
        await c.close()
        await other.close()


async def s_encoding():
    c = await connect(client_encoding="LATIN1")
    try:
        out("client_encoding:", await c.fetchval("SHOW client_encoding"))
        text = await c.fetchval(ENC_Q)
        await c.set_type_codec("text", schema="pg_catalog", encoder=lambda b: b, decoder=lambda b: b,
                               format="binary")
        raw = await c.fetchval(ENC_Q)
        out("bytes:", bytes(raw).hex())
        out("text:", text)
    finally:
        await c.close()


async def s_timeout():
    c = await connect(statement_timeout="1500")
    try:
        out("statement_timeout:", await c.fetchval("SHOW statement_timeout"))
        try:
            await c.execute("SELECT pg_sleep(3)")
            out("pg_sleep(3): completed")
        except asyncpg.PostgresError as e:
            out("pg_sleep(3): error", e.sqlstate)
        out("after:", await c.fetchval("SELECT 1"))
    finally:
        await c.close()


async def s_prepared():
    c, other = await connect(), await connect()
    try:
        stmt = await c.prepare("SELECT $1::int * 7, $2::text || '!'")
        for i in range(1, 11):
            tx = await hold(other) if i % 2 == 0 else None
            async with c.transaction():
                row = await stmt.fetchrow(i, f"v{i}")
            out(f"exec {i}:", row[0], row[1])
            if tx:
                await tx.commit()
    finally:
        await c.close()
        await other.close()


async def s_concurrency():
    conns = [await connect(TimeZone=tz) for tz in TZS]
    seen = [set() for _ in TZS]
    counts = [0] * len(TZS)

    async def work(k):
        c = conns[k]
        for _ in range(20):
            async with c.transaction():
                seen[k].add(await c.fetchval("SHOW TimeZone"))
                await c.execute("SELECT pg_sleep(0.005)")
            counts[k] += 1

    try:
        results = await asyncio.gather(*(work(k) for k in range(len(TZS))), return_exceptions=True)
    finally:
        for c in conns:
            await c.close()
    for k, tz in enumerate(TZS):
        out(f"worker {k} ({tz}) transactions:", counts[k])
        out(f"worker {k} ({tz}) saw:", ",".join(sorted(seen[k])))
    for k, r in enumerate(results):
        if isinstance(r, BaseException):
            out("error:", f"worker {k}: {describe(r)}")


def describe(e):
    st = getattr(e, "sqlstate", None)
    return f"{st or type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


async def main():
    for name, fn in (("startup", s_startup), ("set", s_set), ("encoding", s_encoding), ("timeout", s_timeout),
                     ("prepared", s_prepared), ("concurrency", s_concurrency)):
        out("==", name)
        try:
            await asyncio.wait_for(fn(), 30)
        except Exception as e:  # noqa: BLE001
            out("error:", describe(e))
    out("== end")


if __name__ == "__main__":
    asyncio.run(main())
