import NIOCore

/// The admin console's command table: parses one simple query and returns a typed reply.
struct AdminCommands {
    let runtime: PoolerRuntime
    let snapshots: [SessionSnapshot]

    func execute(_ sql: String) -> AdminReply {
        var text = sql.trimmingCharacters(in: .whitespacesAndNewlines)
        while text.hasSuffix(";") { text.removeLast() }
        let tokens = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).map(String.init)
        guard let first = tokens.first?.uppercased() else { return .command("") }
        if text.contains("pg_catalog.pg_settings") { return tabCompletion() }
        switch first {
        case "SHOW":
            guard tokens.count >= 2 else {
                return .error(code: .systemError, message: "Unsupported query against the admin database, please use SHOW HELP for a list of supported subcommands")
            }
            return show(tokens[1].uppercased())
        case "PAUSE", "RESUME", "RECONNECT":
            return poolOperation(first, database: tokens.count > 1 ? tokens[1] : nil)
        case "RELOAD":
            let (_, diagnostics) = runtime.reload()
            let errors = diagnostics.filter { $0.severity == .error }
            if !errors.isEmpty {
                return .error(code: .configFileError, message: "RELOAD failed, the old configuration stays: "
                    + errors.map { $0.description }.joined(separator: "; "))
            }
            return .command("RELOAD")
        case "SET":
            return setCommand(tokens: Array(tokens.dropFirst()), raw: text)
        case "SHUTDOWN":
            runtime.requestShutdown()
            return .result(ResultSet(columns: [("success", .text)], rows: [["t"]], tag: "SHUTDOWN"))
        case "UPGRADE":
            runtime.requestUpgrade()
            return .result(ResultSet(columns: [("success", .text)], rows: [["t"]], tag: "UPGRADE"))
        default:
            return .error(code: .systemError, message: "Unsupported query against the admin database")
        }
    }

    private func tabCompletion() -> AdminReply {
        let rows = Self.showSubcommands.map { [$0.lowercased(), "", ""] as [String?] }
        return .result(ResultSet(columns: [("name", .text), ("val", .text), ("vartype", .text)], rows: rows, tag: "SELECT"))
    }

    static let showSubcommands = [
        "HELP", "CONFIG", "DATABASES", "POOLS", "POOLS_EXTENDED", "POOLS_MEMORY", "POOL_COORDINATOR", "POOL_SCALING",
        "CLIENTS", "SERVERS", "USERS", "CONNECTIONS", "STATS", "PREPARED_STATEMENTS", "AUTH_QUERY",
        "STARTUP_PARAMETERS", "LISTS",
        "SOCKETS", "LOG_LEVEL", "VERSION",
    ]

    private func poolOperation(_ op: String, database: String?) -> AdminReply {
        let targets = runtime.pools.filter { database == nil || $0.settings.database == database }
        if let database, targets.isEmpty {
            return .error(code: .invalidCatalogName, message: "No pool for database \"\(database)\"")
        }
        for p in targets {
            switch op {
            case "PAUSE": p.pause()
            case "RESUME": p.resume()
            default: p.reconnect()
            }
        }
        return .command(op)
    }

    private func setCommand(tokens: [String], raw: String) -> AdminReply {
        guard tokens.count >= 2 else {
            return .error(code: .syntaxError, message: "SET requires: SET <parameter> = '<value>'")
        }
        guard tokens[0].lowercased() == "log_level" else {
            return .error(code: .syntaxError, message: "Unknown SET parameter: \(tokens[0]). Supported: log_level")
        }
        var value = tokens.dropFirst().joined(separator: " ").trimmingCharacters(in: .whitespaces)
        if value.hasPrefix("=") { value.removeFirst() }
        if value.lowercased().hasPrefix("to ") { value.removeFirst(3) }
        value = value.trimmingCharacters(in: CharacterSet(charactersIn: " '\""))
        switch runtime.logLevels.set(value) {
        case .success: return .command("SET")
        case .failure(let e): return .error(code: .syntaxError, message: "\(e)")
        }
    }

    private func show(_ what: String) -> AdminReply {
        switch what {
        case "HELP":
            let rows: [[String?]] = [
                ["SHOW HELP|CONFIG|DATABASES|POOLS|POOLS_EXTENDED|POOLS_MEMORY|POOL_COORDINATOR|POOL_SCALING"],
                ["SHOW CLIENTS|SERVERS|USERS|CONNECTIONS|STATS|PREPARED_STATEMENTS|AUTH_QUERY|STARTUP_PARAMETERS"],
                ["SHOW LISTS|SOCKETS|LOG_LEVEL|VERSION"],
                ["SET log_level = '<filter>'"], ["RELOAD"], ["SHUTDOWN"], ["UPGRADE"],
                ["PAUSE [db]"], ["RESUME [db]"], ["RECONNECT [db]"],
            ]
            return .result(ResultSet(columns: [("item", .text)], rows: rows))
        case "VERSION":
            return .result(ResultSet(columns: [("version", .text)], rows: [[PoolerVersion.string]]))
        case "LOG_LEVEL":
            return .result(ResultSet(columns: [("log_level", .text)], rows: [[runtime.logLevels.current]]))
        default:
            if let rs = AdminViews(runtime: runtime, snapshots: snapshots).view(what) { return .result(rs) }
            return .error(code: .systemError, message: "Unsupported SHOW query against the admin database")
        }
    }
}

import Foundation
