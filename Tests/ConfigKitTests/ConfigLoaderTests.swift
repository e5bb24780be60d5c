import Foundation
import Testing
@testable import ConfigKit

@Suite struct ConfigLoaderTests {
    @Test func seedMinimalYAML() throws {
        let r = yaml(minimalYAML)
        #expect(!r.hasErrors, "\(r.diagnostics)")
        let c = try #require(r.config)
        #expect(c.general.port == 6432)
        #expect(c.pools["exampledb"]?.users.first?.username == "doorman")
        #expect(c.pools["exampledb"]?.users.first?.poolSize == 40)
        #expect(c.general.logClientConnections == false)  // reference quirk: omitted ⇒ false
    }

    @Test func seedMinimalTOMLWithIndexedUsers() throws {
        let r = toml(minimalTOML)
        #expect(!r.hasErrors, "\(r.diagnostics)")
        let c = try #require(r.config)
        #expect(c.pools["exampledb"]?.poolMode == .transaction)
        #expect(c.pools["exampledb"]?.users.map(\.username) == ["doorman"])
        #expect(c == yaml(minimalYAML).config)
    }

    @Test func referenceSampleFiles() throws {
        for name in ["pg_doorman.yaml", "pg_doorman.toml"] {
            let r = ConfigLoader.load(path: fixturesDir.appendingPathComponent(name).path)
            #expect(!r.hasErrors, "\(name): \(r.diagnostics)")
            #expect(!r.warnings.contains { $0.message.hasPrefix("unknown key") }, "\(name): \(r.warnings)")
            let c = try #require(r.config)
            #expect(c.general.port == 6432)
            #expect(c.general.logClientConnections)
            #expect(c.general.maxMemoryUsage == 268_435_456)
            #expect(c.general.tlsMode == "allow")
            #expect(c.pools["exampledb"]?.users.first?.password == "md5dd9a0f26a4302744db881776a09bbfad")
        }
        let y = ConfigLoader.load(path: fixturesDir.appendingPathComponent("pg_doorman.yaml").path).config
        let t = ConfigLoader.load(path: fixturesDir.appendingPathComponent("pg_doorman.toml").path).config
        #expect(y == t)
    }

    @Test func indexedUsersSortNumerically() throws {
        let r = toml("""
        [general]
        admin_username = "a"
        admin_password = "b"
        [pools.p.users.10]
        username = "ten"
        password = ""
        pool_size = 1
        [pools.p.users.2]
        username = "two"
        password = ""
        pool_size = 1
        """)
        #expect(r.config?.pools["p"]?.users.map(\.username) == ["two", "ten"])
    }

    @Test func arrayOfTablesUsers() {
        let r = toml("""
        [general]
        admin_username = "a"
        admin_password = "b"
        [[pools.p.users]]
        username = "x"
        password = ""
        pool_size = 1
        [[pools.p.users]]
        username = "y"
        password = ""
        pool_size = 2
        """)
        #expect(r.config?.pools["p"]?.users.map(\.username) == ["x", "y"])
    }

    @Test func nonNumericUserKey() {
        let r = toml("""
        [general]
        admin_username = "a"
        admin_password = "b"
        [pools.p.users.first]
        username = "x"
        password = ""
        pool_size = 1
        """)
        #expect(errorMessages(r) == ["invalid user key 'first': expected numeric index or use array format"])
        #expect(r.errors.first?.keyPath == "pools.p.users.first")
    }

    @Test func includesMergeMixedFormats() throws {
        let dir = makeTempDir()
        let main = dir.appendingPathComponent("main.yaml")
        let inc1 = dir.appendingPathComponent("pools.toml")
        let inc2 = dir.appendingPathComponent("more.yml")
        try """
        include:
          files: ["\(inc1.path)", "more.yml"]
        general:
          admin_username: "admin"
          admin_password: "secret"
          hba: ["10.0.0.0/8"]
          connect_timeout: 3000
        pools:
          a:
            users:
              - {username: "u1", password: "", pool_size: 5}
        """.write(to: main, atomically: true, encoding: .utf8)
        try """
        [general]
        connect_timeout = "5s"
        hba = ["192.168.0.0/16"]
        [pools.b]
        server_port = 5433
        [[pools.a.users]]
        username = "u2"
        password = ""
        pool_size = 6
        """.write(to: inc1, atomically: true, encoding: .utf8)
        try """
        general:
          port: 7432
        """.write(to: inc2, atomically: true, encoding: .utf8)
        let r = ConfigLoader.load(path: main.path)
        #expect(!r.hasErrors, "\(r.diagnostics)")
        let c = try #require(r.config)
        #expect(c.general.connectTimeout == 5000)
        #expect(c.general.port == 7432)  // relative include resolved next to the main file
        #expect(c.general.hba == ["10.0.0.0/8", "192.168.0.0/16"])  // arrays concatenated
        #expect(c.pools["a"]?.users.map(\.username) == ["u1", "u2"])
        #expect(c.pools["b"]?.serverPort == 5433)
    }

    @Test func includeTypeMismatch() throws {
        let dir = makeTempDir()
        let main = dir.appendingPathComponent("main.toml")
        let inc = dir.appendingPathComponent("inc.yaml")
        try """
        [include]
        files = ["\(inc.path)"]
        [general]
        admin_username = "a"
        admin_password = "b"
        hba = []
        [pools]
        """.write(to: main, atomically: true, encoding: .utf8)
        try "general:\n  hba: \"10.0.0.0/8\"\n".write(to: inc, atomically: true, encoding: .utf8)
        let r = ConfigLoader.load(path: main.path)
        #expect(r.errors.first?.message == "Incompatible types at path \"$.general.hba\", expected \"array\" received "
            + "\"string\"")
        #expect(r.errors.first?.file == inc.path)
        #expect(r.errors.first?.line == 2)
    }

    @Test func missingFileAndSyntaxError() {
        #expect(ConfigLoader.load(path: "/nonexistent/x.yaml").errors.first?.message
            == "Could not open '/nonexistent/x.yaml': no such file or not readable")
        let r = yaml("general:\n  a: [1, 2\n")
        #expect(r.hasErrors)
        #expect(r.errors.first?.message.hasPrefix("YAML parse error") == true)
        #expect(toml("[general\n").errors.first?.message.hasPrefix("TOML parse error") == true)
    }

    @Test func pgHbaFromPathReportsFileAndLine() throws {
        let dir = makeTempDir()
        try "host all all 10.0.0.0/8 md5\nhost all all bogus md5\n"
            .write(to: dir.appendingPathComponent("hba.conf"), atomically: true, encoding: .utf8)
        let main = dir.appendingPathComponent("c.yaml")
        try """
        general:
          admin_username: "a"
          admin_password: "b"
          pg_hba:
            path: "hba.conf"
        pools: {}
        """.write(to: main, atomically: true, encoding: .utf8)
        let r = ConfigLoader.load(path: main.path)
        let e = try #require(r.errors.first)
        #expect(e.keyPath == "general.pg_hba")
        #expect(e.line == 2)
        #expect(e.file?.hasSuffix("hba.conf") == true)
        #expect(e.message.hasPrefix("pg_hba line 2: invalid address 'bogus'"))
    }
}
