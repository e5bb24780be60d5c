import Testing
@testable import Pooler

@Suite struct AuthQueryCacheTests {
    typealias Cache = AuthQueryCache<Int>
    let policy = Cache.Policy(ttlMs: 3_600_000, failureTTLMs: 30_000, minIntervalMs: 1_000)
    let md5 = AuthQueryFetch.found(AuthQuerySecret(password: "md5" + String(repeating: "a", count: 32)))
    let md5New = AuthQueryFetch.found(AuthQuerySecret(password: "md5" + String(repeating: "b", count: 32)))

    func isFetch(_ l: Cache.Lookup) -> Bool { if case .fetch = l { return true } else { return false } }
    func cached(_ l: Cache.Lookup) -> AuthQueryFetch? { if case .cached(let o) = l { return o } else { return nil } }

    @Test func firstLookupFetchesAndConcurrentOnesShareTheQuery() {
        var c = Cache(policy: policy)
        do { let r = c.lookup("u", now: 0, waiter: 1); #expect(isFetch(r)) }
        if case .joined = c.lookup("u", now: 5, waiter: 2) {} else { Issue.record("second lookup should join") }
        do { let r = c.fetched("u", md5, now: 10); #expect(r == [1, 2]) }
        do { let r = c.lookup("u", now: 20, waiter: 3); #expect(cached(r) == md5) }
        #expect(c.counters == .init(hits: 1, misses: 1, refetches: 0, rateLimited: 0))
        #expect(c.count == 1)
    }

    @Test func positiveEntriesLiveTTLAndNegativeOnesFailureTTL() {
        var c = Cache(policy: policy)
        _ = c.lookup("u", now: 0, waiter: 0); _ = c.fetched("u", md5, now: 0)
        _ = c.lookup("ghost", now: 0, waiter: 0); _ = c.fetched("ghost", .notFound, now: 0)
        do { let r = c.lookup("ghost", now: 29_999, waiter: 0); #expect(cached(r) == .notFound) }
        do { let r = c.lookup("ghost", now: 30_000, waiter: 0); #expect(isFetch(r)) }
        do { let r = c.lookup("u", now: 3_599_999, waiter: 0); #expect(cached(r) == md5) }
        do { let r = c.lookup("u", now: 3_600_000, waiter: 0); #expect(isFetch(r)) }
    }

    @Test func failuresAreNotCached() {
        var c = Cache(policy: policy)
        _ = c.lookup("u", now: 0, waiter: 7)
        do { let r = c.fetched("u", .unavailable("down"), now: 1); #expect(r == [7]) }
        #expect(c.count == 0)
        do { let r = c.lookup("u", now: 2, waiter: 8); #expect(isFetch(r)) }
    }

    @Test func md5MismatchRefetchesOnlyAfterMinInterval() {
        var c = Cache(policy: policy)
        _ = c.lookup("u", now: 0, waiter: 0); _ = c.fetched("u", md5, now: 0)
        if case .rateLimited = c.md5Mismatch("u", now: 500, waiter: 1) {} else { Issue.record("should be rate limited") }
        if case .fetch = c.md5Mismatch("u", now: 1_000, waiter: 2) {} else { Issue.record("should refetch") }
        do { let r = c.fetched("u", md5New, now: 1_010); #expect(r == [2]) }
        do { let r = c.lookup("u", now: 1_020, waiter: 3); #expect(cached(r) == md5New) }
        #expect(c.counters.refetches == 1 && c.counters.rateLimited == 1)
    }

    @Test func scramMismatchMakesTheEntryStaleWithinTheRateLimit() {
        var c = Cache(policy: policy)
        _ = c.lookup("u", now: 0, waiter: 0); _ = c.fetched("u", md5, now: 0)
        c.scramMismatch("u")
        // Within min_interval of the last fetch the stale answer is served (rate limited) ...
        do { let r = c.lookup("u", now: 999, waiter: 1); #expect(cached(r) == md5) }
        #expect(c.counters.rateLimited == 1)
        // ... after it the user is looked up again.
        do { let r = c.lookup("u", now: 1_000, waiter: 2); #expect(isFetch(r)) }
        _ = c.fetched("u", md5New, now: 1_001)
        do { let r = c.lookup("u", now: 1_002, waiter: 3); #expect(cached(r) == md5New) }
    }

    @Test func capacityBoundsTheCacheDroppingNegativeEntriesFirst() {
        var c = Cache(policy: policy, capacity: 3)
        _ = c.lookup("real", now: 0, waiter: 0); _ = c.fetched("real", md5, now: 0)
        for (i, name) in ["g1", "g2", "g3", "g4"].enumerated() {
            _ = c.lookup(name, now: UInt64(i + 1), waiter: 0)
            _ = c.fetched(name, .notFound, now: UInt64(i + 1))
        }
        #expect(c.count <= 3)
        do { let r = c.lookup("real", now: 10, waiter: 0); #expect(cached(r) == md5) }
    }
}
