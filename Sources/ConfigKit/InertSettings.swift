// Settings this build loads and validates but does not act on yet (README, "Not implemented yet").
//
// A configuration written for the reference pg_doorman may rely on one of them — a reserve pool,
// a Patroni fallback, PAM logins. Silently
// ignoring it would surface later as failed logins or missing metrics, so `pg_doorman -t` prints
// these as warnings and the pooler logs them at start and after every RELOAD.

public enum InertSettings {
    /// One warning per configured-but-inert setting, general first, then pools by name.
    public static func warnings(_ config: Config) -> [Diagnostic] {
        var out: [Diagnostic] = []
        func note(_ path: String, _ message: String) { out.append(.warning(path, message)) }

        if config.web.ui {
            let served = config.web.enabled
                ? "only /metrics is served on \(config.web.host):\(config.web.port)"
                : "nothing is served (web.enabled is false)"
            note("web.ui", "the web UI is not implemented in this build: " + served)
        }
        if config.web.ssoEnabled {
            note("web.sso_enabled", "web SSO is not implemented in this build")
        }
        if config.talos != nil {
            note("talos", "talos (JWT) authentication is not implemented in this build; these keys have no effect")
        }
        let g = config.general
        if g.tcpSocketBufferSize > 0 {
            note("general.tcp_socket_buffer_size", "is not applied by this build: client sockets keep the "
                 + "kernel's (autotuned) buffer sizes")
        }
        if g.tcpSoLinger > 0 {
            note("general.tcp_so_linger", "is not applied by this build: client sockets close normally")
        }
        // Tuning knobs of the reference's Tokio runtime: this build runs SwiftNIO event loops
        // (`worker_threads` sizes them) and has no such scheduler, blocking pool or thread stacks.
        for (key, set) in [("worker_stack_size", g.workerStackSize != nil), ("max_blocking_threads", g.maxBlockingThreads != nil),
                           ("tokio_global_queue_interval", g.tokioGlobalQueueInterval != nil),
                           ("tokio_event_interval", g.tokioEventInterval != nil)] where set {
            note("general.\(key)", "has no effect in this build: it tunes the reference pooler's Tokio runtime; this one "
                 + "runs general.worker_threads SwiftNIO event loops")
        }
        // The reference keeps a per-client cache of anonymous statements and a shared store of
        // query texts; this build keeps a client's one unnamed statement (as PostgreSQL does) and
        // the pool's statement cache (prepared_statements_cache_size), so there is nothing to size.
        if g.clientAnonymousPreparedCacheSize != nil {
            note("general.client_anonymous_prepared_cache_size", "has no effect in this build: a client's unnamed "
                 + "statement is kept one at a time, as PostgreSQL does; prepared_statements_cache_size bounds the pool's cache")
        }
        if g.queryInternerGcIntervalSeconds != 60 || g.queryInternerAnonIdleTtlSeconds != 60 {
            note(g.queryInternerGcIntervalSeconds != 60 ? "general.query_interner_gc_interval_seconds"
                    : "general.query_interner_anon_idle_ttl_seconds",
                 "has no effect in this build: it has no shared query-text store to collect")
        }
        if let urls = g.patroniApiUrls, !urls.isEmpty {
            note("general.patroni_api_urls", "Patroni fallback is not implemented in this build; "
                 + "pools connect only to their server_host")
        }
        let fastRetries = "has no effect in this build: checkout is event-driven (a returned connection goes "
            + "straight to a waiting client), so there are no spins before the anticipation wait"
        if g.scalingFastRetries != General().scalingFastRetries { note("general.scaling_fast_retries", fastRetries) }
        for name in config.pools.keys.sorted() {
            guard let pool = config.pools[name] else { continue }
            let path = "pools.\(name)"
            if pool.scalingFastRetries != nil { note("\(path).scaling_fast_retries", fastRetries) }
            if pool.logClientParameterStatusChanges {
                note("\(path).log_client_parameter_status_changes", "is not implemented in this build: "
                     + "parameter changes are not logged")
            }
            if let urls = pool.patroniApiUrls, !urls.isEmpty {
                note("\(path).patroni_api_urls", "Patroni fallback is not implemented in this build; "
                     + "the pool connects only to its server_host")
            }
            for (i, user) in pool.users.enumerated() {
                if user.authPamService != nil {
                    note("\(path).users[\(i)].auth_pam_service", "PAM authentication is not implemented in this "
                         + "build: user '\(user.username)' is checked against its configured password (none configured: "
                         + "only connections pg_hba trusts get in)")
                }
                if user.jwtPublicKeyPath != nil {
                    note("\(path).users[\(i)].password", "JWT authentication is not implemented in this build: "
                         + "user '\(user.username)' can log in only where pg_hba trusts the connection")
                }
            }
        }
        return out
    }
}
