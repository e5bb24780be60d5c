// Decodes the merged value tree into the typed model, by hand, so every problem gets a key path and a location.

import Foundation

enum ConfigDecoder {
    static func decode(_ root: ConfigTable, ctx: DecodeContext, rootFile: String?) -> Config {
        var config = Config()
        let r = TableReader(root, path: "", ctx: ctx, node: ConfigNode(.table(root), file: rootFile, line: nil))
        r.accept("path")  // internal in the reference; harmless

        if let g = r.subtable("general") {
            config.general = decodeGeneral(g)
        } else if r.table["general"] == nil {
            ctx.error("general", "missing field `general`", node: r.selfNode,
                      hint: "add a `general` section with at least admin_username and admin_password")
        }

        if let n = r.node("pools") {
            if case .table(let t) = n.value {
                config.pools.reserveCapacity(t.count)
                for e in t.entries {
                    let path = "pools.\(e.key)"
                    guard case .table(let pt) = e.node.value else {
                        ctx.error(path, "expected a table, found \(e.node.value.typeName)", node: e.node)
                        continue
                    }
                    config.pools[e.key] = decodePool(TableReader(pt, path: path, ctx: ctx, node: e.node))
                }
            } else {
                ctx.error("pools", "expected a table, found \(n.value.typeName)", node: n)
            }
        } else {
            ctx.error("pools", "missing field `pools`", node: r.selfNode,
                      hint: "add a `pools` section (it may be empty)")
        }

        let webReader = r.subtable("web")
        let promReader = r.subtable("prometheus")
        if let w = webReader {
            config.web = decodeWeb(w)
            if let p = promReader {
                ctx.warning("prometheus", "both `web` and its alias `prometheus` are set; `prometheus` is ignored",
                            node: p.selfNode)
            }
        } else if let p = promReader {
            config.web = decodeWeb(p)
        }

        if let t = r.subtable("talos") {
            var talos = Talos()
            if let keys = t.stringArray("keys") { talos.keys = keys } else if t.table["keys"] == nil { t.missing("keys") }
            if let dbs = t.stringArray("databases") { talos.databases = dbs } else if t.table["databases"] == nil {
                t.missing("databases")
            }
            t.finish()
            config.talos = talos
        }

        if let i = r.subtable("include") {
            config.include.files = i.stringArray("files") ?? []
            i.finish()
        }
        r.finish()
        return config
    }

    static func decodeGeneral(_ g: TableReader) -> General {
        var x = General()
        let ctx = g.ctx
        x.host = g.string("host") ?? x.host
        x.port = g.port("port") ?? x.port
        if let v = g.string("admin_username", required: true) {
            x.adminUsername = v
            if v.isEmpty { ctx.error(g.keyPath("admin_username"), "admin_username must not be empty", node: g.table["admin_username"]) }
        }
        if let v = g.string("admin_password", required: true) { x.adminPassword = v }
        x.backlog = g.u32("backlog") ?? x.backlog
        x.maxConnections = g.int("max_connections") ?? x.maxConnections
        x.connectTimeout = g.duration("connect_timeout") ?? x.connectTimeout
        x.queryWaitTimeout = g.duration("query_wait_timeout") ?? x.queryWaitTimeout
        x.idleTimeout = g.duration("idle_timeout") ?? x.idleTimeout
        x.serverLifetime = g.duration("server_lifetime") ?? x.serverLifetime
        x.shutdownTimeout = g.duration("shutdown_timeout") ?? x.shutdownTimeout
        x.retainConnectionsTime = g.duration("retain_connections_time") ?? x.retainConnectionsTime
        x.retainConnectionsMax = g.int("retain_connections_max") ?? x.retainConnectionsMax
        x.serverIdleCheckTimeout = g.duration("server_idle_check_timeout") ?? x.serverIdleCheckTimeout
        x.proxyCopyDataTimeout = g.duration("proxy_copy_data_timeout") ?? x.proxyCopyDataTimeout
        x.queryTimeout = g.duration("query_timeout") ?? x.queryTimeout
        x.idleTransactionTimeout = g.duration("idle_transaction_timeout") ?? x.idleTransactionTimeout
        x.transactionTimeout = g.duration("transaction_timeout") ?? x.transactionTimeout
        x.clientIdleTimeout = g.duration("client_idle_timeout") ?? x.clientIdleTimeout
        x.maxDbClientConnections = g.int("max_db_client_connections") ?? x.maxDbClientConnections
        x.maxUserClientConnections = g.int("max_user_client_connections") ?? x.maxUserClientConnections
        x.maxUserConnections = g.int("max_user_connections") ?? x.maxUserConnections
        x.clientLoginTimeout = g.duration("client_login_timeout") ?? x.clientLoginTimeout
        x.tcpKeepalivesIdle = g.seconds("tcp_keepalives_idle") ?? x.tcpKeepalivesIdle
        x.tcpKeepalivesInterval = g.seconds("tcp_keepalives_interval") ?? x.tcpKeepalivesInterval
        x.tcpKeepalivesCount = g.u32("tcp_keepalives_count") ?? x.tcpKeepalivesCount
        x.tcpSoLinger = g.seconds("tcp_so_linger") ?? x.tcpSoLinger
        x.tcpNoDelay = g.bool("tcp_no_delay") ?? x.tcpNoDelay
        x.tcpUserTimeout = g.seconds("tcp_user_timeout") ?? x.tcpUserTimeout
        x.tcpSocketBufferSize = g.byteSize("tcp_socket_buffer_size") ?? x.tcpSocketBufferSize
        x.unixSocketBufferSize = g.byteSize("unix_socket_buffer_size") ?? x.unixSocketBufferSize
        x.unixSocketDir = g.string("unix_socket_dir")
        x.unixSocketMode = g.string("unix_socket_mode") ?? x.unixSocketMode
        // Reference quirk kept: omitted ⇒ false.
        x.logClientConnections = g.bool("log_client_connections") ?? false
        x.logClientDisconnections = g.bool("log_client_disconnections") ?? false
        x.syslogProgName = g.string("syslog_prog_name")
        x.daemonPidFile = g.string("daemon_pid_file") ?? x.daemonPidFile
        x.workerThreads = g.int("worker_threads") ?? x.workerThreads
        x.workerCpuAffinityPinning = g.bool("worker_cpu_affinity_pinning") ?? x.workerCpuAffinityPinning
        x.workerStackSize = g.byteSize("worker_stack_size")
        x.maxBlockingThreads = g.int("max_blocking_threads")
        x.tokioGlobalQueueInterval = g.u32("tokio_global_queue_interval")
        x.tokioEventInterval = g.u32("tokio_event_interval")
        x.maxMemoryUsage = g.byteSize("max_memory_usage") ?? x.maxMemoryUsage
        x.messageSizeToBeStream = g.byteSize("message_size_to_be_stream") ?? x.messageSizeToBeStream
        x.maxConcurrentCreates = g.int("max_concurrent_creates") ?? x.maxConcurrentCreates
        x.scalingWarmPoolRatio = g.u32("scaling_warm_pool_ratio") ?? x.scalingWarmPoolRatio
        x.scalingFastRetries = g.u32("scaling_fast_retries") ?? x.scalingFastRetries
        x.scalingMaxParallelCreates = g.u32("scaling_max_parallel_creates") ?? x.scalingMaxParallelCreates
        x.serverRoundRobin = g.bool("server_round_robin") ?? x.serverRoundRobin
        x.syncServerParameters = g.bool("sync_server_parameters") ?? x.syncServerParameters
        x.cancelOnClientDisconnect = g.bool("cancel_on_client_disconnect") ?? x.cancelOnClientDisconnect
        x.authFailureDelay = g.duration("auth_failure_delay") ?? x.authFailureDelay
        x.poolerCheckQuery = g.string("pooler_check_query") ?? x.poolerCheckQuery
        x.preparedStatements = g.bool("prepared_statements") ?? x.preparedStatements
        x.preparedStatementsCacheSize = g.int("prepared_statements_cache_size") ?? x.preparedStatementsCacheSize
        x.serverPreparedStatementsCacheSize = g.int("server_prepared_statements_cache_size")
        x.clientAnonymousPreparedCacheSize = g.int("client_anonymous_prepared_cache_size")
        if let old = g.table["client_prepared_statements_cache_size"] {
            let legacy = g.int("client_prepared_statements_cache_size")
            ctx.warning(g.keyPath("client_prepared_statements_cache_size"),
                        "`client_prepared_statements_cache_size` is deprecated", node: old,
                        hint: "rename it to `client_anonymous_prepared_cache_size`")
            if x.clientAnonymousPreparedCacheSize == nil { x.clientAnonymousPreparedCacheSize = legacy }
        }
        x.queryInternerGcIntervalSeconds = g.seconds("query_interner_gc_interval_seconds")
            ?? x.queryInternerGcIntervalSeconds
        x.queryInternerAnonIdleTtlSeconds = g.seconds("query_interner_anon_idle_ttl_seconds")
            ?? x.queryInternerAnonIdleTtlSeconds
        x.tlsCertificate = g.string("tls_certificate")
        x.tlsPrivateKey = g.string("tls_private_key")
        x.tlsCaCert = g.string("tls_ca_cert")
        x.tlsMode = g.string("tls_mode")
        x.tlsRateLimitPerSecond = g.int("tls_rate_limit_per_second") ?? x.tlsRateLimitPerSecond
        x.serverTlsMode = g.string("server_tls_mode") ?? x.serverTlsMode
        x.serverTlsCaCert = g.string("server_tls_ca_cert")
        x.serverTlsCertificate = g.string("server_tls_certificate")
        x.serverTlsPrivateKey = g.string("server_tls_private_key")
        x.trackExtraParameters = g.stringArray("track_extra_parameters") ?? x.trackExtraParameters
        if let list = g.stringArray("hba") {
            x.hba = list
            let n = g.table["hba"]
            for (i, cidr) in list.enumerated() where IPNetwork(cidr: cidr) == nil {
                ctx.error("general.hba[\(i)]", "invalid CIDR '\(cidr)'", node: n,
                          hint: IPAddress(cidr) != nil ? "write a network with a prefix, e.g. \(cidr)/"
                              + "\(IPAddress(cidr)!.bytes.count * 8)" : "expected a network like 10.0.0.0/8")
            }
        }
        if g.table["pg_hba"] != nil { x.pgHba = decodePgHba(g) }
        x.startupParameters = g.stringMap("startup_parameters") ?? [:]
        x.patroniApiUrls = g.stringArray("patroni_api_urls")
        x.fallbackCooldown = g.duration("fallback_cooldown")
        x.patroniApiTimeout = g.duration("patroni_api_timeout")
        x.fallbackConnectTimeout = g.duration("fallback_connect_timeout")
        x.fallbackLifetime = g.duration("fallback_lifetime")
        g.finish()
        return x
    }

    static func decodePgHba(_ g: TableReader) -> PgHba? {
        let ctx = g.ctx
        guard let n = g.node("pg_hba") else { return nil }
        let path = "general.pg_hba"
        var content: String
        var sourcePath: String? = nil
        switch n.value {
        case .string(let s):
            content = s
        case .table(let t):
            let contentNode = t["content"], pathNode = t["path"]
            for k in t.keys where k != "content" && k != "path" {
                ctx.error("\(path).\(k)", "unknown field `\(k)`, expected `path` or `content`", node: t[k])
            }
            if let c = contentNode {
                guard case .string(let s) = c.value else {
                    ctx.error("\(path).content", "expected a string, found \(c.value.typeName)", node: c); return nil
                }
                content = s
            } else if let p = pathNode {
                guard case .string(let file) = p.value else {
                    ctx.error("\(path).path", "expected a string, found \(p.value.typeName)", node: p); return nil
                }
                // Relative paths: the process CWD first (reference behaviour), then the config file's directory.
                guard let resolved = resolveFile(file, configDirectory: ctx.configDirectory),
                      let text = try? String(contentsOfFile: resolved, encoding: .utf8) else {
                    ctx.error("\(path).path", "failed to read hba file \(file): no such file or not readable", node: p)
                    return nil
                }
                content = text
                sourcePath = resolved
            } else {
                ctx.error(path, "expected either 'path' or 'content' field for PgHba", node: n)
                return nil
            }
        default:
            ctx.error(path, "expected a string or a table with `path` or `content`, found \(n.value.typeName)",
                      node: n)
            return nil
        }
        let parsed = PgHba.parse(content)
        for p in parsed.problems {
            let d = Diagnostic(severity: p.isWarning ? .warning : .error, keyPath: path,
                               file: sourcePath ?? n.file, line: sourcePath != nil ? p.line : n.line,
                               message: "pg_hba line \(p.line): \(p.message)",
                               hint: p.isWarning ? nil : "rule format: TYPE DATABASE USER [ADDRESS] METHOD")
            ctx.diagnostics.append(d)
        }
        var hba = PgHba(content: content, path: sourcePath)
        hba.rules = parsed.rules
        return hba
    }

    /// CWD-relative first, then relative to the config file's directory.
    static func resolveFile(_ file: String, configDirectory: String?) -> String? {
        let fm = FileManager.default
        if fm.isReadableFile(atPath: file) { return file }
        if !file.hasPrefix("/"), let dir = configDirectory {
            let candidate = (dir as NSString).appendingPathComponent(file)
            if fm.isReadableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    static func decodePool(_ p: TableReader) -> Pool {
        var x = Pool()
        let ctx = p.ctx
        x.serverHost = p.string("server_host") ?? x.serverHost
        x.serverPort = p.port("server_port") ?? x.serverPort
        x.serverDatabase = p.string("server_database")
        if let n = p.table["pool_mode"], let s = p.string("pool_mode") {
            if let m = PoolMode(parsing: s) { x.poolMode = m } else {
                ctx.error(p.keyPath("pool_mode"), "unknown pool_mode '\(s)'", node: n,
                          hint: "expected `transaction` or `session`")
            }
        }
        x.idleTimeout = p.duration("idle_timeout")
        x.serverLifetime = p.duration("server_lifetime")
        x.connectTimeout = p.duration("connect_timeout")
        x.queryTimeout = p.duration("query_timeout")
        x.idleTransactionTimeout = p.duration("idle_transaction_timeout")
        x.transactionTimeout = p.duration("transaction_timeout")
        x.clientIdleTimeout = p.duration("client_idle_timeout")
        x.maxDbClientConnections = p.int("max_db_client_connections")
        x.cleanupServerConnections = p.bool("cleanup_server_connections") ?? x.cleanupServerConnections
        x.logClientParameterStatusChanges = p.bool("log_client_parameter_status_changes")
            ?? x.logClientParameterStatusChanges
        x.applicationName = p.string("application_name")
        x.preparedStatementsCacheSize = p.int("prepared_statements_cache_size")
        x.serverPreparedStatementsCacheSize = p.int("server_prepared_statements_cache_size")
        x.scalingWarmPoolRatio = p.u32("scaling_warm_pool_ratio")
        x.scalingFastRetries = p.u32("scaling_fast_retries")
        x.maxDbConnections = p.u32("max_db_connections")
        x.minConnectionLifetime = p.duration("min_connection_lifetime")
        x.reservePoolSize = p.u32("reserve_pool_size")
        x.reservePoolTimeout = p.duration("reserve_pool_timeout")
        x.minGuaranteedPoolSize = p.u32("min_guaranteed_pool_size")
        x.serverTlsMode = p.string("server_tls_mode")
        x.serverTlsCaCert = p.string("server_tls_ca_cert")
        x.serverTlsCertificate = p.string("server_tls_certificate")
        x.serverTlsPrivateKey = p.string("server_tls_private_key")
        x.startupParameters = p.stringMap("startup_parameters") ?? [:]
        if let a = p.subtable("auth_query") { x.authQuery = decodeAuthQuery(a) }
        x.patroniApiUrls = p.stringArray("patroni_api_urls")
        x.fallbackCooldown = p.duration("fallback_cooldown")
        x.patroniApiTimeout = p.duration("patroni_api_timeout")
        x.fallbackConnectTimeout = p.duration("fallback_connect_timeout")
        x.fallbackLifetime = p.duration("fallback_lifetime")
        if let n = p.node("users") {
            x.users = decodeUsers(n, path: p.keyPath("users"), ctx: ctx)
        }
        p.finish()
        return x
    }

    static func decodeUsers(_ n: ConfigNode, path: String, ctx: DecodeContext) -> [User] {
        var users: [User] = []
        switch n.value {
        case .array(let items):
            for (i, item) in items.enumerated() {
                let up = "\(path)[\(i)]"
                guard case .table(let t) = item.value else {
                    ctx.error(up, "expected a table, found \(item.value.typeName)", node: item); continue
                }
                users.append(decodeUser(TableReader(t, path: up, ctx: ctx, node: item)))
            }
        case .table(let t):
            // Legacy TOML `[pools.x.users.0]` form; ordered by numeric index (the reference sorts as strings).
            var indexed: [(UInt64, ConfigEntry)] = []
            for e in t.entries {
                guard let idx = ValueGrammar.parseUnsigned(e.key) else {
                    ctx.error("\(path).\(e.key)",
                              "invalid user key '\(e.key)': expected numeric index or use array format",
                              node: e.node, hint: "use [[\(path)]] array-of-tables entries")
                    continue
                }
                indexed.append((idx, e))
            }
            for (_, e) in indexed.sorted(by: { $0.0 < $1.0 }) {
                let up = "\(path).\(e.key)"
                guard case .table(let ut) = e.node.value else {
                    ctx.error(up, "expected a table, found \(e.node.value.typeName)", node: e.node); continue
                }
                users.append(decodeUser(TableReader(ut, path: up, ctx: ctx, node: e.node)))
            }
        default:
            ctx.error(path, "expected a list of users, found \(n.value.typeName)", node: n)
        }
        return users
    }

    static func decodeUser(_ u: TableReader) -> User {
        var x = User()
        let ctx = u.ctx
        x.username = u.string("username", required: true) ?? ""
        x.password = u.string("password", required: true) ?? ""
        x.poolSize = u.u32("pool_size", required: true) ?? x.poolSize
        x.minPoolSize = u.u32("min_pool_size")
        if let n = u.table["pool_mode"], let s = u.string("pool_mode") {
            if let m = PoolMode(parsing: s) { x.poolMode = m } else {
                ctx.error(u.keyPath("pool_mode"), "unknown pool_mode '\(s)'", node: n,
                          hint: "expected `transaction` or `session`")
            }
        }
        x.serverLifetime = u.duration("server_lifetime")
        x.queryTimeout = u.duration("query_timeout")
        x.idleTransactionTimeout = u.duration("idle_transaction_timeout")
        x.transactionTimeout = u.duration("transaction_timeout")
        x.clientIdleTimeout = u.duration("client_idle_timeout")
        x.serverUsername = u.string("server_username")
        x.serverPassword = u.string("server_password")
        x.authPamService = u.string("auth_pam_service")
        u.finish()
        return x
    }

    static func decodeAuthQuery(_ a: TableReader) -> AuthQuery {
        var x = AuthQuery()
        x.query = a.string("query", required: true) ?? ""
        x.user = a.string("user", required: true) ?? ""
        x.password = a.string("password") ?? ""
        x.database = a.string("database")
        x.workers = a.u32("workers") ?? x.workers
        x.serverUser = a.string("server_user")
        x.serverPassword = a.string("server_password")
        x.poolSize = a.u32("pool_size") ?? x.poolSize
        x.minPoolSize = a.u32("min_pool_size") ?? x.minPoolSize
        x.cacheTtl = a.duration("cache_ttl") ?? x.cacheTtl
        x.cacheFailureTtl = a.duration("cache_failure_ttl") ?? x.cacheFailureTtl
        x.minInterval = a.duration("min_interval") ?? x.minInterval
        x.dynamicPoolGcDelay = a.duration("dynamic_pool_gc_delay") ?? x.dynamicPoolGcDelay
        a.finish()
        return x
    }

    static func decodeWeb(_ w: TableReader) -> Web {
        var x = Web()
        x.enabled = w.bool("enabled") ?? x.enabled
        x.host = w.string("host") ?? x.host
        x.port = w.port("port") ?? x.port
        x.ui = w.bool("ui") ?? x.ui
        x.uiAnonymous = w.bool("ui_anonymous") ?? x.uiAnonymous
        x.logTapMaxEntries = w.u32("log_tap_max_entries") ?? x.logTapMaxEntries
        x.ssoEnabled = w.bool("sso_enabled") ?? x.ssoEnabled
        x.ssoProxyUrl = w.string("sso_proxy_url")
        x.ssoPublicKeyFile = w.string("sso_public_key_file")
        x.ssoAudience = w.stringArray("sso_audience") ?? x.ssoAudience
        x.ssoAllowedUsers = w.stringArray("sso_allowed_users") ?? x.ssoAllowedUsers
        if let list = w.stringArray("trusted_proxies") {
            x.trustedProxies = list
            for (i, c) in list.enumerated() where IPNetwork(cidr: c) == nil {
                w.ctx.error("\(w.path).trusted_proxies[\(i)]", "invalid CIDR '\(c)'", node: w.table["trusted_proxies"],
                            hint: "expected a network like 10.0.0.0/8")
            }
        }
        x.ssoGroupsClaim = w.string("sso_groups_claim") ?? x.ssoGroupsClaim
        x.ssoAdminGroups = w.stringArray("sso_admin_groups") ?? x.ssoAdminGroups
        x.ssoRequireHttps = w.bool("sso_require_https") ?? x.ssoRequireHttps
        w.finish()
        return x
    }
}
