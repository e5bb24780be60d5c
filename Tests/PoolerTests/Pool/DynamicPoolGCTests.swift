import Testing
@testable import Pooler

@Suite struct DynamicPoolGCTests {
    @Test func collectedAfterTheDelayWithoutClientsOrServers() {
        var gc = DynamicPoolGC()
        do { let r = gc.collectable(clients: 0, servers: 0, waiting: 0, paused: false, now: 1_000, delay: 60_000); #expect(!r) }
        do { let r = gc.collectable(clients: 0, servers: 0, waiting: 0, paused: false, now: 60_999, delay: 60_000); #expect(!r) }
        do { let r = gc.collectable(clients: 0, servers: 0, waiting: 0, paused: false, now: 61_000, delay: 60_000); #expect(r) }
    }

    @Test func anyUseRestartsTheDelay() {
        var gc = DynamicPoolGC()
        _ = gc.collectable(clients: 0, servers: 0, waiting: 0, paused: false, now: 0, delay: 10)
        do { let r = gc.collectable(clients: 0, servers: 1, waiting: 0, paused: false, now: 5, delay: 10); #expect(!r) }
        do { let r = gc.collectable(clients: 0, servers: 0, waiting: 0, paused: false, now: 12, delay: 10); #expect(!r) }
        do { let r = gc.collectable(clients: 1, servers: 0, waiting: 0, paused: false, now: 20, delay: 10); #expect(!r) }
        do { let r = gc.collectable(clients: 0, servers: 0, waiting: 1, paused: false, now: 30, delay: 10); #expect(!r) }
        do { let r = gc.collectable(clients: 0, servers: 0, waiting: 0, paused: false, now: 31, delay: 10); #expect(!r) }
        do { let r = gc.collectable(clients: 0, servers: 0, waiting: 0, paused: false, now: 41, delay: 10); #expect(r) }
    }

    @Test func aPausedPoolIsNeverCollected() {
        var gc = DynamicPoolGC()
        for t in stride(from: UInt64(0), through: 1_000_000, by: 100_000) {
            do { let r = gc.collectable(clients: 0, servers: 0, waiting: 0, paused: true, now: t, delay: 0); #expect(!r) }
        }
        // RESUME: the delay starts over.
        do { let r = gc.collectable(clients: 0, servers: 0, waiting: 0, paused: false, now: 1_000_001, delay: 5); #expect(!r) }
        do { let r = gc.collectable(clients: 0, servers: 0, waiting: 0, paused: false, now: 1_000_006, delay: 5); #expect(r) }
    }

    @Test func zeroDelayCollectsAtTheFirstLook() {
        var gc = DynamicPoolGC()
        do { let r = gc.collectable(clients: 0, servers: 0, waiting: 0, paused: false, now: 7, delay: 0); #expect(r) }
    }
}
