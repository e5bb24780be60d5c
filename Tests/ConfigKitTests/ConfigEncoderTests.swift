import Testing
@testable import ConfigKit

@Suite struct ConfigEncoderTests {
    func richConfig() -> Config {
        var c = Config()
        c.general.adminUsername = "admin"
        c.general.adminPassword = "p\"a\\ss\nword\u{1}"
        c.general.port = 6432
        c.general.connectTimeout = 1234
        c.general.workerStackSize = 8 << 20
        c.general.startupParameters = ["search_path": "public, \"x\"", "TimeZone": "UTC"]
        c.general.pgHba = PgHba(content: "local all all trust\nhost all all 10.0.0.0/8 md5\n")
        c.general.patroniApiUrls = ["http://a:8008"]
        c.general.unixSocketDir = "/tmp"
        c.web.ssoAudience = ["pg"]
        c.web.trustedProxies = ["10.0.0.0/8"]
        c.talos = Talos(keys: [], databases: ["db"])
        var p = Pool()
        p.serverDatabase = "real"
        p.poolMode = .session
        p.idleTimeout = 1000
        p.startupParameters = ["application_name": "x"]
        var aq = AuthQuery()
        aq.query = "SELECT passwd FROM pg_shadow WHERE usename = $1"
        aq.user = "q"
        p.authQuery = aq
        var u1 = User(username: "a", password: "md5x", poolSize: 3)
        u1.minPoolSize = 1
        u1.poolMode = .transaction
        u1.serverUsername = "b"
        u1.serverPassword = "c"
        p.users = [u1, User(username: "true", password: "", poolSize: 1)]
        c.pools["my db"] = p
        c.pools["123"] = Pool()
        return c
    }

    @Test func yamlRoundTrip() throws {
        let c = richConfig()
        let text = ConfigEncoder.yaml(c)
        let r = yaml(text)
        let back = try #require(r.config, "\(r.diagnostics)\n\(text)")
        #expect(back == c)
        #expect(ConfigEncoder.yaml(back) == text)
    }

    @Test func tomlRoundTrip() throws {
        let c = richConfig()
        let text = ConfigEncoder.toml(c)
        let r = toml(text)
        let back = try #require(r.config, "\(r.diagnostics)\n\(text)")
        #expect(back == c)
        #expect(text.contains("[[pools.\"my db\".users]]"))
    }

    @Test func samplesRoundTripBothWays() throws {
        for name in ["pg_doorman.yaml", "pg_doorman.toml"] {
            let c = try #require(ConfigLoader.load(path: fixturesDir.appendingPathComponent(name).path).config)
            #expect(yaml(ConfigEncoder.yaml(c)).config == c)
            #expect(toml(ConfigEncoder.toml(c)).config == c)
        }
    }

    @Test func quoting() {
        #expect(ConfigFormatting.yamlString("a\"b\\c\n") == "\"a\\\"b\\\\c\\n\"")
        #expect(ConfigFormatting.tomlString("a\"b\u{1}") == "\"a\\\"b\\u0001\"")
        #expect(ConfigFormatting.yamlKey("true") == "\"true\"")
        #expect(ConfigFormatting.yamlKey("app_db") == "app_db")
        #expect(ConfigFormatting.tomlKey("my db") == "\"my db\"")
        #expect(ConfigFormatting.humanDuration(3000) == "3s")
        #expect(ConfigFormatting.humanByteSize(1 << 20) == "1MB")
    }
}
