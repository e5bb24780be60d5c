import Testing
@testable import ConfigKit

@Suite struct ResolutionTests {
    @Test func cascades() {
        var g = General()
        var p = Pool()
        var u = User(username: "app", password: "md5x")
        #expect(p.effectivePoolMode(for: u) == .transaction)
        u.poolMode = .session
        #expect(p.effectivePoolMode(for: u) == .session)
        #expect(p.serverDatabaseName("db") == "db")
        p.serverDatabase = "real"
        #expect(p.serverDatabaseName("db") == "real")
        #expect(p.effectiveIdleTimeout(g) == 600_000)
        p.idleTimeout = 5
        #expect(p.effectiveIdleTimeout(g) == 5)
        #expect(p.effectiveServerLifetime(g) == 1_200_000)
        #expect(p.effectivePreparedStatementsCacheSize(g) == 8192)
        g.preparedStatements = false
        #expect(p.effectivePreparedStatementsCacheSize(g) == 0)
        g.preparedStatements = true
        p.preparedStatementsCacheSize = 10
        #expect(p.effectiveServerPreparedStatementsCacheSize(g) == 10)
        #expect(p.effectiveClientAnonymousPreparedCacheSize(g) == 10)
        g.startupParameters = ["timezone": "UTC", "search_path": "a"]
        p.startupParameters = ["TIMEZONE": "MSK"]
        #expect(p.effectiveStartupParameters(g).map { "\($0.key)=\($0.value)" } == ["TimeZone=MSK", "search_path=a"])
        #expect(u.usesPassthroughAuth)
        u.serverUsername = "other"
        #expect(!u.usesPassthroughAuth)
        #expect(u.backendUsername == "other")
        #expect(p.effectiveFallbackLifetime(g) == 30_000)
    }
}
