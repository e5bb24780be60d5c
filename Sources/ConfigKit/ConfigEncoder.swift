// Plain (comment-free) YAML and TOML emitters that round-trip through the loader, plus the public value-formatting
// helpers annotated emitters can build on.

/// A value to emit; integers are kept as decimal text so `UInt64` values survive.
public enum EmitValue: Sendable, Equatable {
    case string(String)
    case integer(String)
    case bool(Bool)
    case stringArray([String])
    /// Sorted key/value pairs.
    case stringMap([(String, String)])
    case table([(String, EmitValue)])

    public static func == (lhs: EmitValue, rhs: EmitValue) -> Bool {
        switch (lhs, rhs) {
        case (.string(let a), .string(let b)), (.integer(let a), .integer(let b)): return a == b
        case (.bool(let a), .bool(let b)): return a == b
        case (.stringArray(let a), .stringArray(let b)): return a == b
        case (.stringMap(let a), .stringMap(let b)): return a.map { $0.0 + "\u{0}" + $0.1 } == b.map { $0.0 + "\u{0}" + $0.1 }
        case (.table(let a), .table(let b)): return a.map(\.0) == b.map(\.0) && zip(a, b).allSatisfy { $0.1 == $1.1 }
        default: return false
        }
    }
}

/// Quoting and number/size formatting shared by all emitters.
public enum ConfigFormatting {
    /// YAML double-quoted scalar with escapes.
    public static func yamlString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            case "\u{0}": out += "\\0"
            default:
                if u.value < 0x20 || u.value == 0x7f || u.value == 0x85 || u.value == 0x2028 || u.value == 0x2029
                    || u.value == 0xfeff {
                    out += "\\u" + hex4(u.value)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }

    /// TOML basic string with escapes.
    public static func tomlString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            case "\u{8}": out += "\\b"
            case "\u{c}": out += "\\f"
            default:
                if u.value < 0x20 || u.value == 0x7f { out += "\\u" + hex4(u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }

    static func hex4(_ v: UInt32) -> String {
        let h = String(v, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - h.count)) + h
    }

    static func isBareKey(_ k: String) -> Bool {
        !k.isEmpty && k.unicodeScalars.allSatisfy {
            ($0 >= "a" && $0 <= "z") || ($0 >= "A" && $0 <= "Z") || ($0 >= "0" && $0 <= "9") || $0 == "_" || $0 == "-"
        }
    }

    /// TOML key: bare when possible, else quoted.
    public static func tomlKey(_ k: String) -> String { isBareKey(k) ? k : tomlString(k) }

    /// YAML mapping key: plain when it cannot be mistaken for another type, else quoted.
    public static func yamlKey(_ k: String) -> String {
        let reserved = ["true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"]
        guard isBareKey(k), let first = k.unicodeScalars.first, !(first >= "0" && first <= "9"), first != "-",
              !reserved.contains(k.lowercased()) else { return yamlString(k) }
        return k
    }

    /// Human duration (`"3s"`), see `ValueGrammar.formatDuration`.
    public static func humanDuration(_ ms: UInt64) -> String { ValueGrammar.formatDuration(ms) }
    /// Human byte size (`"1MB"`), see `ValueGrammar.formatByteSize`.
    public static func humanByteSize(_ bytes: UInt64) -> String { ValueGrammar.formatByteSize(bytes) }

    public static func yamlScalar(_ v: EmitValue) -> String? {
        switch v {
        case .string(let s): return yamlString(s)
        case .integer(let s): return s
        case .bool(let b): return b ? "true" : "false"
        case .stringArray(let a): return "[" + a.map(yamlString).joined(separator: ", ") + "]"
        case .stringMap(let m) where m.isEmpty: return "{}"
        case .table(let t) where t.isEmpty: return "{}"
        default: return nil
        }
    }

    public static func tomlInline(_ v: EmitValue) -> String {
        switch v {
        case .string(let s): return tomlString(s)
        case .integer(let s): return Int64(s) != nil ? s : tomlString(s)  // > Int64.max: digits as a string
        case .bool(let b): return b ? "true" : "false"
        case .stringArray(let a): return "[" + a.map(tomlString).joined(separator: ", ") + "]"
        case .stringMap(let m):
            return m.isEmpty ? "{}" : "{ " + m.map { "\(tomlKey($0.0)) = \(tomlString($0.1))" }.joined(separator: ", ") + " }"
        case .table(let t):
            return t.isEmpty ? "{}" : "{ " + t.map { "\(tomlKey($0.0)) = \(tomlInline($0.1))" }.joined(separator: ", ") + " }"
        }
    }
}

/// Field lists of each section, in emission order (optional fields only when set).
public enum ConfigFields {
    static func int<I: BinaryInteger>(_ v: I) -> EmitValue { .integer(String(v)) }
    static func map(_ m: [String: String]) -> EmitValue { .stringMap(m.keys.sorted().map { ($0, m[$0]!) }) }

    public static func general(_ g: General) -> [(String, EmitValue)] {
        var f: [(String, EmitValue)] = []
        func s(_ k: String, _ v: String?) { if let v { f.append((k, .string(v))) } }
        func i<I: BinaryInteger>(_ k: String, _ v: I?) { if let v { f.append((k, int(v))) } }
        func b(_ k: String, _ v: Bool) { f.append((k, .bool(v))) }
        s("host", g.host); i("port", g.port); i("backlog", g.backlog)
        i("connect_timeout", g.connectTimeout); i("query_wait_timeout", g.queryWaitTimeout)
        i("idle_timeout", g.idleTimeout); i("server_lifetime", g.serverLifetime)
        i("retain_connections_time", g.retainConnectionsTime); i("retain_connections_max", g.retainConnectionsMax)
        i("server_idle_check_timeout", g.serverIdleCheckTimeout); i("shutdown_timeout", g.shutdownTimeout)
        i("proxy_copy_data_timeout", g.proxyCopyDataTimeout); i("client_login_timeout", g.clientLoginTimeout)
        i("query_timeout", g.queryTimeout); i("idle_transaction_timeout", g.idleTransactionTimeout)
        i("transaction_timeout", g.transactionTimeout); i("client_idle_timeout", g.clientIdleTimeout)
        i("max_db_client_connections", g.maxDbClientConnections)
        i("max_user_client_connections", g.maxUserClientConnections)
        i("max_user_connections", g.maxUserConnections)
        i("tcp_keepalives_idle", g.tcpKeepalivesIdle); i("tcp_keepalives_interval", g.tcpKeepalivesInterval)
        i("tcp_keepalives_count", g.tcpKeepalivesCount); i("tcp_so_linger", g.tcpSoLinger)
        b("tcp_no_delay", g.tcpNoDelay); i("tcp_user_timeout", g.tcpUserTimeout)
        i("tcp_socket_buffer_size", g.tcpSocketBufferSize); i("unix_socket_buffer_size", g.unixSocketBufferSize)
        s("unix_socket_dir", g.unixSocketDir); s("unix_socket_mode", g.unixSocketMode)
        i("max_connections", g.maxConnections); i("max_concurrent_creates", g.maxConcurrentCreates)
        i("max_memory_usage", g.maxMemoryUsage)
        i("scaling_warm_pool_ratio", g.scalingWarmPoolRatio); i("scaling_fast_retries", g.scalingFastRetries)
        i("scaling_max_parallel_creates", g.scalingMaxParallelCreates)
        b("log_client_connections", g.logClientConnections); b("log_client_disconnections", g.logClientDisconnections)
        s("syslog_prog_name", g.syslogProgName); s("daemon_pid_file", g.daemonPidFile)
        i("worker_threads", g.workerThreads); b("worker_cpu_affinity_pinning", g.workerCpuAffinityPinning)
        i("worker_stack_size", g.workerStackSize); i("max_blocking_threads", g.maxBlockingThreads)
        i("tokio_global_queue_interval", g.tokioGlobalQueueInterval); i("tokio_event_interval", g.tokioEventInterval)
        b("server_round_robin", g.serverRoundRobin); b("sync_server_parameters", g.syncServerParameters)
        b("cancel_on_client_disconnect", g.cancelOnClientDisconnect); i("auth_failure_delay", g.authFailureDelay)
        i("message_size_to_be_stream", g.messageSizeToBeStream); s("pooler_check_query", g.poolerCheckQuery)
        b("prepared_statements", g.preparedStatements)
        i("prepared_statements_cache_size", g.preparedStatementsCacheSize)
        i("server_prepared_statements_cache_size", g.serverPreparedStatementsCacheSize)
        i("client_anonymous_prepared_cache_size", g.clientAnonymousPreparedCacheSize)
        i("query_interner_gc_interval_seconds", g.queryInternerGcIntervalSeconds)
        i("query_interner_anon_idle_ttl_seconds", g.queryInternerAnonIdleTtlSeconds)
        s("admin_username", g.adminUsername); s("admin_password", g.adminPassword)
        s("tls_certificate", g.tlsCertificate); s("tls_private_key", g.tlsPrivateKey); s("tls_ca_cert", g.tlsCaCert)
        s("tls_mode", g.tlsMode); i("tls_rate_limit_per_second", g.tlsRateLimitPerSecond)
        s("server_tls_mode", g.serverTlsMode); s("server_tls_ca_cert", g.serverTlsCaCert)
        s("server_tls_certificate", g.serverTlsCertificate); s("server_tls_private_key", g.serverTlsPrivateKey)
        f.append(("hba", .stringArray(g.hba)))
        f.append(("track_extra_parameters", .stringArray(g.trackExtraParameters)))
        if let p = g.pgHba { f.append(("pg_hba", .table([("content", .string(p.content))]))) }
        if !g.startupParameters.isEmpty { f.append(("startup_parameters", map(g.startupParameters))) }
        if let u = g.patroniApiUrls { f.append(("patroni_api_urls", .stringArray(u))) }
        i("fallback_cooldown", g.fallbackCooldown); i("patroni_api_timeout", g.patroniApiTimeout)
        i("fallback_connect_timeout", g.fallbackConnectTimeout); i("fallback_lifetime", g.fallbackLifetime)
        return f
    }

    /// Pool scalars (without `users` and `auth_query`, which are emitted as sub-sections).
    public static func pool(_ p: Pool) -> [(String, EmitValue)] {
        var f: [(String, EmitValue)] = []
        func s(_ k: String, _ v: String?) { if let v { f.append((k, .string(v))) } }
        func i<I: BinaryInteger>(_ k: String, _ v: I?) { if let v { f.append((k, int(v))) } }
        s("server_host", p.serverHost); i("server_port", p.serverPort); s("server_database", p.serverDatabase)
        s("pool_mode", p.poolMode.rawValue)
        i("connect_timeout", p.connectTimeout); i("idle_timeout", p.idleTimeout); i("server_lifetime", p.serverLifetime)
        i("query_timeout", p.queryTimeout); i("idle_transaction_timeout", p.idleTransactionTimeout)
        i("transaction_timeout", p.transactionTimeout); i("client_idle_timeout", p.clientIdleTimeout)
        i("max_db_client_connections", p.maxDbClientConnections)
        f.append(("cleanup_server_connections", .bool(p.cleanupServerConnections)))
        f.append(("log_client_parameter_status_changes", .bool(p.logClientParameterStatusChanges)))
        s("application_name", p.applicationName)
        i("prepared_statements_cache_size", p.preparedStatementsCacheSize)
        i("server_prepared_statements_cache_size", p.serverPreparedStatementsCacheSize)
        i("scaling_warm_pool_ratio", p.scalingWarmPoolRatio); i("scaling_fast_retries", p.scalingFastRetries)
        i("max_db_connections", p.maxDbConnections); i("min_connection_lifetime", p.minConnectionLifetime)
        i("reserve_pool_size", p.reservePoolSize); i("reserve_pool_timeout", p.reservePoolTimeout)
        i("min_guaranteed_pool_size", p.minGuaranteedPoolSize)
        s("server_tls_mode", p.serverTlsMode); s("server_tls_ca_cert", p.serverTlsCaCert)
        s("server_tls_certificate", p.serverTlsCertificate); s("server_tls_private_key", p.serverTlsPrivateKey)
        if !p.startupParameters.isEmpty { f.append(("startup_parameters", map(p.startupParameters))) }
        if let u = p.patroniApiUrls { f.append(("patroni_api_urls", .stringArray(u))) }
        i("fallback_cooldown", p.fallbackCooldown); i("patroni_api_timeout", p.patroniApiTimeout)
        i("fallback_connect_timeout", p.fallbackConnectTimeout); i("fallback_lifetime", p.fallbackLifetime)
        return f
    }

    public static func user(_ u: User) -> [(String, EmitValue)] {
        var f: [(String, EmitValue)] = []
        func s(_ k: String, _ v: String?) { if let v { f.append((k, .string(v))) } }
        func i<I: BinaryInteger>(_ k: String, _ v: I?) { if let v { f.append((k, int(v))) } }
        s("username", u.username); s("password", u.password); i("pool_size", u.poolSize)
        i("min_pool_size", u.minPoolSize); s("pool_mode", u.poolMode?.rawValue); i("server_lifetime", u.serverLifetime)
        i("query_timeout", u.queryTimeout); i("idle_transaction_timeout", u.idleTransactionTimeout)
        i("transaction_timeout", u.transactionTimeout); i("client_idle_timeout", u.clientIdleTimeout)
        s("server_username", u.serverUsername); s("server_password", u.serverPassword)
        s("auth_pam_service", u.authPamService)
        return f
    }

    public static func authQuery(_ a: AuthQuery) -> [(String, EmitValue)] {
        var f: [(String, EmitValue)] = []
        func s(_ k: String, _ v: String?) { if let v { f.append((k, .string(v))) } }
        func i<I: BinaryInteger>(_ k: String, _ v: I?) { if let v { f.append((k, int(v))) } }
        s("query", a.query); s("user", a.user); s("password", a.password); s("database", a.database)
        i("workers", a.workers); s("server_user", a.serverUser); s("server_password", a.serverPassword)
        i("pool_size", a.poolSize); i("min_pool_size", a.minPoolSize); i("cache_ttl", a.cacheTtl)
        i("cache_failure_ttl", a.cacheFailureTtl); i("min_interval", a.minInterval)
        i("dynamic_pool_gc_delay", a.dynamicPoolGcDelay)
        return f
    }

    public static func web(_ w: Web) -> [(String, EmitValue)] {
        var f: [(String, EmitValue)] = []
        func s(_ k: String, _ v: String?) { if let v { f.append((k, .string(v))) } }
        func b(_ k: String, _ v: Bool) { f.append((k, .bool(v))) }
        b("enabled", w.enabled); s("host", w.host); f.append(("port", int(w.port))); b("ui", w.ui)
        b("ui_anonymous", w.uiAnonymous); f.append(("log_tap_max_entries", int(w.logTapMaxEntries)))
        b("sso_enabled", w.ssoEnabled); s("sso_proxy_url", w.ssoProxyUrl); s("sso_public_key_file", w.ssoPublicKeyFile)
        f.append(("sso_audience", .stringArray(w.ssoAudience)))
        f.append(("sso_allowed_users", .stringArray(w.ssoAllowedUsers)))
        f.append(("trusted_proxies", .stringArray(w.trustedProxies)))
        s("sso_groups_claim", w.ssoGroupsClaim); f.append(("sso_admin_groups", .stringArray(w.ssoAdminGroups)))
        b("sso_require_https", w.ssoRequireHttps)
        return f
    }
}

public enum ConfigEncoder {
    /// Plain YAML (2-space indent, double-quoted strings, integers for durations and sizes).
    public static func yaml(_ c: Config) -> String {
        var out = ""
        func emit(_ fields: [(String, EmitValue)], indent: Int) {
            let pad = String(repeating: " ", count: indent)
            for (k, v) in fields {
                if let scalar = ConfigFormatting.yamlScalar(v) {
                    out += "\(pad)\(ConfigFormatting.yamlKey(k)): \(scalar)\n"
                } else if case .stringMap(let m) = v {
                    out += "\(pad)\(ConfigFormatting.yamlKey(k)):\n"
                    for (mk, mv) in m { out += "\(pad)  \(ConfigFormatting.yamlKey(mk)): \(ConfigFormatting.yamlString(mv))\n" }
                } else if case .table(let t) = v {
                    out += "\(pad)\(ConfigFormatting.yamlKey(k)):\n"
                    emit(t, indent: indent + 2)
                }
            }
        }
        if !c.include.files.isEmpty {
            out += "include:\n  files: [" + c.include.files.map(ConfigFormatting.yamlString).joined(separator: ", ") + "]\n"
        }
        out += "general:\n"
        emit(ConfigFields.general(c.general), indent: 2)
        out += "web:\n"
        emit(ConfigFields.web(c.web), indent: 2)
        if let t = c.talos {
            out += "talos:\n"
            emit([("keys", .stringArray(t.keys)), ("databases", .stringArray(t.databases))], indent: 2)
        }
        if c.pools.isEmpty { out += "pools: {}\n"; return out }
        out += "pools:\n"
        for name in c.sortedPoolNames {
            let p = c.pools[name]!
            out += "  \(ConfigFormatting.yamlKey(name)):\n"
            emit(ConfigFields.pool(p), indent: 4)
            if let a = p.authQuery {
                out += "    auth_query:\n"
                emit(ConfigFields.authQuery(a), indent: 6)
            }
            if p.users.isEmpty { out += "    users: []\n"; continue }
            out += "    users:\n"
            for u in p.users {
                var first = true
                for (k, v) in ConfigFields.user(u) {
                    out += (first ? "      - " : "        ") + "\(ConfigFormatting.yamlKey(k)): \(ConfigFormatting.yamlScalar(v)!)\n"
                    first = false
                }
            }
        }
        return out
    }

    /// Plain TOML; users as `[[pools.<name>.users]]`.
    public static func toml(_ c: Config) -> String {
        var out = ""
        func emit(_ fields: [(String, EmitValue)]) {
            for (k, v) in fields { out += "\(ConfigFormatting.tomlKey(k)) = \(ConfigFormatting.tomlInline(v))\n" }
        }
        if !c.include.files.isEmpty {
            out += "[include]\n"
            emit([("files", .stringArray(c.include.files))])
            out += "\n"
        }
        out += "[general]\n"
        emit(ConfigFields.general(c.general))
        out += "\n[web]\n"
        emit(ConfigFields.web(c.web))
        if let t = c.talos {
            out += "\n[talos]\n"
            emit([("keys", .stringArray(t.keys)), ("databases", .stringArray(t.databases))])
        }
        out += "\n[pools]\n"
        for name in c.sortedPoolNames {
            let p = c.pools[name]!
            let header = "pools.\(ConfigFormatting.tomlKey(name))"
            out += "\n[\(header)]\n"
            emit(ConfigFields.pool(p))
            if p.users.isEmpty { out += "users = []\n" }
            if let a = p.authQuery {
                out += "\n[\(header).auth_query]\n"
                emit(ConfigFields.authQuery(a))
            }
            for u in p.users {
                out += "\n[[\(header).users]]\n"
                emit(ConfigFields.user(u))
            }
        }
        return out
    }
}
