import ConfigKit
import Testing
@testable import Pooler

// MARK: - ConfigDiff

private func config(poolSize: Int = 3, adminPassword: String = "admin", shutdownTimeout: UInt64 = 10_000) -> Config {
    var c = Config()
    c.general.adminUsername = "admin"
    c.general.adminPassword = adminPassword
    c.general.shutdownTimeout = shutdownTimeout
    var pool = Pool()
    pool.serverHost = "127.0.0.1"
    pool.users = [User(username: "u", password: "secret-hash", poolSize: poolSize)]
    c.pools["db"] = pool
    return c
}

@Test func configDiffUnchangedIsEmpty() {
    #expect(ConfigDiff.lines(old: config(), new: config()).isEmpty)
}

@Test func configDiffNamesTheChangedSetting() {
    let lines = ConfigDiff.lines(old: config(poolSize: 3), new: config(poolSize: 9))
    #expect(lines == ["pools.db.users[u].pool_size: 3 -> 9"])
    let g = ConfigDiff.lines(old: config(), new: config(shutdownTimeout: 5000))
    #expect(g == ["general.shutdown_timeout: 10000 -> 5000"])
}

@Test func configDiffNeverPrintsSecrets() {
    let lines = ConfigDiff.lines(old: config(adminPassword: "old-pw"), new: config(adminPassword: "new-pw"))
    #expect(lines == ["general.admin_password changed"])
    var added = config()
    added.pools["db"]!.users.append(User(username: "v", password: "pw-v", poolSize: 2))
    let l2 = ConfigDiff.lines(old: config(), new: added)
    #expect(l2.contains("pools.db.users[v].password added"))
    #expect(l2.contains("pools.db.users[v].pool_size added: 2"))
    #expect(!l2.joined().contains("pw-v"))
}

@Test func configDiffPoolRemoved() {
    var none = config()
    none.pools = [:]
    let lines = ConfigDiff.lines(old: config(), new: none)
    #expect(lines.contains("pools.db.server_host removed (was 127.0.0.1)"))
}

// MARK: - Settings RELOAD cannot apply (the catalogue's `reloadable` flag)

@Test func restartOnlyNamesTheNonReloadableChanges() {
    var a = config(), b = config()
    #expect(ConfigDiff.restartOnly(old: a, new: b).isEmpty)
    b.general.port = a.general.port + 1
    b.general.tlsRateLimitPerSecond = 200
    b.web.port = a.web.port + 1
    b.general.shutdownTimeout = 1  // reloadable
    b.pools["db"]?.users[0].poolSize = 40  // reloadable
    #expect(ConfigDiff.restartOnly(old: a, new: b) == ["general.port", "general.tls_rate_limit_per_second", "web.port"])
    a.general.workerThreads = b.general.workerThreads + 3
    #expect(ConfigDiff.restartOnly(old: a, new: b).contains("general.worker_threads"))
}

@Test func everyFlattenedKeyHasACatalogueEntry() {
    var c = config()
    var q = AuthQuery()
    q.query = "SELECT 1"
    c.pools["db"]?.authQuery = q
    for key in ConfigDiff.flatten(c).keys where !key.hasPrefix("talos.") {
        guard let (section, name) = ConfigDiff.catalogueKey(key) else {
            Issue.record("\(key): no section")
            continue
        }
        #expect(Catalogue.field(section, name) != nil, "\(key)")
    }
}
