import Testing
@testable import ConfigKit

@Suite struct ConfigDecoderTests {
    @Test func unknownKeyWarnsWithSuggestion() throws {
        let r = yamlWith(general: "max_conections: 10")
        #expect(!r.hasErrors)
        let w = try #require(r.warnings.first { $0.keyPath == "general.max_conections" })
        #expect(w.message == "unknown key `max_conections` is ignored")
        #expect(w.hint == "did you mean `max_connections`?")
        #expect(w.line == 4)
        #expect(w.description == "warning: general.max_conections (test.yaml:4): unknown key `max_conections` is "
            + "ignored — hint: did you mean `max_connections`?")
    }

    @Test func humanReadableValuesEverywhere() throws {
        let r = yamlWith(general: "connect_timeout: \"5s\"\nmax_memory_usage: \"64MB\"\nworker_stack_size: \"8MB\"",
                         pool: "idle_timeout: \"2m\"\nserver_lifetime: 1000")
        let c = try #require(r.config, "\(r.diagnostics)")
        #expect(c.general.connectTimeout == 5000)
        #expect(c.general.maxMemoryUsage == 64 << 20)
        #expect(c.general.workerStackSize == 8 << 20)
        #expect(c.pools["app"]?.idleTimeout == 120_000)
        #expect(c.pools["app"]?.serverLifetime == 1000)
    }

    @Test func badValuesHaveKeyPaths() {
        let r = yamlWith(general: "connect_timeout: \"-5s\"\nidle_timeout: -1\ntcp_keepalives_idle: \"5s\"\nport: 70000\n"
                         + "max_memory_usage: \"1TB\"\ntcp_no_delay: \"yes please\"")
        let byPath = Dictionary(r.errors.map { ($0.keyPath, $0.message) }, uniquingKeysWith: { a, _ in a })
        #expect(byPath["general.connect_timeout"] == "invalid number in duration: '-5'")
        #expect(byPath["general.idle_timeout"] == "duration cannot be negative")
        #expect(byPath["general.tcp_keepalives_idle"] == "expected an integer number of seconds, found string '5s'")
        #expect(byPath["general.port"] == "port must be between 1 and 65535 (got 70000)")
        #expect(byPath["general.max_memory_usage"] == "invalid number in byte size: '1T'")
        #expect(byPath["general.tcp_no_delay"] == "expected a boolean (true/false), found string")
        #expect(r.config == nil)
    }

    @Test func deprecatedAliasAndPrometheusAlias() throws {
        let r = yaml("""
        general:
          admin_username: "a"
          admin_password: "b"
          client_prepared_statements_cache_size: 100
        prometheus:
          enabled: true
          port: 9999
        pools: {}
        """)
        let c = try #require(r.config)
        #expect(c.general.clientAnonymousPreparedCacheSize == 100)
        #expect(c.web.enabled && c.web.port == 9999)
        #expect(r.warnings.contains { $0.message == "`client_prepared_statements_cache_size` is deprecated" })
    }

    @Test func missingSections() {
        let r = yaml("web:\n  enabled: true\n")
        #expect(errorMessages(r) == ["missing field `general`", "missing field `pools`"])
        let r2 = yaml("general:\n  port: 6432\npools: {}\n")
        #expect(errorMessages(r2) == ["missing field `admin_username`", "missing field `admin_password`"])
        #expect(r2.errors.first?.keyPath == "general.admin_username")
    }

    @Test func nullsAreAbsentAndEmptySectionsUseDefaults() throws {
        let r = yaml("""
        include:
        general:
          admin_username: "a"
          admin_password: "b"
          unix_socket_dir: null
        web: {}
        pools: {}
        """)
        let c = try #require(r.config, "\(r.diagnostics)")
        #expect(c.general.unixSocketDir == nil)
        #expect(c.web == Web())
    }

    @Test func pgHbaShapes() throws {
        let inline = yamlWith(general: "pg_hba: \"host all all 0.0.0.0/0 md5\"")
        #expect(inline.config?.general.pgHba?.rules.count == 1)
        let content = toml("""
        [general]
        admin_username = "a"
        admin_password = "b"
        pg_hba.content = "local all all trust"
        [pools]
        """)
        #expect(content.config?.general.pgHba?.rules.first?.type == .local)
        let empty = yamlWith(general: "pg_hba: {}")
        #expect(errorMessages(empty) == ["expected either 'path' or 'content' field for PgHba"])
        let bad = yamlWith(general: "pg_hba: |\n  host all all 10.0.0.0/8 md5\n  bogus line here x y")
        #expect(errorMessages(bad) == ["pg_hba line 2: unknown connection type 'bogus' (expected local, host, "
            + "hostssl or hostnossl)"])
    }

    @Test func badPoolModeAndCidr() {
        let r = yamlWith(general: "hba: [\"10.0.0.1\"]", pool: "pool_mode: statement")
        #expect(errorMessages(r).contains("unknown pool_mode 'statement'"))
        #expect(errorMessages(r).contains("invalid CIDR '10.0.0.1'"))
        #expect(r.errors.first { $0.keyPath == "general.hba[0]" }?.hint == "write a network with a prefix, e.g. "
            + "10.0.0.1/32")
    }
}
