import Foundation
import Testing
import ConfigKit
@testable import Validate

@Suite struct ConfigCheckTests {
    func write(_ text: String, name: String) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("check-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let url = dir.appendingPathComponent(name)
        try! text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    @Test func successPrintsNginxStyleLines() {
        let path = write("""
        general:
          admin_username: "admin"
          admin_password: "admin"
        pools:
          db:
            users:
              - {username: "u", password: "", pool_size: 1}
        """, name: "ok.yaml")
        let out = ConfigCheck.render(path: path, result: ConfigCheck.run(path: path))
        #expect(out.exitCode == 0)
        #expect(out.stdout == ["pg_doorman: the configuration file \(path) syntax is ok",
                               "pg_doorman: configuration file \(path) test is successful"])
        #expect(out.stderr.count == 1)  // warning about the default admin password
        #expect(out.stderr.first?.hasPrefix("warning: general.admin_password") == true)
    }

    @Test func settingsThisBuildIgnoresAreWarnedAboutButPass() {
        let path = write("""
        general:
          admin_username: "admin"
          admin_password: "s3cret"
        pools:
          db:
            max_db_connections: 10
            reserve_pool_size: 2
            log_client_parameter_status_changes: true
            auth_query:
              query: "SELECT passwd FROM pg_shadow WHERE usename = $1"
              user: "doorman"
            users:
              - {username: "u", password: "", pool_size: 1}
        """, name: "inert.yaml")
        let out = ConfigCheck.render(path: path, result: ConfigCheck.run(path: path))
        #expect(out.exitCode == 0)
        #expect(out.stdout.count == 2)
        #expect(out.stderr.count == 1)
        #expect(out.stderr.first?.hasPrefix("warning: pools.db.log_client_parameter_status_changes") == true)
        #expect(!out.stderr.contains { $0.contains("auth_query") })  // implemented: no warning
        #expect(!out.stderr.contains { $0.contains("reserve_pool_size") })  // implemented
    }

    @Test func brokenFileListsAllProblems() {
        let path = write("""
        [general]
        admin_username = "admin"
        admin_password = "s3cret"
        connect_timeout = "5 sec"
        tls_rate_limit_per_second = 150
        max_conections = 1

        [pools.app]
        pool_mode = "statement"

        [[pools.app.users]]
        username = "a"
        password = ""
        pool_size = 10
        min_pool_size = 20

        [[pools.app.users]]
        username = "a"
        password = ""
        pool_size = 5
        server_password = "x"
        """, name: "bad.toml")
        let out = ConfigCheck.render(path: path, result: ConfigCheck.run(path: path))
        #expect(out.exitCode == 78)
        #expect(out.stdout.isEmpty)
        let text = out.stderr.joined(separator: "\n")
        #expect(text.contains("error: general.connect_timeout"))
        #expect(text.contains("tls rate limit should be multiple 100"))
        #expect(text.contains("unknown pool_mode 'statement'"))
        #expect(text.contains("min_pool_size of 20 cannot be larger than pool_size of 10"))
        #expect(text.contains("duplicate username 'a' in pool users"))
        #expect(text.contains("server_password requires server_username to be set"))
        #expect(text.contains("warning: general.max_conections"))
        #expect(out.stderr.last == "pg_doorman: configuration file \(path) test failed (6 errors)")
    }

    @Test func missingFile() {
        let out = ConfigCheck.render(path: "/nonexistent.toml", result: ConfigCheck.run(path: "/nonexistent.toml"))
        #expect(out.exitCode == 78)
        #expect(out.stderr.first == "error: /nonexistent.toml: Could not open '/nonexistent.toml': no such file or not readable")
    }
}
