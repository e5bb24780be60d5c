#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// The `/metrics` page (`web.enabled`): the figures SHOW POOLS, SHOW STATS, SHOW POOLS_EXTENDED and
/// SHOW SERVERS give, under the metric names of the reference pg_doorman's exporter so that its
/// dashboards and alerts work unchanged. Times are in milliseconds, as there.
struct MetricsView {
    let runtime: PoolerRuntime
    let snapshots: [SessionSnapshot]

    func render() -> String {
        var out = PrometheusText()
        process(&out)
        connections(&out)
        pools(&out)
        authQuery(&out)
        return out.text
    }

    private func process(_ out: inout PrometheusText) {
        out.family("pg_doorman_total_memory", help: "Resident memory of the pg_doorman process in bytes.")
        out.sample("pg_doorman_total_memory", [:], Self.residentBytes())
        #if os(Linux)
        out.family("pg_doorman_sockets", help: "Sockets held by the pg_doorman process, by type (tcp, tcp6, unix, unknown).")
        let sockets = SocketCensus.ownSockets()
        for (type, n) in [("tcp", sockets.tcp), ("tcp6", sockets.tcp6), ("unix", sockets.unix), ("unknown", sockets.unknown)] {
            out.sample("pg_doorman_sockets", ["type": type], n)
        }
        #endif
    }

    private func connections(_ out: inout PrometheusText) {
        let total = runtime.totalConnections.load(ordering: .relaxed)
        let tls = runtime.tls.clientTLSConnections.load(ordering: .relaxed)
        let cancel = runtime.cancelRequests.load(ordering: .relaxed)
        out.family("pg_doorman_connection_count",
                   help: "Connections accepted since start, by type: plain, tls, cancel (cancel requests), total.")
        out.sample("pg_doorman_connection_count", ["type": "plain"], max(0, total - tls - cancel))
        out.sample("pg_doorman_connection_count", ["type": "tls"], tls)
        out.sample("pg_doorman_connection_count", ["type": "cancel"], cancel)
        out.sample("pg_doorman_connection_count", ["type": "total"], total)
    }

    private func pools(_ out: inout PrometheusText) {
        let families: [(String, String)] = [
            ("pg_doorman_pools_clients", "Clients by status (idle, waiting, active), user and database."),
            ("pg_doorman_pools_servers", "Server connections by status (active, idle), user and database."),
            ("pg_doorman_pools_bytes", "Bytes through the pool since start by direction (received from clients, sent to clients)."),
            ("pg_doorman_pools_queries_percentile", "Query time percentiles (50, 90, 95, 99) in milliseconds."),
            ("pg_doorman_pools_transactions_percentile", "Transaction time percentiles (50, 90, 95, 99) in milliseconds."),
            ("pg_doorman_pools_transactions_count", "Transactions since start."),
            ("pg_doorman_pools_transactions_total_time", "Time spent in transactions since start, in milliseconds."),
            ("pg_doorman_pools_queries_count", "Queries since start."),
            ("pg_doorman_pools_queries_total_time", "Time spent in queries since start, in milliseconds."),
            ("pg_doorman_pools_avg_wait_time", "Average time clients waited for a server over the last 15-second period, in milliseconds."),
            ("pg_doorman_servers_prepared_hits", "Prepared statements found already prepared on the server connection."),
            ("pg_doorman_servers_prepared_misses", "Prepared statements that had to be prepared on the server connection."),
            ("pg_doorman_pools_timeouts_total", "Clients the pooler's own timeouts acted on since start, by setting "
             + "(query_timeouts: statements cancelled; the others: clients disconnected)."),
        ]
        for (name, help) in families { out.family(name, help: help) }
        for p in runtime.pools {
            let db = p.settings.database, user = p.settings.user
            let c = p.counts()
            let mine = snapshots.of(p)
            out.sample("pg_doorman_pools_clients", ["status": "idle", "user": user, "database": db],
                       mine.count(inState: "idle"))
            out.sample("pg_doorman_pools_clients", ["status": "waiting", "user": user, "database": db], c.waiting)
            out.sample("pg_doorman_pools_clients", ["status": "active", "user": user, "database": db],
                       mine.count(inState: "active"))
            out.sample("pg_doorman_pools_servers", ["status": "active", "user": user, "database": db], c.active)
            out.sample("pg_doorman_pools_servers", ["status": "idle", "user": user, "database": db], c.idle)

            let t = p.stats.snapshot()
            for (kind, n) in p.stats.timeoutCounts {
                out.sample("pg_doorman_pools_timeouts_total", ["kind": kind, "user": user, "database": db], n)
            }
            out.sample("pg_doorman_pools_bytes", ["direction": "received", "user": user, "database": db], t.received)
            out.sample("pg_doorman_pools_bytes", ["direction": "sent", "user": user, "database": db], t.sent)
            for q in ["50", "90", "95", "99"] {
                let f = Double(q)! / 100
                out.sample("pg_doorman_pools_queries_percentile", ["percentile": q, "user": user, "database": db],
                           Double(p.stats.queryHistogram.percentile(f)) / 1000)
                out.sample("pg_doorman_pools_transactions_percentile", ["percentile": q, "user": user, "database": db],
                           Double(p.stats.xactHistogram.percentile(f)) / 1000)
            }
            out.sample("pg_doorman_pools_transactions_count", ["user": user, "database": db], t.xactCount)
            out.sample("pg_doorman_pools_transactions_total_time", ["user": user, "database": db], Double(t.xactTime) / 1000)
            out.sample("pg_doorman_pools_queries_count", ["user": user, "database": db], t.queryCount)
            out.sample("pg_doorman_pools_queries_total_time", ["user": user, "database": db], Double(t.queryTime) / 1000)
            out.sample("pg_doorman_pools_avg_wait_time", ["user": user, "database": db],
                       Double(runtime.statsAverages(for: p).waitTime) / 1000)

            var hits: UInt64 = 0, misses: UInt64 = 0
            for s in snapshots.servers(of: p) {
                hits &+= s.prepareHits
                misses &+= s.prepareMisses
            }
            out.sample("pg_doorman_servers_prepared_hits", ["user": user, "database": db], Double(hits))
            out.sample("pg_doorman_servers_prepared_misses", ["user": user, "database": db], Double(misses))
        }
    }

    /// VmRSS from /proc/self/statm (resident pages), 0 where it is not available.
    static func residentBytes() -> Int {
        guard let text = ProcFile.read("/proc/self/statm") else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
