import ConfigKit
import Testing
@testable import Pooler

@Suite struct ClientLimitsTests {
    @Test func perDatabaseLimitCountsEveryUserOfTheDatabase() {
        var l = ClientLimits()
        l.settings = .init(defaultPerDatabase: 2)
        #expect(l.admit(database: "a", user: "u1") == nil)
        #expect(l.admit(database: "a", user: "u2") == nil)
        #expect(l.admit(database: "a", user: "u3") == .database(limit: 2))
        #expect(l.admit(database: "b", user: "u3") == nil)
        l.leave(database: "a", user: "u1")
        #expect(l.admit(database: "a", user: "u3") == nil)
    }

    @Test func perUserLimitSpansDatabases() {
        var l = ClientLimits()
        l.settings = .init(perUser: 2)
        #expect(l.admit(database: "a", user: "u") == nil)
        #expect(l.admit(database: "b", user: "u") == nil)
        #expect(l.admit(database: "c", user: "u") == .user(limit: 2))
        #expect(l.admit(database: "c", user: "v") == nil)
    }

    /// A refusal counts nothing, so refused clients do not use up the limit.
    @Test func aRefusalCountsNothing() {
        var l = ClientLimits()
        l.settings = .init(defaultPerDatabase: 1, perUser: 5)
        #expect(l.admit(database: "a", user: "u") == nil)
        for _ in 0..<10 { #expect(l.admit(database: "a", user: "u") != nil) }
        #expect(l.perUser["u"] == 1)
        l.leave(database: "a", user: "u")
        #expect(l.perDatabase.isEmpty && l.perUser.isEmpty)
    }

    @Test func poolOverrideAndZeroMeansNoLimit() {
        var l = ClientLimits()
        l.settings = .init(defaultPerDatabase: 1, perDatabase: ["big": 0, "small": 2])
        for _ in 0..<100 { #expect(l.admit(database: "big", user: "u") == nil) }
        #expect(l.admit(database: "small", user: "v") == nil)
        #expect(l.admit(database: "small", user: "v") == nil)
        #expect(l.admit(database: "small", user: "v") == .database(limit: 2))
        #expect(l.admit(database: "other", user: "v") == nil)
        #expect(l.admit(database: "other", user: "v") == .database(limit: 1))
    }

    @Test func messagesNameTheLimit() {
        #expect(ClientLimits.Refusal.database(limit: 3).message(database: "db", user: "u").contains("max_db_client_connections = 3"))
        #expect(ClientLimits.Refusal.user(limit: 4).message(database: "db", user: "u").contains("max_user_client_connections = 4"))
    }

    /// user ?? pool ?? general for each timeout; pools with every timeout off are left out.
    @Test func governorResolvesTimeoutsPerUser() {
        var config = Config()
        config.general.proxyCopyDataTimeout = 0
        config.general.queryTimeout = 1_000
        config.general.clientIdleTimeout = 9_000
        var pool = Pool()
        pool.idleTransactionTimeout = 2_000
        pool.clientIdleTimeout = 0
        var a = User(); a.username = "a"
        var b = User(); b.username = "b"; b.queryTimeout = 0; b.transactionTimeout = 5_000
        pool.users = [a, b]
        config.pools["p"] = pool
        var quiet = Pool()
        var c = User(); c.username = "c"; c.queryTimeout = 0
        quiet.users = [c]
        quiet.clientIdleTimeout = 0
        config.pools["q"] = quiet
        let (_, table) = ClientGovernor.settings(config)
        #expect(table[PoolerRuntime.key("p", "a")] == .init(queryMs: 1_000, idleTransactionMs: 2_000, transactionMs: 0, clientIdleMs: 0))
        #expect(table[PoolerRuntime.key("p", "b")] == .init(queryMs: 0, idleTransactionMs: 2_000, transactionMs: 5_000, clientIdleMs: 0))
        #expect(table[PoolerRuntime.key("q", "c")] == nil)
        config.general.proxyCopyDataTimeout = 15_000
        #expect(ClientGovernor.settings(config).1[PoolerRuntime.key("q", "c")]?.copyDataMs == 15_000)
    }
}
