import Foundation
import Testing
import ConfigKit
@testable import Generate

@Suite struct GenerateTests {
    static let inventory = ServerInventory(
        roles: [ShadowRole(name: "postgres", passwordHash: nil),
                ShadowRole(name: "md5user", passwordHash: "md5e674212889c04c6faace937884abb736"),
                ShadowRole(name: "scram", passwordHash: "SCRAM-SHA-256$4096:c2FsdA==$a2V5:c2s=")],
        databases: ["app", "postgres"])

    @Test func onePoolPerDatabaseWithEveryUser() {
        let c = ConfigGenerator.build(Self.inventory, options: GenerateOptions(poolSize: 7, sessionMode: true,
                                                                               serverHost: "/run/pg", serverPort: 5499))
        #expect(c.sortedPoolNames == ["app", "postgres"])
        for (_, p) in c.pools {
            #expect(p.users.map(\.username) == ["postgres", "md5user", "scram"])
            #expect(p.users.map(\.password) == ["", "md5e674212889c04c6faace937884abb736", "SCRAM-SHA-256$4096:c2FsdA==$a2V5:c2s="])
            #expect(p.users.allSatisfy { $0.poolSize == 7 })
            #expect(p.poolMode == .session && p.serverHost == "/run/pg" && p.serverPort == 5499)
        }
        #expect(c.general.host == "0.0.0.0" && c.general.port == 6432)
        #expect(c.general.adminUsername == "admin" && c.general.adminPassword == "admin")
        #expect(c.general.pgHba?.rules.count == 3)
        #expect(c.general.serverTlsMode == "allow")
        #expect(ConfigGenerator.build(Self.inventory, options: GenerateOptions(ssl: true)).general.serverTlsMode == "require")
    }

    @Test(arguments: [AnnotatedFormat.yaml, .toml])
    func authQueryUserGivesEachPoolAnAuthQueryBlockInsteadOfUsers(_ f: AnnotatedFormat) {
        let c = ConfigGenerator.build(Self.inventory, options: GenerateOptions(poolSize: 9, authQueryUser: "doorman_auth"))
        #expect(c.sortedPoolNames == ["app", "postgres"])
        for (_, p) in c.pools {
            #expect(p.users.isEmpty)
            #expect(p.authQuery?.user == "doorman_auth")
            #expect(p.authQuery?.query == ConfigGenerator.authQuerySQL)
            #expect(p.authQuery?.poolSize == 9)
        }
        let text = AnnotatedEmitter.render(c, format: f, language: .english, notes: [.placeholderAdmin, .generatedHba])
        let r = ConfigLoader.load(text: text, format: f == .yaml ? .yaml : .toml)
        #expect(r.errors.isEmpty, "\(r.errors)")
        #expect(r.config == c)
    }

    @Test(arguments: [AnnotatedFormat.yaml, .toml])
    func generatedConfigValidates(_ f: AnnotatedFormat) {
        let c = ConfigGenerator.build(Self.inventory, options: GenerateOptions())
        for language in CatalogueLanguage.allCases {
            let text = AnnotatedEmitter.render(c, format: f, language: language, notes: [.placeholderAdmin, .generatedHba])
            let r = ConfigLoader.load(text: text, format: f == .yaml ? .yaml : .toml)
            #expect(r.errors.isEmpty, "\(r.errors)")
            #expect(r.config == c)
        }
        let plain = ConfigLoader.load(text: AnnotatedEmitter.plain(c, format: f), format: f == .yaml ? .yaml : .toml)
        #expect(plain.errors.isEmpty)
        #expect(plain.config == c)
    }

    @Test func onlyExplicitKeywordsArePassed() {
        let none = ConnectionOptions().keywords.map(\.0)
        #expect(!none.contains("host") && !none.contains("port") && !none.contains("user") && !none.contains("dbname")
            && !none.contains("password") && !none.contains("sslmode"))
        let all = ConnectionOptions(host: "h", port: 1, user: "u", password: "p", database: "d", ssl: true).keywords
        let dict = Dictionary(all, uniquingKeysWith: { a, _ in a })
        #expect(dict["host"] == "h" && dict["port"] == "1" && dict["user"] == "u" && dict["password"] == "p"
            && dict["dbname"] == "d" && dict["sslmode"] == "require")
    }

    @Test func errorClassification() {
        #expect(PQClient.classify("connection to server at \"127.0.0.1\", port 1 failed: Connection refused")
            == .unreachable("connection to server at \"127.0.0.1\", port 1 failed: Connection refused"))
        if case .authenticationFailed = PQClient.classify("FATAL:  password authentication failed for user \"x\"") {} else {
            Issue.record("not classified as authentication failure")
        }
        #expect(GenerateError.notSuperuser("bob").description.contains("superuser"))
    }

    @Test func atomicWriteLeavesNoPartialFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pgdm-gen-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("out.yaml").path
        try AtomicFileWriter.write("a: 1\n", to: path)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "a: 1\n")
        #expect(throws: GenerateError.self) { try AtomicFileWriter.write("x", to: dir.path + "/missing/out.yaml") }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["out.yaml"])
    }
}
