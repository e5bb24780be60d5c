import Testing
@testable import ConfigKit

@Suite struct InertSettingsTests {
    func config(_ edit: (inout Config) -> Void) -> Config {
        var c = Config()
        var pool = Pool()
        pool.users = [User(username: "app", password: "md5" + String(repeating: "0", count: 32))]
        c.pools = ["db": pool]
        edit(&c)
        return c
    }

    @Test func aPlainConfigHasNone() {
        #expect(InertSettings.warnings(config { _ in }).isEmpty)
        #expect(InertSettings.warnings(config { $0.web.enabled = true }).isEmpty)  // /metrics is served
    }

    @Test func everyInertSettingIsNamedByItsKeyPath() {
        let c = config { c in
            c.web.enabled = true
            c.web.ui = true
            c.web.ssoEnabled = true
            c.talos = Talos(keys: ["k"], databases: ["db"])
            c.general.patroniApiUrls = ["http://patroni:8008"]
            c.general.syncServerParameters = false  // implemented (either value): no warning
            c.general.tlsRateLimitPerSecond = 200  // implemented: no warning
            c.general.tcpSocketBufferSize = 65536
            c.general.tcpSoLinger = 5
            c.pools["db"]?.logClientParameterStatusChanges = true
            c.pools["db"]?.authQuery = AuthQuery()  // implemented: no warning
            c.pools["db"]?.maxDbConnections = 10  // implemented: no warning
            c.pools["db"]?.reservePoolSize = 2  // implemented: no warning
            c.pools["db"]?.minGuaranteedPoolSize = 1  // implemented: no warning
            c.pools["db"]?.patroniApiUrls = ["http://patroni:8008"]
            var pam = User(username: "pam", password: "")
            pam.authPamService = "login"
            c.pools["db"]?.users.append(pam)
            c.pools["db"]?.users.append(User(username: "svc", password: User.jwtPasswordPrefix + "/etc/key.pem"))
        }
        let warnings = InertSettings.warnings(c)
        #expect(warnings.allSatisfy { $0.severity == .warning })
        #expect(warnings.map(\.keyPath) == [
            "web.ui", "web.sso_enabled", "talos",
            "general.tcp_socket_buffer_size", "general.tcp_so_linger", "general.patroni_api_urls",
            "pools.db.log_client_parameter_status_changes",
            "pools.db.patroni_api_urls",
            "pools.db.users[1].auth_pam_service", "pools.db.users[2].password",
        ])
        #expect(warnings[0].message.contains("only /metrics is served on 0.0.0.0:9127"))
        #expect(warnings.last?.message.contains("'svc'") == true)
    }

    @Test func implementedOrZeroSettingsAndEmptyUrlListsAreNotReported() {
        let c = config { c in
            c.pools["db"]?.maxDbConnections = 5
            c.pools["db"]?.reservePoolSize = 0
            c.general.patroniApiUrls = []
        }
        #expect(InertSettings.warnings(c).isEmpty)
    }

    @Test func scalingFastRetriesIsWarnedAboutOnlyWhenSet() {
        #expect(InertSettings.warnings(config { _ in }).isEmpty)
        let c = config { c in
            c.general.scalingFastRetries = 3
            c.pools["db"]?.scalingFastRetries = 5
        }
        #expect(InertSettings.warnings(c).map(\.keyPath) == ["general.scaling_fast_retries", "pools.db.scaling_fast_retries"])
    }

    @Test func poolsAreReportedInNameOrder() {
        let c = config { c in
            var pool = c.pools["db"]!
            pool.logClientParameterStatusChanges = true
            c.pools = ["zeta": pool, "alpha": pool]
        }
        #expect(InertSettings.warnings(c).map(\.keyPath) == ["pools.alpha.log_client_parameter_status_changes",
                                                              "pools.zeta.log_client_parameter_status_changes"])
    }

    /// The reference's Tokio knobs, anonymous-statement cache and query-text store have nothing to
    /// act on here: warned when set (the interner settings: when not at their defaults).
    @Test func referenceRuntimeKnobsAreWarnedAbout() {
        let c = config { c in
            c.general.workerStackSize = 8 << 20
            c.general.maxBlockingThreads = 4
            c.general.tokioGlobalQueueInterval = 31
            c.general.tokioEventInterval = 61
            c.general.clientAnonymousPreparedCacheSize = 100
            c.general.queryInternerGcIntervalSeconds = 30
        }
        let paths = InertSettings.warnings(c).map(\.keyPath)
        #expect(paths == ["general.worker_stack_size", "general.max_blocking_threads", "general.tokio_global_queue_interval",
                          "general.tokio_event_interval", "general.client_anonymous_prepared_cache_size",
                          "general.query_interner_gc_interval_seconds"])
        let defaults = config { c in
            c.general.queryInternerGcIntervalSeconds = 60
            c.general.queryInternerAnonIdleTtlSeconds = 60
            c.general.workerCpuAffinityPinning = true  // implemented
            c.general.unixSocketBufferSize = 65536  // implemented
        }
        #expect(InertSettings.warnings(defaults).isEmpty)
    }
}
