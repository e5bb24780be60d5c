import Foundation
import Testing
@testable import ConfigKit

struct EmitVariant: CustomStringConvertible, Sendable {
    let format: AnnotatedFormat
    let language: CatalogueLanguage
    var description: String { "\(format.rawValue)/\(language.rawValue)" }

    static let all: [EmitVariant] = AnnotatedFormat.allCases.flatMap { f in
        CatalogueLanguage.allCases.map { EmitVariant(format: f, language: $0) }
    }

    var loaderFormat: ConfigFormat { format == .yaml ? .yaml : .toml }
}

/// Parse and decode without validation (for configs that name files which do not exist here).
func decodeOnly(_ text: String, _ format: ConfigFormat) throws -> (Config, [Diagnostic]) {
    let root = try ConfigParser.parse(text, format: format, file: nil)
    let ctx = DecodeContext()
    let config = ConfigDecoder.decode(root, ctx: ctx, rootFile: nil)
    return (config, ctx.diagnostics.filter { $0.severity == .error })
}

/// Every optional key set, odd strings everywhere.
func fullyPopulatedConfig() -> Config {
    var c = Config()
    var g = General()
    g.host = "127.0.0.1"; g.port = 6543; g.adminUsername = "root \"admin\""; g.adminPassword = "p\\a:ss#word"
    g.backlog = 128; g.connectTimeout = 1500; g.idleTimeout = 0; g.serverLifetime = 3_600_000
    g.tcpSocketBufferSize = 262_144; g.unixSocketBufferSize = 1000; g.unixSocketDir = "/tmp/sock dir"
    g.unixSocketMode = "0660"; g.logClientConnections = false; g.syslogProgName = "doorman"
    g.workerStackSize = 8_388_608; g.maxBlockingThreads = 64; g.tokioGlobalQueueInterval = 31
    g.tokioEventInterval = 61; g.maxMemoryUsage = 1 << 31; g.serverPreparedStatementsCacheSize = 100
    g.clientAnonymousPreparedCacheSize = 50; g.tlsCertificate = "/c.pem"; g.tlsPrivateKey = "/k.pem"
    g.tlsCaCert = "/ca.pem"; g.tlsMode = "require"; g.tlsRateLimitPerSecond = 200; g.serverTlsMode = "verify-ca"
    g.serverTlsCaCert = "/sca.pem"; g.serverTlsCertificate = "/sc.pem"; g.serverTlsPrivateKey = "/sk.pem"
    g.pgHba = PgHba(content: "host all all 10.0.0.0/8 md5\n# comment: with 'quotes' and \"double\"\nlocal all all trust\n")
    g.startupParameters = ["statement_timeout": "30s", "search_path": "a, \"b\""]
    g.patroniApiUrls = ["http://a:8008", "https://b:8008"]; g.fallbackCooldown = 60_000
    g.patroniApiTimeout = 2000; g.fallbackConnectTimeout = 1001; g.fallbackLifetime = 90_000
    c.general = g

    var w = Web()
    w.enabled = true; w.port = 9999; w.ui = true; w.ssoProxyUrl = "https://sso/x"; w.ssoPublicKeyFile = "/sso.pem"
    w.ssoAudience = ["a", "b"]; w.trustedProxies = ["10.0.0.0/8"]; w.ssoAdminGroups = ["admins"]
    c.web = w
    c.talos = Talos(keys: ["/k1.pem"], databases: ["db1", "db2"])

    var p = Pool()
    p.serverHost = "/var/run/postgresql"; p.serverPort = 5433; p.serverDatabase = "real db"; p.poolMode = .session
    p.idleTimeout = 1; p.serverLifetime = 2; p.connectTimeout = 3; p.cleanupServerConnections = false
    p.logClientParameterStatusChanges = true; p.applicationName = "app \u{00e9}"; p.preparedStatementsCacheSize = 7
    p.serverPreparedStatementsCacheSize = 8; p.scalingWarmPoolRatio = 50; p.scalingFastRetries = 3
    p.maxDbConnections = 100; p.minConnectionLifetime = 4; p.reservePoolSize = 5; p.reservePoolTimeout = 6
    p.minGuaranteedPoolSize = 1; p.serverTlsMode = "disable"; p.serverTlsCaCert = "/a"; p.serverTlsCertificate = "/b"
    p.serverTlsPrivateKey = "/c"; p.startupParameters = ["work_mem": "64MB"]; p.patroniApiUrls = ["http://p:1"]
    p.fallbackCooldown = 5000; p.patroniApiTimeout = 6000; p.fallbackConnectTimeout = 7000; p.fallbackLifetime = 8000
    var a = AuthQuery()
    a.query = "SELECT passwd FROM users WHERE name = $1"; a.user = "auth"; a.password = "pw"; a.database = "meta"
    a.workers = 3; a.serverUser = "shared"; a.serverPassword = "spw"; a.poolSize = 9; a.minPoolSize = 1
    a.cacheTtl = 1_800_000; a.cacheFailureTtl = 1234; a.minInterval = 0
    p.authQuery = a
    var u1 = User(username: "alice", password: "md5e674212889c04c6faace937884abb736", poolSize: 10)
    u1.minPoolSize = 2; u1.poolMode = .transaction; u1.serverLifetime = 99; u1.serverUsername = "al"
    u1.serverPassword = "x\ty"; u1.authPamService = "login"
    let u2 = User(username: "bob's", password: "SCRAM-SHA-256$4096:c2FsdA==$a2V5:c2s=", poolSize: 1)
    let u3 = User(username: "", password: "", poolSize: 40)
    p.users = [u1, u2, u3]
    c.pools = ["full pool": p, "empty": Pool(), "db-2": { var q = Pool(); q.users = [u2]; return q }()]
    c.include = Include()
    return c
}

@Suite struct AnnotatedEmitterTests {
    @Test(arguments: EmitVariant.all)
    func referenceLoadsBackThroughTheLoader(_ v: EmitVariant) {
        let ref = AnnotatedReference.config()
        let text = AnnotatedEmitter.render(ref, format: v.format, language: v.language, notes: AnnotatedReference.notes)
        let result = ConfigLoader.load(text: text, format: v.loaderFormat)
        #expect(result.errors.isEmpty, "\(result.errors)")
        #expect(result.config == ref)
    }

    @Test(arguments: EmitVariant.all)
    func fullyPopulatedConfigRoundTrips(_ v: EmitVariant) throws {
        let full = fullyPopulatedConfig()
        let text = AnnotatedEmitter.render(full, format: v.format, language: v.language)
        let (back, errors) = try decodeOnly(text, v.loaderFormat)
        #expect(errors.isEmpty, "\(errors)")
        #expect(back.general == full.general)
        #expect(back.web == full.web)
        #expect(back.talos == full.talos)
        #expect(back.pools == full.pools)
        #expect(back == full)
    }

    @Test(arguments: EmitVariant.all)
    func validGeneratedStyleConfigRoundTrips(_ v: EmitVariant) {
        var c = AnnotatedReference.config()
        c.general.pgHba = PgHba(content: "local all all md5\nhost all all 127.0.0.1/32 md5\nhost all all ::1/128 md5\n")
        var p = Pool()
        p.users = [User(username: "weird \"name\"", password: "SCRAM-SHA-256$4096:c2FsdA==$a2V5:c2s=", poolSize: 5),
                   User(username: "postgres", password: "", poolSize: 5)]
        c.pools["needs quoting: yes"] = p
        c.pools["123"] = p
        let text = AnnotatedEmitter.render(c, format: v.format, language: v.language, notes: [.generatedHba, .placeholderAdmin])
        let result = ConfigLoader.load(text: text, format: v.loaderFormat)
        #expect(result.errors.isEmpty, "\(result.errors)")
        #expect(result.config == c)
    }

    @Test(arguments: AnnotatedFormat.allCases)
    func plainEncoderRoundTrips(_ f: AnnotatedFormat) throws {
        let full = fullyPopulatedConfig()
        let (back, errors) = try decodeOnly(AnnotatedEmitter.plain(full, format: f), f == .yaml ? .yaml : .toml)
        #expect(errors.isEmpty)
        #expect(back == full)
    }

    /// Every key of the catalogue shows up in the reference output, set or as a commented example.
    @Test(arguments: EmitVariant.all)
    func referenceMentionsEveryKey(_ v: EmitVariant) {
        let text = AnnotatedEmitter.render(AnnotatedReference.config(), format: v.format, language: v.language)
        let sep = v.format == .yaml ? ":" : " ="
        for f in Catalogue.fields {
            let present = text.contains("\(f.key)\(sep)") || text.contains("[[pools.exampledb.\(f.key)]]")
                || text.contains("[pools.exampledb.\(f.key)]")
            #expect(present, "\(f.section.rawValue).\(f.key) missing from \(v)")
        }
    }

    @Test(arguments: EmitVariant.all)
    func layout(_ v: EmitVariant) {
        let text = AnnotatedEmitter.render(AnnotatedReference.config(), format: v.format, language: v.language)
        let label = v.language == .english ? "# Default:" : "# По умолчанию:"
        #expect(text.contains(label))
        #expect(text.contains(v.format == .yaml ? "connect_timeout: \"3s\"" : "connect_timeout = 3000"))
        #expect(text.contains(v.format == .yaml ? "max_memory_usage: \"256MB\"" : "max_memory_usage = 268435456"))
        // Commented example pools: several users, a Unix socket, an alias, explicit server credentials.
        for needle in ["/var/run/postgresql", "server_database", "production", "server_username", "server_password",
                       "reader", "writer"] {
            #expect(text.contains(needle), "\(needle) missing")
        }
        // Human-readable values are explained in the YAML header only.
        #expect(text.contains("\"250ms\"") == (v.format == .yaml))
        #expect(!text.contains("\n\n\n"))
    }

    @Test func formatResolution() {
        #expect(AnnotatedFormat.resolve(explicit: nil, outputPath: nil) == .yaml)
        #expect(AnnotatedFormat.resolve(explicit: nil, outputPath: "a/b.TOML") == .toml)
        #expect(AnnotatedFormat.resolve(explicit: nil, outputPath: "a/b.yml") == .yaml)
        #expect(AnnotatedFormat.resolve(explicit: nil, outputPath: "a/b.conf") == .yaml)
        #expect(AnnotatedFormat.resolve(explicit: "toml", outputPath: "x.yaml") == .toml)
        #expect(AnnotatedFormat.resolve(explicit: "xml", outputPath: nil) == nil)
    }
}
