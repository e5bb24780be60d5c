// Semantic validation (config-spec §4, in the reference's order, plus checks users expect).
// Collects every problem instead of stopping at the first; pools are iterated sorted for stable output.

import Foundation

public enum ConfigValidator {
    /// Validates a decoded config. File/line are attached later by the loader from the source tree.
    public static func validate(_ config: Config, file: String? = nil) -> [Diagnostic] {
        var out: [Diagnostic] = []
        func err(_ path: String, _ msg: String, hint: String? = nil) { out.append(.error(path, msg, hint: hint)) }
        func warn(_ path: String, _ msg: String, hint: String? = nil) { out.append(.warning(path, msg, hint: hint)) }
        let g = config.general
        let poolNames = config.sortedPoolNames  // sorted once: a config may hold hundreds of thousands of pools

        // 1. Talos keys must be readable.
        if let talos = config.talos {
            for (i, key) in talos.keys.enumerated() where !FileManager.default.isReadableFile(atPath: key) {
                err("talos.keys[\(i)]", "JWT public key error: cannot read '\(key)'")
            }
        }

        // 2. general.startup_parameters.
        for p in StartupParameters.problems(g.startupParameters, scope: "general.startup_parameters") {
            err("general.startup_parameters", p)
        }

        // 3. Merged general + pool startup parameters and full StartupMessage sizes.
        for name in poolNames {
            let pool = config.pools[name]!
            let merged = Dictionary(pool.effectiveStartupParameters(g).map { ($0.key, $0.value) },
                                    uniquingKeysWith: { _, b in b })
            let size = StartupParameters.serializedSize(merged)
            let scope = "merged general + pools.\(name).startup_parameters"
            if size > StartupParameters.operatorBudget {
                err("pools.\(name).startup_parameters", "\(scope): serialized size \(size) bytes exceeds operator "
                    + "budget \(StartupParameters.operatorBudget) (PG StartupMessage cap is 10000 bytes; reduce general "
                    + "or pool startup_parameters)")
                continue
            }
            var backends: [(String, String)] = pool.users.map { ($0.backendUsername, "user") }
            if let su = pool.authQuery?.serverUser { backends.append((su, "auth_query server_user")) }
            for (user, kind) in backends {
                let bytes = startupMessageSize(user: user, database: pool.serverDatabaseName(name),
                                               application: pool.effectiveApplicationName, params: merged)
                if bytes > StartupParameters.startupMessageCap {
                    err("pools.\(name).startup_parameters", "\(scope): full StartupMessage for \(kind) '\(user)' is "
                        + "\(bytes) bytes, exceeding the PG cap of 10000 bytes (reduce startup_parameters)")
                }
            }
        }

        // 4. TLS handshake rate limit.
        let rate = g.tlsRateLimitPerSecond
        if rate > 0 && rate < 100 {
            err("general.tls_rate_limit_per_second", "tls rate limit should be > 100",
                hint: "use 0 (unlimited) or a multiple of 100")
        } else if rate % 100 != 0 {
            err("general.tls_rate_limit_per_second", "tls rate limit should be multiple 100",
                hint: "use 0 (unlimited) or a multiple of 100")
        }
        // 5, 6. Scaling.
        if g.scalingWarmPoolRatio > 100 {
            err("general.scaling_warm_pool_ratio", "general.scaling_warm_pool_ratio must be 0-100")
        }
        if g.scalingMaxParallelCreates == 0 {
            err("general.scaling_max_parallel_creates", "general.scaling_max_parallel_creates must be >= 1")
        }
        if g.maxUserConnections < 0 {
            err("general.max_user_connections", "general.max_user_connections must be >= 0 (0 = no limit)")
        }
        // 7. unix_socket_mode.
        do { _ = try ValueGrammar.parseOctalMode(g.unixSocketMode) } catch {
            err("general.unix_socket_mode", "\(error)", hint: "use an octal mode like \"0600\" or \"0660\"")
        }
        // 8.
        if g.tcpSocketBufferSize > 0 && g.tcpSocketBufferSize < 65536 {
            warn("general.tcp_socket_buffer_size", "tcp_socket_buffer_size of \(g.tcpSocketBufferSize) bytes is very "
                + "small and may hurt throughput", hint: "use 0 (kernel autotuning) or at least 64KB")
        }
        // 9, 10. hba.
        if g.pgHba != nil && !g.hba.isEmpty {
            err("general.hba", "general.hba and general.pg_hba cannot be specified at the same time",
                hint: "move the networks into pg_hba rules and remove general.hba")
        }
        if g.unixSocketDir != nil && g.pgHba == nil && !g.hba.isEmpty {
            warn("general.unix_socket_dir", "Unix socket clients bypass the general.hba whitelist",
                 hint: "use general.pg_hba with `local` rules to control Unix socket access")
        }
        // 11-13. Prepared statements.
        if g.preparedStatements && g.preparedStatementsCacheSize == 0 {
            err("general.prepared_statements_cache_size", "The value of prepared_statements_cache should be greater "
                + "than 0 if prepared_statements are enabled")
        }
        if g.queryInternerGcIntervalSeconds == 0 {
            err("general.query_interner_gc_interval_seconds", "general.query_interner_gc_interval_seconds must be > 0")
        }
        if g.clientAnonymousPreparedCacheSize == 0 {
            warn("general.client_anonymous_prepared_cache_size", "client_anonymous_prepared_cache_size = 0 means an "
                + "unbounded per-client cache of anonymous prepared statements")
        }
        // Admin credentials (required keys are checked while decoding; empty values here).
        if g.adminPassword == "admin" || g.adminPassword.isEmpty {
            warn("general.admin_password", "admin_password is empty or the default `admin`",
                 hint: "set a strong password; the web UI stays disabled with this value")
        }

        // 14. Client-facing TLS.
        if g.tlsPrivateKey != nil && g.tlsCertificate == nil {
            err("general.tls_private_key", "tls_private_key is set but tls_certificate is not")
        }
        if g.tlsCertificate != nil && g.tlsPrivateKey == nil {
            err("general.tls_certificate", "tls_certificate is set but tls_private_key is not")
        }
        if let mode = g.tlsMode {
            if !ValueGrammar.clientTlsModes.contains(mode) {
                err("general.tls_mode", "Invalid tls_mode: \(mode)", hint: "expected one of allow, disable, require, "
                    + "verify-full")
            } else {
                if (mode == "require" || mode == "verify-full") && (g.tlsCertificate == nil || g.tlsPrivateKey == nil) {
                    err("general.tls_mode", "tls_mode is \(mode) but tls_certificate or tls_private_key is not")
                }
                if mode == "verify-full" && g.tlsCaCert == nil {
                    err("general.tls_ca_cert", "tls_mode is verify-full but tls_ca_cert is not set")
                }
                #if !os(Linux)
                if mode == "verify-full" { err("general.tls_mode", "tls_mode verify-full is supported only on linux") }
                #endif
            }
        }
        for (key, value) in [("tls_certificate", g.tlsCertificate), ("tls_private_key", g.tlsPrivateKey),
                             ("tls_ca_cert", g.tlsCaCert)] {
            if let f = value, !FileManager.default.isReadableFile(atPath: f) {
                err("general.\(key)", "tls is incorrectly configured: cannot read \(key) file '\(f)'")
            } else if let f = value, let p = PEMCheck.problem(path: f, kind: key == "tls_private_key" ? .privateKey : .certificates) {
                err("general.\(key)", "tls is incorrectly configured: \(p)")
            }
        }

        // 15. Server-facing TLS (global and per pool).
        let globalServerMode = g.serverTlsMode.lowercased()
        if !ValueGrammar.isValidServerTlsMode(g.serverTlsMode) {
            err("general.server_tls_mode", "invalid server_tls_mode: \(g.serverTlsMode)",
                hint: "expected one of " + ValueGrammar.serverTlsModes.joined(separator: ", "))
        } else {
            if (globalServerMode == "verify-ca" || globalServerMode == "verify-full") && g.serverTlsCaCert == nil {
                err("general.server_tls_ca_cert", "server_tls_mode is '\(g.serverTlsMode)' but server_tls_ca_cert is "
                    + "not set")
            }
            if g.serverTlsCertificate != nil && g.serverTlsPrivateKey == nil {
                err("general.server_tls_certificate", "server_tls_certificate is set but server_tls_private_key is not")
            }
            if g.serverTlsPrivateKey != nil && g.serverTlsCertificate == nil {
                err("general.server_tls_private_key", "server_tls_private_key is set but server_tls_certificate is not")
            }
            if globalServerMode != "disable" {
                for (key, value) in [("server_tls_ca_cert", g.serverTlsCaCert),
                                     ("server_tls_certificate", g.serverTlsCertificate),
                                     ("server_tls_private_key", g.serverTlsPrivateKey)] {
                    if let f = value, !FileManager.default.isReadableFile(atPath: f) {
                        err("general.\(key)", "Failed to read certificate file \(f): no such file or not readable")
                    } else if let f = value, let p = PEMCheck.problem(
                        path: f, kind: key == "server_tls_private_key" ? .privateKey : .certificates) {
                        err("general.\(key)", p)
                    }
                }
            }
        }
        for name in poolNames {
            let pool = config.pools[name]!
            let path = "pools.\(name)"
            let mode = pool.effectiveServerTlsMode(g)
            if !ValueGrammar.isValidServerTlsMode(mode) {
                if pool.serverTlsMode != nil {
                    err("\(path).server_tls_mode", "pool '\(name)': invalid server_tls_mode '\(mode)'")
                }
                continue
            }
            let lower = mode.lowercased()
            let hasCert = pool.effectiveServerTlsCertificate(g) != nil, hasKey = pool.effectiveServerTlsPrivateKey(g) != nil
            let overrides = pool.serverTlsMode != nil || pool.serverTlsCaCert != nil || pool.serverTlsCertificate != nil
                || pool.serverTlsPrivateKey != nil
            guard overrides else { continue }  // identical to the global checks above
            if (lower == "verify-ca" || lower == "verify-full") && pool.effectiveServerTlsCaCert(g) == nil {
                err("\(path).server_tls_mode", "pool '\(name)': server_tls_mode is '\(mode)' but no server_tls_ca_cert")
            }
            if hasCert && !hasKey {
                err("\(path).server_tls_certificate", "pool '\(name)': server_tls_certificate without "
                    + "server_tls_private_key")
            }
            if hasKey && !hasCert {
                err("\(path).server_tls_private_key", "pool '\(name)': server_tls_private_key without "
                    + "server_tls_certificate")
            }
            if lower != "disable" {
                for (key, value) in [("server_tls_ca_cert", pool.serverTlsCaCert),
                                     ("server_tls_certificate", pool.serverTlsCertificate),
                                     ("server_tls_private_key", pool.serverTlsPrivateKey)] {
                    if let f = value, !FileManager.default.isReadableFile(atPath: f) {
                        err("\(path).\(key)", "Failed to read certificate file \(f): no such file or not readable")
                    } else if let f = value, let p = PEMCheck.problem(
                        path: f, kind: key == "server_tls_private_key" ? .privateKey : .certificates) {
                        err("\(path).\(key)", "pool '\(name)': \(p)")
                    }
                }
            }
        }

        // 16. Patroni (general).
        if let urls = g.patroniApiUrls {
            if urls.isEmpty { err("general.patroni_api_urls", "general.patroni_api_urls cannot be an empty list") }
            for (i, u) in urls.enumerated() where !(u.hasPrefix("http://") || u.hasPrefix("https://")) {
                err("general.patroni_api_urls[\(i)]", "general.patroni_api_urls: invalid URL '\(u)'; must start with "
                    + "http:// or https://")
            }
        }

        // 17. Pools.
        for name in poolNames {
            out += validatePool(config.pools[name]!, name: name, general: g)
        }
        return out
    }

    static func startupMessageSize(user: String, database: String, application: String,
                                   params: [String: String]) -> Int {
        var size = 4 + 4
        func pair(_ k: String, _ v: String) { size += k.utf8.count + 1 + v.utf8.count + 1 }
        pair("user", user)
        pair("database", database)
        pair("application_name", params["application_name"] ?? application)
        for (k, v) in params where k != "application_name" { pair(k, v) }
        return size + 1
    }

    static func validatePool(_ pool: Pool, name: String, general g: General) -> [Diagnostic] {
        var out: [Diagnostic] = []
        let path = "pools.\(name)"
        func err(_ p: String, _ msg: String, hint: String? = nil) { out.append(.error(p, msg, hint: hint)) }
        func warn(_ p: String, _ msg: String, hint: String? = nil) { out.append(.warning(p, msg, hint: hint)) }

        // a.
        for p in StartupParameters.problems(pool.startupParameters, scope: "pool.startup_parameters") {
            err("\(path).startup_parameters", p)
        }
        // b.
        if let r = pool.scalingWarmPoolRatio, r > 100 {
            err("\(path).scaling_warm_pool_ratio", "scaling_warm_pool_ratio must be 0-100")
        }
        // c. Coordinator.
        if let maxDb = pool.maxDbConnections, maxDb > 0 {
            let sumMin = pool.users.reduce(0) { $0 + ($1.minPoolSize ?? 0) }
            if sumMin > maxDb {
                err("\(path).max_db_connections", "sum of min_pool_size (\(sumMin)) exceeds max_db_connections "
                    + "(\(maxDb)); not all minimums can be satisfied simultaneously")
            }
            if pool.effectiveReservePoolSize > maxDb {
                warn("\(path).reserve_pool_size", "reserve_pool_size (\(pool.effectiveReservePoolSize)) exceeds "
                    + "max_db_connections (\(maxDb))")
            }
            for (i, u) in pool.users.enumerated() where u.poolSize > maxDb {
                warn("\(path).users[\(i)].pool_size", "pool_size (\(u.poolSize)) of user '\(u.username)' exceeds "
                    + "max_db_connections (\(maxDb)); it is effectively capped")
            }
            let idle = pool.effectiveIdleTimeout(g)
            if idle > 0 && pool.effectiveMinConnectionLifetime > idle {
                warn("\(path).min_connection_lifetime", "min_connection_lifetime (\(pool.effectiveMinConnectionLifetime) "
                    + "ms) is larger than idle_timeout (\(idle) ms)")
            }
            for (i, u) in pool.users.enumerated() where pool.effectiveMinGuaranteedPoolSize > u.poolSize {
                warn("\(path).users[\(i)].pool_size", "min_guaranteed_pool_size (\(pool.effectiveMinGuaranteedPoolSize))"
                    + " is larger than pool_size (\(u.poolSize)) of user '\(u.username)'")
            }
            // 18.
            if pool.effectiveReservePoolTimeout > g.queryWaitTimeout {
                warn("\(path).reserve_pool_timeout", "reserve_pool_timeout (\(pool.effectiveReservePoolTimeout) ms) "
                    + "is larger than general.query_wait_timeout (\(g.queryWaitTimeout) ms)")
            }
        }
        // d. Users.
        var seen: Set<String> = []
        for (i, u) in pool.users.enumerated() {
            let up = "\(path).users[\(i)]"
            if seen.contains(u.username) {
                err("\(up).username", "duplicate username '\(u.username)' in pool users",
                    hint: "each username may appear once per pool")
            }
            seen.insert(u.username)
            if let key = u.jwtPublicKeyPath, !FileManager.default.isReadableFile(atPath: key) {
                err("\(up).password", "JWT public key error: cannot read '\(key)'")
            }
            if u.serverPassword != nil && u.serverUsername == nil {
                err("\(up).server_password", "server_password requires server_username to be set",
                    hint: "set server_username, or remove server_password to use passthrough authentication")
            }
            if u.poolSize == 0 {
                err("\(up).pool_size", "pool_size must be greater than 0")
            }
            if let m = u.minPoolSize, m > u.poolSize {
                err("\(up).min_pool_size", "min_pool_size of \(m) cannot be larger than pool_size of \(u.poolSize)",
                    hint: "lower min_pool_size or raise pool_size")
            }
        }
        // e. Patroni.
        if let urls = pool.patroniApiUrls {
            if urls.isEmpty {
                err("\(path).patroni_api_urls", "patroni_api_urls cannot be an empty list; remove the setting to "
                    + "disable Patroni-assisted fallback")
            }
            for (i, u) in urls.enumerated() where !(u.hasPrefix("http://") || u.hasPrefix("https://")) {
                err("\(path).patroni_api_urls[\(i)]", "patroni_api_urls: invalid URL '\(u)'; must start with http:// "
                    + "or https://")
            }
            let cooldown = pool.effectiveFallbackCooldown(g)
            if cooldown == 0 {
                err("\(path).fallback_cooldown", "fallback_cooldown must be > 0")
            } else if cooldown < 1000 {
                warn("\(path).fallback_cooldown", "fallback_cooldown is \(cooldown) ms",
                     hint: "did you mean \"\(cooldown)s\"?")
            }
            if pool.effectivePatroniApiTimeout(g) == 0 { err("\(path).patroni_api_timeout", "patroni_api_timeout must be > 0") }
            if pool.effectiveFallbackConnectTimeout(g) == 0 {
                err("\(path).fallback_connect_timeout", "fallback_connect_timeout must be > 0")
            }
            let lifetime = pool.effectiveFallbackLifetime(g)
            if lifetime == 0 { err("\(path).fallback_lifetime", "fallback_lifetime must be > 0") }
            if lifetime > cooldown && cooldown > 0 {
                warn("\(path).fallback_lifetime", "fallback_lifetime (\(lifetime) ms) is larger than fallback_cooldown "
                    + "(\(cooldown) ms)")
            }
        }
        // f. auth_query.
        if let aq = pool.authQuery {
            let ap = "\(path).auth_query"
            if aq.query.isEmpty { err("\(ap).query", "auth_query.query cannot be empty") }
            if aq.user.isEmpty { err("\(ap).user", "auth_query.user cannot be empty") }
            if aq.serverPassword != nil && aq.serverUser == nil {
                err("\(ap).server_password", "auth_query: server_password requires server_user to be set")
            }
            if aq.workers == 0 { err("\(ap).workers", "auth_query.workers must be > 0") }
            if aq.minPoolSize > aq.poolSize { err("\(ap).min_pool_size", "auth_query: min_pool_size must be <= pool_size") }
        }
        return out
    }
}
