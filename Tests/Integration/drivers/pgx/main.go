// Session transcript for pgx v4. See test_driver_transcripts.py for the sections.
//
// Connection from env: PGT_HOST PGT_PORT PGT_USER PGT_PASSWORD PGT_DB. Every parameter goes in the
// startup packet through ConnConfig.RuntimeParams. pgx's default statement cache prepares every query.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgconn"
	"github.com/jackc/pgx/v4"
)

const name = "pgx"
const tsQ = "SELECT '2024-03-01 12:34:56+00'::timestamptz::text"
const encQ = "SELECT 'caf' || chr(233) || ' ' || chr(241)"

var tzs = []string{"UTC", "Asia/Tokyo", "America/New_York", "Europe/Berlin"}

func out(parts ...interface{}) {
	s := make([]string, len(parts))
	for i, p := range parts {
		s[i] = fmt.Sprint(p)
	}
	fmt.Fprintln(os.Stdout, strings.Join(s, " "))
}

func ctx() context.Context {
	c, _ := context.WithTimeout(context.Background(), 20*time.Second) //nolint:govet
	return c
}

func connect(params map[string]string) (*pgx.Conn, error) {
	e := os.Getenv
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%s user=%s password=%s dbname=%s sslmode=disable connect_timeout=10",
		e("PGT_HOST"), e("PGT_PORT"), e("PGT_USER"), e("PGT_PASSWORD"), e("PGT_DB")))
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["application_name"] = "transcript_" + name
	for k, v := range params {
		cfg.RuntimeParams[k] = v
	}
	return pgx.ConnectConfig(ctx(), cfg)
}

func one(c *pgx.Conn, sql string, args ...interface{}) string {
	var s string
	if err := c.QueryRow(ctx(), sql, args...).Scan(&s); err != nil {
		panic(err)
	}
	return s
}

func exec(c interface {
	Exec(context.Context, string, ...interface{}) (pgconn.CommandTag, error)
}, sql string) {
	if _, err := c.Exec(ctx(), sql); err != nil {
		panic(err)
	}
}

func must(c *pgx.Conn, err error) *pgx.Conn {
	if err != nil {
		panic(err)
	}
	return c
}

func sStartup() {
	c := must(connect(map[string]string{"TimeZone": "Asia/Tokyo", "DateStyle": "German, DMY",
		"statement_timeout": "1500", "extra_float_digits": "0"}))
	defer c.Close(context.Background())
	for _, p := range []string{"TimeZone", "DateStyle", "application_name", "statement_timeout", "extra_float_digits"} {
		out(p+":", one(c, "SHOW "+p))
	}
	out("pg_stat_activity.application_name:", one(c, "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"))
	out("timestamptz:", one(c, tsQ))
	out("interval:", one(c, "SELECT '1 day 02:03:04'::interval::text"))
	out("float 0.1:", one(c, "SELECT 0.1::float8::text"))
	out("float 1/3:", one(c, "SELECT (1/3::float8)::text"))
}

// hold: another client holds a server, so the next transaction may land on a different one.
func hold(other *pgx.Conn) pgx.Tx {
	tx, err := other.Begin(ctx())
	if err != nil {
		panic(err)
	}
	exec(tx, "SELECT 1")
	return tx
}

func inTx(c *pgx.Conn, fn func(tx pgx.Tx)) {
	tx, err := c.Begin(ctx())
	if err != nil {
		panic(err)
	}
	fn(tx)
	if err := tx.Commit(ctx()); err != nil {
		panic(err)
	}
}

func txOne(tx pgx.Tx, sql string, args ...interface{}) string {
	var s string
	if err := tx.QueryRow(ctx(), sql, args...).Scan(&s); err != nil {
		panic(err)
	}
	return s
}

func sSet() {
	c := must(connect(nil))
	defer c.Close(context.Background())
	other := must(connect(nil))
	defer other.Close(context.Background())
	exec(c, "SET TimeZone = 'America/New_York'")
	for i := 1; i <= 4; i++ {
		var h pgx.Tx
		if i%2 == 0 {
			h = hold(other)
		}
		inTx(c, func(tx pgx.Tx) {
			out(fmt.Sprintf("tx%d TimeZone:", i), txOne(tx, "SHOW TimeZone"))
			out(fmt.Sprintf("tx%d timestamptz:", i), txOne(tx, tsQ))
		})
		if h != nil {
			out(fmt.Sprintf("tx%d other client TimeZone:", i), txOne(h, "SHOW TimeZone"))
			if err := h.Commit(ctx()); err != nil {
				panic(err)
			}
		}
	}
	exec(c, "SET IntervalStyle = 'postgres_verbose'")
	for i := 1; i <= 2; i++ {
		var h pgx.Tx
		if i == 2 {
			h = hold(other)
		}
		inTx(c, func(tx pgx.Tx) {
			out(fmt.Sprintf("interval tx%d:", i), txOne(tx, "SELECT '1 day 02:03:04'::interval::text"))
		})
		if h != nil {
			out("other client IntervalStyle:", txOne(h, "SHOW IntervalStyle"))
			if err := h.Commit(ctx()); err != nil {
				panic(err)
			}
		}
	}
}

func sEncoding() {
	c := must(connect(map[string]string{"client_encoding": "LATIN1"}))
	defer c.Close(context.Background())
	out("client_encoding:", one(c, "SHOW client_encoding"))
	var raw []byte
	if err := c.QueryRow(ctx(), encQ).Scan(&raw); err != nil {
		panic(err)
	}
	out("bytes:", fmt.Sprintf("%x", raw))
	// pgx hands over the bytes as they came; decode them per the client_encoding the server reported.
	text := string(raw)
	if c.PgConn().ParameterStatus("client_encoding") == "LATIN1" {
		r := make([]rune, len(raw))
		for i, b := range raw {
			r[i] = rune(b)
		}
		text = string(r)
	}
	out("text:", text)
}

func sTimeout() {
	c := must(connect(map[string]string{"statement_timeout": "1500"}))
	defer c.Close(context.Background())
	out("statement_timeout:", one(c, "SHOW statement_timeout"))
	_, err := c.Exec(ctx(), "SELECT pg_sleep(3)")
	var pe *pgconn.PgError
	if err == nil {
		out("pg_sleep(3): completed")
	} else if errors.As(err, &pe) {
		out("pg_sleep(3): error", pe.Code)
	} else {
		panic(err)
	}
	out("after:", one(c, "SELECT 1::text"))
}

func sPrepared() {
	c := must(connect(nil))
	defer c.Close(context.Background())
	other := must(connect(nil))
	defer other.Close(context.Background())
	if _, err := c.Prepare(ctx(), "transcript_p1", "SELECT $1::int * 7, $2::text || '!'"); err != nil {
		panic(err)
	}
	for i := 1; i <= 10; i++ {
		var h pgx.Tx
		if i%2 == 0 {
			h = hold(other)
		}
		var n int32
		var s string
		inTx(c, func(tx pgx.Tx) {
			if err := tx.QueryRow(ctx(), "transcript_p1", i, fmt.Sprintf("v%d", i)).Scan(&n, &s); err != nil {
				panic(err)
			}
		})
		out(fmt.Sprintf("exec %d:", i), n, s)
		if h != nil {
			if err := h.Commit(ctx()); err != nil {
				panic(err)
			}
		}
	}
}

func sConcurrency() {
	conns := make([]*pgx.Conn, len(tzs))
	for k, tz := range tzs {
		conns[k] = must(connect(map[string]string{"TimeZone": tz}))
	}
	seen := make([]map[string]bool, len(tzs))
	counts := make([]int, len(tzs))
	errs := make([]string, len(tzs))
	var wg sync.WaitGroup
	for k := range tzs {
		seen[k] = map[string]bool{}
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					errs[k] = fmt.Sprintf("worker %d: %s", k, describe(r))
				}
			}()
			for j := 0; j < 20; j++ {
				inTx(conns[k], func(tx pgx.Tx) {
					seen[k][txOne(tx, "SHOW TimeZone")] = true
					exec(tx, "SELECT pg_sleep(0.005)")
				})
				counts[k]++
			}
		}(k)
	}
	wg.Wait()
	for _, c := range conns {
		c.Close(context.Background())
	}
	for k, tz := range tzs {
		vals := []string{}
		for v := range seen[k] {
			vals = append(vals, v)
		}
		sort.Strings(vals)
		out(fmt.Sprintf("worker %d (%s) transactions:", k, tz), counts[k])
		out(fmt.Sprintf("worker %d (%s) saw:", k, tz), strings.Join(vals, ","))
	}
	for _, e := range errs {
		if e != "" {
			out("error:", e)
		}
	}
}

func describe(r interface{}) string {
	if err, ok := r.(error); ok {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			return pe.Code + ": " + pe.Message
		}
		return strings.SplitN(err.Error(), "\n", 2)[0]
	}
	return fmt.Sprint(r)
}

func section(n string, fn func()) {
	out("==", n)
	defer func() {
		if r := recover(); r != nil {
			out("error:", describe(r))
		}
	}()
	fn()
}

func main() {
	time.AfterFunc(50*time.Second, func() {
		out("== watchdog: timed out")
		os.Exit(3)
	})
	section("startup", sStartup)
	section("set", sSet)
	section("encoding", sEncoding)
	section("timeout", sTimeout)
	section("prepared", sPrepared)
	section("concurrency", sConcurrency)
	out("== end")
}
