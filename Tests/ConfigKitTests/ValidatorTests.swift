import Testing
@testable import ConfigKit

@Suite struct ValidatorTests {
    @Test func minPoolSizeLargerThanPoolSize() throws {
        let r = yamlWith(users: """
              - username: "u1"
                password: ""
                pool_size: 10
              - username: "u2"
                password: ""
                pool_size: 40
                min_pool_size: 50
        """)
        let e = try #require(r.errors.first)
        #expect(e.keyPath == "pools.app.users[1].min_pool_size")
        #expect(e.message == "min_pool_size of 50 cannot be larger than pool_size of 40")
        #expect(e.file == "test.yaml")
        #expect(e.line == 15)
        #expect(e.description.hasPrefix("error: pools.app.users[1].min_pool_size (test.yaml:15): min_pool_size of 50 "
            + "cannot be larger than pool_size of 40 — hint: "))
    }

    @Test func userRules() {
        let r = yamlWith(users: """
              - username: "u1"
                password: ""
                pool_size: 0
                server_password: "x"
              - username: "u1"
                password: ""
                pool_size: 1
        """)
        #expect(errorMessages(r) == ["server_password requires server_username to be set",
                                     "pool_size must be greater than 0",
                                     "duplicate username 'u1' in pool users"])
    }

    @Test func generalRules() {
        let r = yamlWith(general: """
        tls_rate_limit_per_second: 50
        scaling_warm_pool_ratio: 101
        scaling_max_parallel_creates: 0
        unix_socket_mode: "01600"
        prepared_statements_cache_size: 0
        query_interner_gc_interval_seconds: 0
        hba: ["10.0.0.0/8"]
        pg_hba: "local all all trust"
        """)
        #expect(errorMessages(r) == [
            "tls rate limit should be > 100",
            "general.scaling_warm_pool_ratio must be 0-100",
            "general.scaling_max_parallel_creates must be >= 1",
            "general.unix_socket_mode \"01600\" sets bits outside 0o777; only standard rwx permissions are allowed",
            "general.hba and general.pg_hba cannot be specified at the same time",
            "The value of prepared_statements_cache should be greater than 0 if prepared_statements are enabled",
            "general.query_interner_gc_interval_seconds must be > 0",
        ])
        #expect(errorMessages(yamlWith(general: "tls_rate_limit_per_second: 150"))
            == ["tls rate limit should be multiple 100"])
        #expect(!yamlWith(general: "tls_rate_limit_per_second: 200").hasErrors)
    }

    @Test func tlsRules() {
        let r = yamlWith(general: """
        tls_certificate: "/nonexistent/cert.pem"
        tls_mode: "verify-full"
        server_tls_mode: "verify-ca"
        server_tls_private_key: "/nonexistent/key.pem"
        """, pool: "server_tls_mode: \"bogus\"")
        let m = errorMessages(r)
        #expect(m.contains("tls_certificate is set but tls_private_key is not"))
        #expect(m.contains("tls_mode is verify-full but tls_certificate or tls_private_key is not"))
        #expect(m.contains("tls_mode is verify-full but tls_ca_cert is not set"))
        #expect(m.contains("tls is incorrectly configured: cannot read tls_certificate file '/nonexistent/cert.pem'"))
        #expect(m.contains("server_tls_mode is 'verify-ca' but server_tls_ca_cert is not set"))
        #expect(m.contains("server_tls_private_key is set but server_tls_certificate is not"))
        #expect(m.contains("pool 'app': invalid server_tls_mode 'bogus'"))
        #expect(errorMessages(yamlWith(general: "tls_mode: \"Require\"")) == ["Invalid tls_mode: Require"])
        #expect(errorMessages(yamlWith(general: "server_tls_mode: \"nope\"")) == ["invalid server_tls_mode: nope"])
    }

    @Test func startupParameters() {
        let r = yamlWith(general: "startup_parameters:\n  role: x\n  search_path: public",
                         pool: "startup_parameters:\n  Search_Path: a\n  search_path: b")
        #expect(errorMessages(r) == [
            "general.startup_parameters: 'role' is reserved and managed by pg_doorman",
            "pool.startup_parameters: 'Search_Path' and 'search_path' both refer to PG GUC 'search_path'; keep one",
        ])
        let big = String(repeating: "x", count: 9500)
        #expect(errorMessages(yamlWith(general: "startup_parameters:\n  search_path: \"\(big)\"")).contains {
            $0.hasPrefix("general.startup_parameters: serialized size 9513 bytes exceeds operator budget 9488")
        })
    }

    @Test func coordinatorPatroniAuthQuery() {
        let r = yamlWith(pool: """
        max_db_connections: 5
        patroni_api_urls: ["ftp://x"]
        fallback_cooldown: 500
        auth_query:
          query: ""
          user: "q"
          workers: 0
          server_password: "p"
          min_pool_size: 50
        """, users: """
              - username: "u1"
                password: ""
                pool_size: 10
                min_pool_size: 6
        """)
        #expect(errorMessages(r) == [
            "sum of min_pool_size (6) exceeds max_db_connections (5); not all minimums can be satisfied simultaneously",
            "patroni_api_urls: invalid URL 'ftp://x'; must start with http:// or https://",
            "auth_query.query cannot be empty",
            "auth_query: server_password requires server_user to be set",
            "auth_query.workers must be > 0",
            "auth_query: min_pool_size must be <= pool_size",
        ])
        #expect(warningMessages(r).contains("pool_size (10) of user 'u1' exceeds max_db_connections (5); it is "
            + "effectively capped"))
        #expect(r.warnings.contains { $0.hint == "did you mean \"500s\"?" })
    }

    @Test func warnings() {
        let r = yamlWith(general: "tcp_socket_buffer_size: 1000\nunix_socket_dir: /tmp\nhba: [\"10.0.0.0/8\"]\n"
                         + "client_anonymous_prepared_cache_size: 0")
        #expect(!r.hasErrors)
        #expect(r.warnings.map(\.keyPath) == ["general.tcp_socket_buffer_size", "general.unix_socket_dir",
                                              "general.client_anonymous_prepared_cache_size"])
    }

    @Test func collectsEveryProblem() {
        let r = yaml("""
        general:
          admin_username: "a"
          admin_password: "b"
          port: 0
          scaling_warm_pool_ratio: 200
          idle_timout: 5
        pools:
          a:
            pool_mode: "weird"
            users:
              - {username: "x", password: "", pool_size: 1, min_pool_size: 2}
              - {username: "x", password: "", pool_size: 1}
        """)
        #expect(r.errors.count == 5)
        #expect(r.warnings.map(\.keyPath) == ["general.idle_timout"])
        #expect(r.warnings.first?.hint == "did you mean `idle_timeout`?")
    }
}
