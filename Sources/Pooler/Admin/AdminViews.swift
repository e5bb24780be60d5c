import NIOCore

/// The SHOW result sets, read live from pools, sessions and servers.
struct AdminViews {
    let runtime: PoolerRuntime
    let snapshots: [SessionSnapshot]

    func view(_ name: String) -> ResultSet? {
        switch name {
        case "POOLS": return pools()
        case "DATABASES": return databases()
        case "CLIENTS": return clients()
        case "SERVERS": return servers()
        case "STATS": return stats()
        case "USERS": return users()
        case "CONFIG": return configView()
        case "LISTS": return lists()
        case "CONNECTIONS": return connections()
        case "POOLS_EXTENDED": return poolsExtended()
        case "POOLS_MEMORY", "POOL_MEMORY": return poolsMemory()
        case "POOL_COORDINATOR": return poolCoordinator()
        case "POOL_SCALING": return poolScaling()
        case "PREPARED_STATEMENTS": return preparedStatements()
        case "AUTH_QUERY": return authQuery()
        case "STARTUP_PARAMETERS": return startupParameters()
        case "SOCKETS": return sockets()
        default: return nil
        }
    }

    private func s(_ v: Int) -> String? { String(v) }
    private func s(_ v: UInt64) -> String? { String(v) }

    func pools() -> ResultSet {
        var rs = ResultSet(columns: [
            ("database", .text), ("user", .text), ("pool_mode", .text), ("cl_idle", .numeric), ("cl_active", .numeric),
            ("cl_waiting", .numeric), ("cl_cancel_req", .numeric), ("sv_active", .numeric), ("sv_idle", .numeric),
            ("sv_used", .numeric), ("sv_login", .numeric), ("pool_size", .numeric), ("maxwait", .numeric),
            ("maxwait_us", .numeric), ("avg_xact_time", .numeric), ("paused", .text), ("fallback_active", .text),
            ("oldest_active_age_ms", .numeric),
        ])
        for p in runtime.pools {
            let c = p.counts()
            let mine = snapshots.of(p)
            let clIdle = mine.count(inState: "idle")
            let clActive = mine.count(inState: "active")
            let snap = p.stats.snapshot()
            let avgXact = snap.xactCount > 0 ? snap.xactTime / snap.xactCount : 0
            rs.rows.append([
                p.settings.database, p.settings.user, p.settings.mode.rawValue, s(clIdle), s(clActive),
                s(c.waiting), s(0), s(c.active), s(c.idle), s(0), s(c.opening), s(p.settings.poolSize),
                s(Int(c.maxWaitMicros / 1_000_000)), s(Int(c.maxWaitMicros % 1_000_000)), s(avgXact),
                p.paused ? "1" : "0", "0", s(0),
            ])
        }
        return rs
    }

    func databases() -> ResultSet {
        var rs = ResultSet(columns: [
            ("name", .text), ("host", .text), ("port", .int4), ("database", .text), ("force_user", .text),
            ("pool_size", .int4), ("min_pool_size", .int4), ("reserve_pool", .int4), ("pool_mode", .text),
            ("max_connections", .int4), ("current_connections", .int4),
        ])
        for p in runtime.pools {
            let c = p.counts()
            let st = p.settings
            rs.rows.append([
                st.database, st.serverHost, s(st.serverPort), st.serverDatabase, st.serverUser, s(st.poolSize),
                s(st.minPoolSize), s(p.currentLimits.reserveSize), st.mode.rawValue, s(st.poolSize), s(c.active + c.idle),
            ])
        }
        return rs
    }

    func clients() -> ResultSet {
        var rs = ResultSet(columns: [
            ("client_id", .text), ("database", .text), ("user", .text), ("application_name", .text), ("addr", .text),
            ("tls", .text), ("state", .text), ("wait", .text), ("transaction_count", .numeric),
            ("query_count", .numeric), ("error_count", .numeric), ("age_seconds", .numeric),
            ("parameters", .text), ("query_timeouts", .numeric),
        ])
        for c in snapshots {
            rs.rows.append([
                "#c\(c.id)", c.database, c.user, c.applicationName, c.peer == "unix" ? "127.0.0.1:0" : c.peer,
                c.tls ? "true" : "false", c.state, c.state == "waiting" ? "write" : "idle",
                s(c.transactionCount), s(c.queryCount), s(c.errorCount), s(Int(c.ageSeconds)), c.parameters,
                s(c.queryTimeouts),
            ])
        }
        return rs
    }

    func servers() -> ResultSet {
        var rs = ResultSet(columns: [
            ("server_id", .text), ("server_process_id", .text), ("database_name", .text), ("user", .text),
            ("application_name", .text), ("tls", .text), ("state", .text), ("wait", .text),
            ("transaction_count", .numeric), ("query_count", .numeric), ("bytes_sent", .numeric),
            ("bytes_received", .numeric), ("age_seconds", .numeric), ("prepare_cache_hit", .numeric),
            ("prepare_cache_miss", .numeric), ("prepare_cache_size", .numeric),
        ])
        var servers: [(ServerPool, ServerSnapshot)] = []
        for p in runtime.pools {
            for srv in snapshots.servers(of: p) { servers.append((p, srv)) }
        }
        let now = NIODeadline.now()
        for (p, srv) in servers.sorted(by: { $0.1.id < $1.1.id }) {
            rs.rows.append([
                String(format: "0x%08X", srv.id), String(srv.processID), p.settings.database, p.settings.serverUser,
                p.settings.applicationName, srv.tls ? "true" : "false", srv.state, "idle", s(srv.transactionCount), s(srv.queryCount),
                s(srv.bytesSent), s(srv.bytesReceived), s(Int((now - srv.createdAt).nanoseconds / 1_000_000_000)),
                String(srv.prepareHits), String(srv.prepareMisses), s(srv.prepareSize),
            ])
        }
        return rs
    }

    func stats() -> ResultSet {
        var rs = ResultSet(columns: [
            ("database", .text), ("user", .text), ("total_xact_count", .numeric), ("total_query_count", .numeric),
            ("total_received", .numeric), ("total_sent", .numeric), ("total_xact_time", .numeric),
            ("total_query_time", .numeric), ("total_wait_time", .numeric), ("total_errors", .numeric),
            ("avg_xact_count", .numeric), ("avg_query_count", .numeric), ("avg_recv", .numeric),
            ("avg_sent", .numeric), ("avg_errors", .numeric), ("avg_xact_time", .numeric),
            ("avg_query_time", .numeric), ("avg_wait_time", .numeric),
            // The pooler's own timeouts (not in the reference's SHOW STATS): how often each acted.
            ("query_timeouts", .numeric), ("idle_transaction_timeouts", .numeric),
            ("transaction_timeouts", .numeric), ("client_idle_timeouts", .numeric), ("copy_data_timeouts", .numeric),
        ])
        for p in runtime.pools {
            let t = p.stats.snapshot()
            let a = runtime.statsAverages(for: p)
            rs.rows.append([
                p.settings.database, p.settings.user, s(t.xactCount), s(t.queryCount), s(t.received), s(t.sent),
                s(t.xactTime), s(t.queryTime), s(t.waitTime), s(t.errors),
                s(a.xactCount), s(a.queryCount), s(a.received), s(a.sent), s(a.errors), s(a.xactTime),
                s(a.queryTime), s(a.waitTime),
            ] + p.stats.timeoutCounts.map { s($0.1) })
        }
        return rs
    }

    func users() -> ResultSet {
        var rs = ResultSet(columns: [("name", .text), ("pool_mode", .text)])
        for p in runtime.pools { rs.rows.append([p.settings.user, p.settings.mode.rawValue]) }
        return rs
    }

    func configView() -> ResultSet {
        var rs = ResultSet(columns: [("key", .text), ("value", .text), ("default", .text), ("changeable", .text)])
        let g = runtime.config.general
        rs.rows.append(["host", g.host, "0.0.0.0", "no"])
        rs.rows.append(["port", String(g.port), "5432", "no"])
        rs.rows.append(["max_connections", String(g.maxConnections), "8192", "yes"])
        rs.rows.append(["connect_timeout", String(g.connectTimeout), "3000", "yes"])
        rs.rows.append(["query_wait_timeout", String(g.queryWaitTimeout), "5000", "yes"])
        rs.rows.append(["idle_timeout", String(g.idleTimeout), "600000", "yes"])
        rs.rows.append(["server_lifetime", String(g.serverLifetime), "1200000", "yes"])
        rs.rows.append(["shutdown_timeout", String(g.shutdownTimeout), "10000", "yes"])
        for (name, pool) in runtime.config.pools.sorted(by: { $0.key < $1.key }) {
            rs.rows.append(["pools.\(name).pool_mode", pool.poolMode.rawValue, "transaction", "yes"])
            rs.rows.append(["pools.\(name).users", pool.users.map { $0.username }.joined(separator: ","), "-", "yes"])
        }
        return rs
    }

    func poolsExtended() -> ResultSet {
        var rs = ResultSet(columns: [
            ("database", .text), ("user", .text), ("cl_active", .numeric), ("cl_waiting", .numeric),
            ("sv_active", .numeric), ("sv_idle", .numeric), ("sv_used", .numeric), ("sv_login", .numeric),
            ("pool_size", .numeric), ("maxwait", .numeric), ("maxwait_us", .numeric), ("pool_mode", .text),
            ("bytes_recieved", .numeric), ("bytes_sent", .numeric), ("query_0.99", .numeric),
            ("transaction_0.99", .numeric), ("query_0.95", .numeric), ("transaction_0.95", .numeric),
            ("query_0.5", .numeric), ("transaction_0.5", .numeric),
        ])
        for p in runtime.pools {
            let c = p.counts()
            let t = p.stats.snapshot()
            let mine = snapshots.of(p)
            let qh = p.stats.queryHistogram, xh = p.stats.xactHistogram
            rs.rows.append([
                p.settings.database, p.settings.user, s(mine.count(inState: "active")), s(c.waiting),
                s(c.active), s(c.idle), s(0), s(c.opening), s(p.settings.poolSize),
                String(format: "%.6f", Double(c.maxWaitMicros) / 1_000_000), s(Int(c.maxWaitMicros % 1_000_000)),
                p.settings.mode.rawValue, s(t.received), s(t.sent), s(qh.percentile(0.99)), s(xh.percentile(0.99)),
                s(qh.percentile(0.95)), s(xh.percentile(0.95)), s(qh.percentile(0.5)), s(xh.percentile(0.5)),
            ])
        }
        return rs
    }

    func poolsMemory() -> ResultSet {
        var rs = ResultSet(columns: [
            ("database", .text), ("user", .text), ("pool_prepared_count", .numeric), ("pool_prepared_bytes", .numeric),
            ("client_prepared_count", .numeric), ("client_prepared_bytes", .numeric),
            ("client_named_count", .numeric), ("client_anonymous_count", .numeric),
            ("client_anonymous_evictions_alive", .numeric), ("async_clients", .numeric),
        ])
        for p in runtime.pools {
            let stmts = p.statementCache.statements
            let bytes = stmts.reduce(0) { $0 + $1.query.count }
            let mine = snapshots.of(p)
            let named = mine.reduce(0) { $0 + $1.namedStatements }
            let unnamed = mine.reduce(0) { $0 + $1.unnamedStatements }
            let clientBytes = mine.reduce(0) { $0 + $1.statementBytes }
            // One unnamed statement per client and no anonymous LRU, so nothing is evicted.
            rs.rows.append([p.settings.database, p.settings.user, s(stmts.count), s(bytes), s(named + unnamed),
                            s(clientBytes), s(named), s(unnamed), s(0), s(mine.filter { $0.usedFlush }.count)])
        }
        return rs
    }

    /// One row per database with `max_db_connections`; reserve_size/reserve_used/reserve_acq are the
    /// database's reserve beyond the limit (reserve_pool_size, in use now, granted since start).
    func poolCoordinator() -> ResultSet {
        var rs = ResultSet(columns: [
            ("database", .text), ("max_db_conn", .numeric), ("current", .numeric), ("reserve_size", .numeric),
            ("reserve_used", .numeric), ("evictions", .numeric), ("reserve_acq", .numeric), ("exhaustions", .numeric),
        ])
        for c in runtime.coordinators {
            let x = c.snapshot
            rs.rows.append([c.database, s(x.limit), s(x.current), s(x.reserveSize), s(x.reserveUsed), s(x.evictions),
                            s(x.reserveAcquisitions), s(x.exhaustions)])
        }
        return rs
    }

    func poolScaling() -> ResultSet {
        var rs = ResultSet(columns: [
            ("user", .text), ("database", .text), ("inflight", .numeric), ("creates", .numeric),
            ("gate_waits", .numeric), ("gate_budget_ex", .numeric), ("antic_notify", .numeric),
            ("antic_timeout", .numeric), ("create_fallback", .numeric), ("replenish_def", .numeric),
        ])
        for p in runtime.pools {
            // inflight: connects under way; creates: connects started; gate_waits: connects held back by
            // scaling_max_parallel_creates or max_concurrent_creates; antic_notify / antic_timeout:
            // clients above the warm share served by a returned connection / by a new one after the
            // anticipation budget. gate_budget_ex, create_fallback and replenish_def stay 0.
            let c = p.counts()
            let x = p.scalingCounters
            rs.rows.append([p.settings.user, p.settings.database, s(c.opening), s(x.creates), s(x.gateWaits), s(0),
                            s(x.anticipationServed), s(x.anticipationTimeouts), s(0), s(0)])
        }
        return rs
    }

    func preparedStatements() -> ResultSet {
        var rs = ResultSet(columns: [
            ("pool", .text), ("hash", .numeric), ("name", .text), ("query", .text), ("count_used", .numeric),
            ("kind", .text),
        ])
        for p in runtime.pools {
            for st in p.statementCache.statements {
                var h = Hasher()
                h.combine(st.query)
                rs.rows.append(["\(p.settings.user)@\(p.settings.database)", String(UInt32(truncatingIfNeeded: h.finalize())),
                                st.name, String(decoding: st.query, as: UTF8.self), s(0), "named"])
            }
        }
        return rs
    }

    /// One row per database with auth_query, live from its service.
    func authQuery() -> ResultSet {
        var rs = ResultSet(columns: [
            ("database", .text), ("cache_entries", .numeric), ("cache_hits", .numeric), ("cache_misses", .numeric),
            ("cache_refetches", .numeric), ("cache_rate_limited", .numeric), ("auth_success", .numeric),
            ("auth_failure", .numeric), ("executor_queries", .numeric), ("executor_errors", .numeric),
            ("dynamic_pools_current", .numeric), ("dynamic_pools_created", .numeric),
            ("dynamic_pools_destroyed", .numeric),
        ])
        for service in runtime.authQueries {
            let x = service.snapshot()
            rs.rows.append([
                service.database, s(x.cacheEntries), s(x.cache.hits), s(x.cache.misses), s(x.cache.refetches),
                s(x.cache.rateLimited), s(x.counters.authSuccess), s(x.counters.authFailure),
                s(x.counters.executorQueries), s(x.counters.executorErrors), s(x.dynamicPools),
                s(x.counters.poolsCreated), s(x.counters.poolsDestroyed),
            ])
        }
        return rs
    }

    /// The operator's startup_parameters each pool's server connections log in with, and where each
    /// comes from (`general`, `pool`, or `auth_query` for a dynamic user's row; later wins). They are
    /// in every server's StartupMessage, so they are always `applied`; clients cannot change them.
    func startupParameters() -> ResultSet {
        var rs = ResultSet(columns: [
            ("user", .text), ("database", .text), ("parameter", .text), ("value", .text), ("source", .text),
            ("state", .text),
        ])
        let config = runtime.config
        for p in runtime.pools.sorted(by: { ($0.settings.database, $0.settings.user) < ($1.settings.database, $1.settings.user) }) {
            let own = config.pools[p.settings.database]?.startupParameters ?? [:]
            // A value the config does not give came from the user's auth_query row.
            var configured: [String: String] = [:]
            for kv in config.pools[p.settings.database]?.effectiveStartupParameters(config.general) ?? [] {
                configured[kv.key] = kv.value
            }
            for (name, value) in p.settings.startupParameters.sorted(by: { $0.0 < $1.0 }) {
                let source = configured[name] != value ? "auth_query" : own[name] != nil ? "pool" : "general"
                rs.rows.append([p.settings.user, p.settings.database, name, value, source, "applied"])
            }
        }
        return rs
    }

    /// Socket counts by state from /proc/net/{tcp,tcp6,unix}.
    func sockets() -> ResultSet {
        let tcpStates = ["established", "syn_sent", "syn_recv", "fin_wait1", "fin_wait2", "time_wait", "close",
                         "close_wait", "last_ack", "listen", "closing", "new_syn_recv", "bound_inactive"]
        func countTCP(_ path: String) -> [Int] {
            var counts = [Int](repeating: 0, count: tcpStates.count)
            guard let text = ProcFile.read(path) else { return counts }
            for line in text.split(separator: "\n").dropFirst() {
                let f = line.split(separator: " ", omittingEmptySubsequences: true)
                guard f.count > 3, let st = Int(f[3], radix: 16), st >= 1, st <= tcpStates.count else { continue }
                counts[st - 1] += 1
            }
            return counts
        }
        let tcp = countTCP("/proc/net/tcp")
        let tcp6 = countTCP("/proc/net/tcp6")
        var unix = [Int](repeating: 0, count: 7)
        if let text = ProcFile.read("/proc/net/unix") {
            for line in text.split(separator: "\n").dropFirst() {
                let f = line.split(separator: " ", omittingEmptySubsequences: true)
                guard f.count > 5, let type = Int(f[4], radix: 16), let st = Int(f[5], radix: 16) else { continue }
                if type == 2 { unix[5] += 1 } else if type == 5 { unix[6] += 1 } else if st >= 0 && st <= 4 { unix[st] += 1 }
            }
        }
        var cols: [(String, BackendMessage.ColumnType)] = tcpStates.map { ("tcp_\($0)", .numeric) }
        cols += tcpStates.map { ("tcp6_\($0)", .numeric) }
        cols += ["free", "unconnected", "connecting", "connected", "disconnecting", "dgram", "seq_packet"]
            .map { ("unix_\($0)", .numeric) }
        cols.append(("unknown", .numeric))
        let row: [String?] = (tcp + tcp6 + unix + [0]).map { String($0) }
        return ResultSet(columns: cols, rows: [row])
    }

    func lists() -> ResultSet {
        let pools = runtime.pools
        let dbs = Set(pools.map { $0.settings.database }).count
        let users = Set(pools.map { $0.settings.user }).count
        var idleServers = 0
        var usedServers = 0
        for p in pools {
            let c = p.counts()
            idleServers += c.idle
            usedServers += c.active
        }
        let used = snapshots.filter { $0.server != nil }.count
        let rows: [[String?]] = [
            ["databases", s(dbs)], ["users", s(users)], ["pools", s(pools.count)],
            ["free_clients", s(snapshots.count - used)], ["used_clients", s(used)], ["login_clients", s(0)],
            ["free_servers", s(idleServers)], ["used_servers", s(usedServers)], ["dns_names", s(0)],
            ["dns_zones", s(0)], ["dns_queries", s(0)], ["dns_pending", s(0)],
        ]
        return ResultSet(columns: [("list", .text), ("items", .int4)], rows: rows)
    }

    func connections() -> ResultSet {
        let total = runtime.totalConnections.load(ordering: .relaxed)
        let cancel = runtime.cancelRequests.load(ordering: .relaxed)
        let tls = runtime.tls.clientTLSConnections.load(ordering: .relaxed)
        return ResultSet(
            columns: [("total", .numeric), ("errors", .numeric), ("tls", .numeric), ("plain", .numeric), ("cancel", .numeric)],
            rows: [[s(total), s(0), s(tls), s(max(0, total - cancel - tls)), s(cancel)]])
    }
}

import Foundation
