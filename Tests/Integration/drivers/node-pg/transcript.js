// Session transcript for node-postgres (pg). See test_driver_transcripts.py for the sections.
//
// Connection from env: PGT_HOST PGT_PORT PGT_USER PGT_PASSWORD PGT_DB. application_name and
// statement_timeout are startup keys node-pg sends itself; TimeZone, DateStyle and
// extra_float_digits go through `options: '-c ...'`.
'use strict';
const { Client } = require('pg');

const NAME = 'node-pg';
const TZS = ['UTC', 'Asia/Tokyo', 'America/New_York', 'Europe/Berlin'];
const TS = "SELECT '2024-03-01 12:34:56+00'::timestamptz::text AS v";

function out(...parts) { process.stdout.write(parts.join(' ') + '\n'); }

async function connect(cfg = {}) {
  const e = process.env;
  const c = new Client({
    host: e.PGT_HOST, port: Number(e.PGT_PORT), user: e.PGT_USER, password: e.PGT_PASSWORD,
    database: e.PGT_DB, application_name: `transcript_${NAME}`, connectionTimeoutMillis: 10000,
    query_timeout: 20000, ...cfg,
  });
  c.on('error', () => {});
  await c.connect();
  return c;
}

async function one(c, sql) { return String(Object.values((await c.query(sql)).rows[0])[0]); }

async function sStartup() {
  const c = await connect({
    options: '-c TimeZone=Asia/Tokyo -c DateStyle=German,DMY -c extra_float_digits=0', statement_timeout: 1500,
  });
  try {
    for (const p of ['TimeZone', 'DateStyle', 'application_name', 'statement_timeout', 'extra_float_digits']) {
      out(`${p}:`, await one(c, `SHOW ${p}`));
    }
    out('pg_stat_activity.application_name:',
      await one(c, 'SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()'));
    out('timestamptz:', await one(c, TS));
    out('interval:', await one(c, "SELECT '1 day 02:03:04'::interval::text"));
    out('float 0.1:', await one(c, 'SELECT 0.1::float8::text'));
    out('float 1/3:', await one(c, 'SELECT (1/3::float8)::text'));
  } finally {
    await c.end();
  }
}

// Another client holds a server, so the next transaction may land on a different one.
async function hold(other) { await other.query('BEGIN'); await other.query('SELECT 1'); }

async function inTx(c, fn) {
  await c.query('BEGIN');
  try {
    const r = await fn();
    await c.query('COMMIT');
    return r;
  } catch (e) {
    await c.query('ROLLBACK').catch(() => {});
    throw e;
  }
}

async function sSet() {
  const c = await connect();
  const other = await connect();
  try {
    await c.query("SET TimeZone = 'America/New_York'");
    for (let i = 1; i <= 4; i++) {
      const h = i % 2 === 0;
      if (h) await hold(other);
      await inTx(c, async () => {
        out(`tx${i} TimeZone:`, await one(c, 'SHOW TimeZone'));
        out(`tx${i} timestamptz:`, await one(c, TS));
      });
      if (h) {
        out(`tx${i} other client TimeZone:`, await one(other, 'SHOW TimeZone'));
        await other.query('COMMIT');
      }
    }
    await c.query("SET IntervalStyle = 'postgres_verbose'");
    for (let i = 1; i <= 2; i++) {
      if (i === 2) await hold(other);
      await inTx(c, async () => {
        out(`interval tx${i}:`, await one(c, "SELECT '1 day 02:03:04'::interval::text"));
      });
      if (i === 2) {
        out('other client IntervalStyle:', await one(other, 'SHOW IntervalStyle'));
        await other.query('COMMIT');
      }
    }
  } finally {
    await c.end();
    await other.end();
  }
}

// node-pg always puts client_encoding=UTF8 in the startup packet and decodes every text as UTF-8; its
// `client_encoding` setting changes neither, so there is nothing to compare.
async function sEncoding() {
  out('skipped');
}

async function sTimeout() {
  const c = await connect({ statement_timeout: 1500 });
  try {
    out('statement_timeout:', await one(c, 'SHOW statement_timeout'));
    try {
      await c.query('SELECT pg_sleep(3)');
      out('pg_sleep(3): completed');
    } catch (e) {
      if (!e.code) throw e;
      out('pg_sleep(3): error', e.code);
    }
    out('after:', await one(c, 'SELECT 1'));
  } finally {
    await c.end();
  }
}

async function sPrepared() {
  const c = await connect();
  const other = await connect();
  try {
    for (let i = 1; i <= 10; i++) {
      const h = i % 2 === 0;
      if (h) await hold(other);
      const row = await inTx(c, async () => (await c.query({
        name: 'transcript_p1', text: "SELECT $1::int * 7 AS n, $2::text || '!' AS s", values: [i, `v${i}`],
      })).rows[0]);
      out(`exec ${i}:`, row.n, row.s);
      if (h) await other.query('COMMIT');
    }
  } finally {
    await c.end();
    await other.end();
  }
}

async function sConcurrency() {
  const conns = [];
  for (const tz of TZS) conns.push(await connect({ options: `-c TimeZone=${tz}` }));
  const seen = TZS.map(() => new Set());
  const counts = TZS.map(() => 0);
  const results = await Promise.allSettled(conns.map(async (c, k) => {
    for (let j = 0; j < 20; j++) {
      await inTx(c, async () => {
        seen[k].add(await one(c, 'SHOW TimeZone'));
        await c.query('SELECT pg_sleep(0.005)');
      });
      counts[k]++;
    }
  }));
  for (const c of conns) await c.end().catch(() => {});
  TZS.forEach((tz, k) => {
    out(`worker ${k} (${tz}) transactions:`, counts[k]);
    out(`worker ${k} (${tz}) saw:`, [...seen[k]].sort().join(','));
  });
  results.forEach((r, k) => { if (r.status === 'rejected') out('error:', `worker ${k}: ${describe(r.reason)}`); });
}

function describe(e) {
  return `${e.code || e.name || 'Error'}: ${String(e.message || e).split('\n')[0]}`;
}

async function main() {
  setTimeout(() => { out('== watchdog: timed out'); process.exit(3); }, 50000).unref();
  for (const [name, fn] of [['startup', sStartup], ['set', sSet], ['encoding', sEncoding],
    ['timeout', sTimeout], ['prepared', sPrepared], ['concurrency', sConcurrency]]) {
    out('==', name);
    try {
      await fn();
    } catch (e) {
      out('error:', describe(e));
    }
  }
  out('== end');
  process.exit(0);
}

main();
