// Session transcript for pgjdbc. See test_driver_transcripts.py for the sections.
//
// Connection from env: PGT_HOST PGT_PORT PGT_USER PGT_PASSWORD PGT_DB. pgjdbc puts the JVM's default time zone
// in the startup packet as TimeZone (set with TimeZone.setDefault before each connect, like -Duser.timezone),
// forces DateStyle=ISO and extra_float_digits=3, and refuses any client_encoding but UTF8; statement_timeout
// goes through the `options` property, application_name through ApplicationName.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.TimeZone;
import java.util.TreeSet;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.TimeUnit;

public class Transcript {
    static final String NAME = "pgjdbc";
    static final String[] TZS = {"UTC", "Asia/Tokyo", "America/New_York", "Europe/Berlin"};
    static final String TS = "SELECT '2024-03-01 12:34:56+00'::timestamptz::text";

    static synchronized void out(Object... parts) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < parts.length; i++) {
            if (i > 0) sb.append(' ');
            sb.append(parts[i]);
        }
        System.out.println(sb);
        System.out.flush();
    }

    static Connection connect(String tz, String options) throws SQLException {
        TimeZone.setDefault(TimeZone.getTimeZone(tz));
        Properties p = new Properties();
        p.setProperty("user", System.getenv("PGT_USER"));
        p.setProperty("password", System.getenv("PGT_PASSWORD"));
        p.setProperty("ApplicationName", "transcript_" + NAME);
        p.setProperty("connectTimeout", "10");
        p.setProperty("socketTimeout", "20");
        p.setProperty("prepareThreshold", "1");
        if (options != null) p.setProperty("options", options);
        String url = "jdbc:postgresql://" + System.getenv("PGT_HOST") + ":" + System.getenv("PGT_PORT") + "/"
            + System.getenv("PGT_DB");
        return DriverManager.getConnection(url, p);
    }

    static String one(Connection c, String sql) throws SQLException {
        try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(sql)) {
            rs.next();
            return rs.getString(1);
        }
    }

    static void exec(Connection c, String sql) throws SQLException {
        try (Statement st = c.createStatement()) {
            st.execute(sql);
        }
    }

    static void startup() throws Exception {
        try (Connection c = connect("Asia/Tokyo", "-c statement_timeout=1500")) {
            for (String p : new String[] {"TimeZone", "DateStyle", "application_name", "statement_timeout",
                "extra_float_digits"}) {
                out(p + ":", one(c, "SHOW " + p));
            }
            out("pg_stat_activity.application_name:",
                one(c, "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"));
            out("timestamptz:", one(c, TS));
            out("interval:", one(c, "SELECT '1 day 02:03:04'::interval::text"));
            out("float 0.1:", one(c, "SELECT 0.1::float8::text"));
            out("float 1/3:", one(c, "SELECT (1/3::float8)::text"));
        }
    }

    /** Another client holds a server, so the next transaction may land on a different one. */
    static void hold(Connection other) throws SQLException {
        other.setAutoCommit(false);
        exec(other, "SELECT 1");
    }

    static void release(Connection other) throws SQLException {
        other.commit();
        other.setAutoCommit(true);
    }

    static void set() throws Exception {
        try (Connection c = connect("UTC", null); Connection other = connect("UTC", null)) {
            exec(c, "SET TimeZone = 'America/New_York'");
            for (int i = 1; i <= 4; i++) {
                boolean h = i % 2 == 0;
                if (h) hold(other);
                c.setAutoCommit(false);
                out("tx" + i + " TimeZone:", one(c, "SHOW TimeZone"));
                out("tx" + i + " timestamptz:", one(c, TS));
                c.commit();
                c.setAutoCommit(true);
                if (h) {
                    out("tx" + i + " other client TimeZone:", one(other, "SHOW TimeZone"));
                    release(other);
                }
            }
            exec(c, "SET IntervalStyle = 'postgres_verbose'");
            for (int i = 1; i <= 2; i++) {
                if (i == 2) hold(other);
                c.setAutoCommit(false);
                out("interval tx" + i + ":", one(c, "SELECT '1 day 02:03:04'::interval::text"));
                c.commit();
                c.setAutoCommit(true);
                if (i == 2) {
                    out("other client IntervalStyle:", one(other, "SHOW IntervalStyle"));
                    release(other);
                }
            }
        }
    }

    static void encoding() {
        // pgjdbc sends client_encoding=UTF8 and aborts the connection when the server reports anything else.
        out("skipped");
    }

    static void timeout() throws Exception {
        try (Connection c = connect("UTC", "-c statement_timeout=1500")) {
            out("statement_timeout:", one(c, "SHOW statement_timeout"));
            try {
                exec(c, "SELECT pg_sleep(3)");
                out("pg_sleep(3): completed");
            } catch (SQLException ex) {
                if (ex.getSQLState() == null) throw ex;
                out("pg_sleep(3): error", ex.getSQLState());
            }
            out("after:", one(c, "SELECT 1"));
        }
    }

    static void prepared() throws Exception {
        try (Connection c = connect("UTC", null); Connection other = connect("UTC", null);
             PreparedStatement ps = c.prepareStatement("SELECT ?::int * 7, ?::text || '!'")) {
            for (int i = 1; i <= 10; i++) {
                boolean h = i % 2 == 0;
                if (h) hold(other);
                c.setAutoCommit(false);
                ps.setInt(1, i);
                ps.setString(2, "v" + i);
                String a, b;
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    a = rs.getString(1);
                    b = rs.getString(2);
                }
                c.commit();
                c.setAutoCommit(true);
                out("exec " + i + ":", a, b);
                if (h) release(other);
            }
        }
    }

    static void concurrency() throws Exception {
        int n = TZS.length;
        Connection[] conns = new Connection[n];
        for (int k = 0; k < n; k++) conns[k] = connect(TZS[k], null);
        List<Set<String>> seen = new ArrayList<>();
        int[] counts = new int[n];
        String[] errors = new String[n];
        CyclicBarrier barrier = new CyclicBarrier(n);
        Thread[] threads = new Thread[n];
        for (int k = 0; k < n; k++) {
            seen.add(new TreeSet<>());
            final int w = k;
            threads[k] = new Thread(() -> {
                try {
                    barrier.await(10, TimeUnit.SECONDS);
                    Connection c = conns[w];
                    for (int j = 0; j < 20; j++) {
                        c.setAutoCommit(false);
                        seen.get(w).add(one(c, "SHOW TimeZone"));
                        exec(c, "SELECT pg_sleep(0.005)");
                        c.commit();
                        c.setAutoCommit(true);
                        counts[w]++;
                    }
                } catch (Exception ex) {
                    errors[w] = "worker " + w + ": " + describe(ex);
                }
            });
            threads[k].setDaemon(true);
            threads[k].start();
        }
        for (Thread t : threads) t.join(30000);
        for (Connection c : conns) c.close();
        for (int k = 0; k < n; k++) {
            out("worker " + k + " (" + TZS[k] + ") transactions:", counts[k]);
            out("worker " + k + " (" + TZS[k] + ") saw:", String.join(",", seen.get(k)));
        }
        for (String e : errors) if (e != null) out("error:", e);
    }

    static String describe(Throwable ex) {
        String st = ex instanceof SQLException && ((SQLException) ex).getSQLState() != null
            ? ((SQLException) ex).getSQLState() : ex.getClass().getSimpleName();
        String m = String.valueOf(ex.getMessage());
        return st + ": " + m.split("\n", 2)[0];
    }

    interface Section {
        void run() throws Exception;
    }

    static void section(String name, Section s) {
        out("==", name);
        try {
            s.run();
        } catch (Exception ex) {
            out("error:", describe(ex));
        }
    }

    public static void main(String[] args) {
        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(50000);
            } catch (InterruptedException ignored) {
                return;
            }
            out("== watchdog: timed out");
            Runtime.getRuntime().halt(3);
        });
        watchdog.setDaemon(true);
        watchdog.start();
        section("startup", Transcript::startup);
        section("set", Transcript::set);
        section("encoding", Transcript::encoding);
        section("timeout", Transcript::timeout);
        section("prepared", Transcript::prepared);
        section("concurrency", Transcript::concurrency);
        out("== end");
        System.exit(0);
    }
}
