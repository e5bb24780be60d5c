import Foundation
@testable import ConfigKit

let fixturesDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

let minimalYAML = """
general:
  host: "0.0.0.0"         # Listen on all interfaces
  port: 6432               # Port for client connections
  admin_username: "admin"
  admin_password: "admin"  # Change this in production!

pools:
  exampledb:
    server_host: "127.0.0.1"  # PostgreSQL server address
    server_port: 5432          # PostgreSQL server port
    pool_mode: "transaction"   # Connection pooling mode
    users:
      - pool_size: 40
        username: "doorman"
        password: "SCRAM-SHA-256$4096:6nD+Ppi9rgaNyP7...MBiTld7xJipwG/X4="
"""

let minimalTOML = """
[general]
host = "0.0.0.0"
port = 6432
admin_username = "admin"
admin_password = "admin"

[pools.exampledb]
server_host = "127.0.0.1"
server_port = 5432
pool_mode = "transaction"

[pools.exampledb.users.0]
pool_size = 40
username = "doorman"
password = "SCRAM-SHA-256$4096:6nD+Ppi9rgaNyP7...MBiTld7xJipwG/X4="
"""

func yaml(_ text: String) -> LoadResult { ConfigLoader.load(text: text, format: .yaml, file: "test.yaml") }
func toml(_ text: String) -> LoadResult { ConfigLoader.load(text: text, format: .toml, file: "test.toml") }

/// A minimal valid YAML config with extra lines appended under `general:` and a pool body.
func yamlWith(general: String = "", pool: String = "", users: String = """
      - username: "u1"
        password: "md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        pool_size: 10
""") -> LoadResult {
    yaml("""
    general:
      admin_username: "admin"
      admin_password: "secret"
    \(general.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
    pools:
      app:
    \(pool.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
        users:
    \(users)
    """)
}

func errorMessages(_ r: LoadResult) -> [String] { r.errors.map(\.message) }
func warningMessages(_ r: LoadResult) -> [String] { r.warnings.map(\.message) }

func makeTempDir() -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cfgtest-\(UUID().uuidString)")
    try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir
}
