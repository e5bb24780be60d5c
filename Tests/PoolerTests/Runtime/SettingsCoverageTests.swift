import ConfigKit
import Foundation
import Testing

/// No silent settings: every key of the field catalogue is either read by the program outside
/// ConfigKit (the pooler, the CLI, `generate`) or warned about as inert (`InertSettings`), so an
/// operator who sets a key either gets its effect or a warning at start, RELOAD and `-t`.
///
/// "Read" is checked in the source: the key's model property (`server_lifetime` → `.serverLifetime`,
/// or ConfigKit's `effectiveServerLifetime`) must appear in a consuming module. A key consumed under
/// another name is listed in `consumedElsewhere` with where.
@Suite struct SettingsCoverageTests {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Keys whose consumer cannot be found by their property name, with where they are used.
    static let consumedElsewhere: [String: String] = [
        "general.prepared_statements": "Pool.effectivePreparedStatementsCacheSize (0 when off)",
        "include.files": "ConfigLoader merges the included files before anything else reads the config",
        "general.hba": "PoolerRuntime.hbaDecision reads it as `legacy` (General.hba)",
        "general.pg_hba": "PoolerRuntime.hbaDecision reads it (General.pgHba)",
        "general.unix_socket_mode": "PoolerRuntime chmods the socket with General.unixSocketModeBits",
        "general.admin_username": "PoolerRuntime.adminUsername",
        "general.admin_password": "PoolerRuntime.adminPassword",
        "general.syslog_prog_name": "Logging: the syslog identity",
        "pool.users": "PoolerRuntime.buildPools: one pool per user",
        "pool.auth_query": "warned by InertSettings as `\\(path).auth_query` (or read by the auth_query runtime)",
        "talos.keys": "warned by InertSettings as `talos`",
        "user.username": "PoolSettings.user",
        "user.password": "PoolSettings.clientPassword / backend credential",
        "pool.server_database": "PoolSettings.serverDatabase (Pool.serverDatabaseName)",
        "pool.startup_parameters": "Pool.effectiveStartupParameters",
        "general.startup_parameters": "Pool.effectiveStartupParameters",
        "pool.application_name": "Pool.effectiveApplicationName",
        "pool.pool_mode": "Pool.effectivePoolMode",
        "user.pool_mode": "Pool.effectivePoolMode(for:)",
        // web.sso_* and the UI's keys only matter with web.ui / web.sso_enabled, which are warned.
        "web.ui_anonymous": "only with web.ui (warned)",
        "web.log_tap_max_entries": "only with web.ui (warned)",
        "web.sso_proxy_url": "only with web.sso_enabled (warned)",
        "web.sso_public_key_file": "only with web.sso_enabled (warned)",
        "web.sso_audience": "only with web.sso_enabled (warned)",
        "web.sso_allowed_users": "only with web.sso_enabled (warned)",
        "web.trusted_proxies": "only with web.sso_enabled (warned)",
        "web.sso_groups_claim": "only with web.sso_enabled (warned)",
        "web.sso_admin_groups": "only with web.sso_enabled (warned)",
        "web.sso_require_https": "only with web.sso_enabled (warned)",
        // Patroni fallback: patroni_api_urls is warned; the others only matter with it.
        "general.fallback_cooldown": "only with patroni_api_urls (warned)",
        "general.patroni_api_timeout": "only with patroni_api_urls (warned)",
        "general.fallback_connect_timeout": "only with patroni_api_urls (warned)",
        "general.fallback_lifetime": "only with patroni_api_urls (warned)",
        "pool.fallback_cooldown": "only with patroni_api_urls (warned)",
        "pool.patroni_api_timeout": "only with patroni_api_urls (warned)",
        "pool.fallback_connect_timeout": "only with patroni_api_urls (warned)",
        "pool.fallback_lifetime": "only with patroni_api_urls (warned)",
    ]

    static func sources(_ dirs: [String]) -> String {
        var text = ""
        for dir in dirs {
            let base = root.appendingPathComponent(dir)
            guard let files = FileManager.default.enumerator(at: base, includingPropertiesForKeys: nil) else { continue }
            for case let url as URL in files where url.pathExtension == "swift" {
                text += (try? String(contentsOf: url, encoding: .utf8)) ?? ""
            }
        }
        return text
    }

    static func camel(_ key: String) -> String {
        let parts = key.split(separator: "_").map(String.init)
        guard let first = parts.first else { return key }
        return first + parts.dropFirst().map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
    }

    static func sectionName(_ s: CatalogueSection) -> String {
        switch s {
        case .general: return "general"
        case .include: return "include"
        case .web: return "web"
        case .talos: return "talos"
        case .pool: return "pool"
        case .user: return "user"
        case .authQuery: return "auth_query"
        }
    }

    @Test func everyCatalogueKeyIsReadOrWarnedAbout() throws {
        let consumers = Self.sources(["Sources/Pooler", "Sources/PgDoorman", "Sources/Generate", "Sources/Validate"])
        let inert = try String(contentsOf: Self.root.appendingPathComponent("Sources/ConfigKit/InertSettings.swift"),
                               encoding: .utf8)
        var silent: [String] = []
        for field in Catalogue.fields {
            let name = "\(Self.sectionName(field.section)).\(field.key)"
            if Self.consumedElsewhere[name] != nil { continue }
            let property = Self.camel(field.key)
            let capitalised = property.prefix(1).uppercased() + property.dropFirst()
            let read = consumers.range(of: "\\.\(property)\\b", options: .regularExpression) != nil
                || consumers.range(of: "effective\(capitalised)\\b", options: .regularExpression) != nil
            let warned = inert.contains(".\(field.key)\"") || inert.contains("\"\(field.key)\"")
                || inert.contains(".\(field.key)\\") || inert.contains("(\"\(field.key)\"")
            // The keys inside a block that is warned about as a whole (auth_query) are covered by it.
            let blockWarned = field.section == .authQuery && inert.contains(".auth_query\"")
            if !read && !warned && !blockWarned { silent.append(name) }
        }
        #expect(silent.isEmpty, "settings that load and do nothing, without a warning: \(silent)")
    }

    /// The exemptions name real catalogue keys (a renamed key must not leave a stale exemption).
    @Test func exemptionsNameCatalogueKeys() {
        let names = Set(Catalogue.fields.map { "\(Self.sectionName($0.section)).\($0.key)" })
        for key in Self.consumedElsewhere.keys { #expect(names.contains(key), "\(key) is not in the catalogue") }
    }
}
