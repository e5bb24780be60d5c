import Testing
@testable import Pooler

struct CoordinatorLedgerTests {
    typealias Ledger = CoordinatorLedger<String>

    @Test func regularThenReserveOnlyForClientsThatWaited() {
        var l = Ledger(settings: .init(limit: 2, reserveSize: 1))
        let grants = [l.acquire(for: "a", reserveAllowed: false), l.acquire(for: "b", reserveAllowed: true),
                      l.acquire(for: "a", reserveAllowed: false), l.acquire(for: "a", reserveAllowed: true),
                      l.acquire(for: "b", reserveAllowed: true)]
        // Regular under the limit; beyond it only for a client that waited, until the reserve is used up.
        #expect(grants == [.regular, .regular, nil, .reserve, nil])
        #expect(l.used == 3 && l.reserveUsed == 1 && l.reserveAcquisitions == 1)
        l.release(1, from: "a")
        #expect(l.reserveUsed == 0 && l.held(by: "a") == 1 && l.held(by: "b") == 1)
        l.release(5, from: "b")
        #expect(l.held(by: "b") == 0 && l.used == 1)
    }

    @Test func evictionTakesFromTheMostSurplusAboveTheGuarantee() {
        var l = Ledger(settings: .init(limit: 20, guarantee: 2))
        for (k, n) in [("a", 3), ("b", 5), ("c", 2), ("d", 5)] {
            for _ in 0..<n { _ = l.acquire(for: k, reserveAllowed: false) }
        }
        let c = { (k: String, idle: Int) in Ledger.EvictionCandidate(key: k, evictableIdle: idle) }
        // c is at its guarantee; b and d tie on surplus 3 (given order kept); a has surplus 1.
        #expect(l.evictionOrder([c("a", 1), c("b", 1), c("c", 2), c("d", 4)]) == ["b", "d", "a"])
        // No idle connection old enough (min_connection_lifetime): not a candidate.
        #expect(l.evictionOrder([c("a", 1), c("b", 0), c("c", 2), c("d", 0)]) == ["a"])
        #expect(l.evictionOrder([c("c", 2)]) == [])
    }

    @Test func yieldNeverBelowTheGuarantee() {
        var l = Ledger(settings: .init(limit: 4, guarantee: 2))
        for _ in 0..<2 { _ = l.acquire(for: "a", reserveAllowed: false) }
        #expect(!l.shouldYield("a", ownClientsWaiting: false, holders: 2))
        _ = l.acquire(for: "a", reserveAllowed: false)
        #expect(l.shouldYield("a", ownClientsWaiting: false, holders: 2))
        // With its own clients waiting it keeps up to its fair share ⌈4/2⌉ = 2, here held 3.
        #expect(l.shouldYield("a", ownClientsWaiting: true, holders: 2))
        #expect(!l.shouldYield("a", ownClientsWaiting: true, holders: 1))
    }
}
