/// What `auth_query` returned for one user name.
struct AuthQuerySecret: Equatable, Sendable {
    /// The stored password as PostgreSQL keeps it: `md5…` or `SCRAM-SHA-256$…`.
    var password: String
    /// From the optional `startup_parameters` column (name, value), sorted by name.
    var startupParameters: [PoolSettings.KV] = []

    var isMD5: Bool { MD5Password.isHash(password) }
    var isSCRAM: Bool { password.hasPrefix("SCRAM-SHA-256$") }
}

/// The outcome of one lookup.
enum AuthQueryFetch: Equatable, Sendable {
    /// One row with a usable password.
    case found(AuthQuerySecret)
    /// No row, or a row whose password is NULL or empty: the user cannot log in with a password.
    case notFound
    /// The row could not be used (several rows, no password column, a password in an unknown
    /// format, invalid startup_parameters JSON); the reason is for the log, never for the client.
    case unusable(String)
    /// The lookup could not run (PostgreSQL down, query error, timeout).
    case unavailable(String)
}

/// The auth_query cache of one database: positive entries live `ttl`, negative ones `failureTTL`;
/// a user is looked up again at most once per `minInterval` (a refetch asked for sooner is
/// answered from the cache, `rateLimited`). Concurrent lookups of one user share one query:
/// the first caller is told to fetch, later ones wait (`Waiter`) for `fetched`.
///
/// Pure: time comes in as `now` (milliseconds on a monotonic clock), the caller runs the query.
struct AuthQueryCache<Waiter> {
    struct Policy: Equatable {
        var ttlMs: UInt64
        var failureTTLMs: UInt64
        var minIntervalMs: UInt64
    }

    struct Counters: Equatable {
        var hits = 0
        var misses = 0
        var refetches = 0
        var rateLimited = 0
    }

    private struct Entry {
        /// `.found` or `.notFound` only (failures are not cached).
        var outcome: AuthQueryFetch
        var fetchedAt: UInt64
        /// Set by a SCRAM mismatch: the next login looks the user up again (rate limit permitting).
        var stale: Bool
    }

    enum Lookup {
        /// Answer from the cache.
        case cached(AuthQueryFetch)
        /// Run the query, then call `fetched`.
        case fetch
        /// A query for this user is running; the waiter is called back through `fetched`.
        case joined
    }

    enum Refetch {
        case fetch
        case joined
        /// Looked up less than `minInterval` ago: the answer stays as cached.
        case rateLimited
    }

    let policy: Policy
    /// Bound on cached entries (a stream of made-up user names must not grow memory without end).
    let capacity: Int
    private var entries: [String: Entry] = [:]
    private var lastFetch: [String: UInt64] = [:]
    private var inFlight: [String: [Waiter]] = [:]
    private(set) var counters = Counters()

    init(policy: Policy, capacity: Int = 10_000) {
        self.policy = policy
        self.capacity = max(1, capacity)
    }

    var count: Int { entries.count }

    private func ttl(of outcome: AuthQueryFetch) -> UInt64 {
        switch outcome {
        case .found: return policy.ttlMs
        case .notFound, .unusable, .unavailable: return policy.failureTTLMs
        }
    }

    private func withinMinInterval(_ user: String, now: UInt64) -> Bool {
        guard let last = lastFetch[user] else { return false }
        return now &- last < policy.minIntervalMs
    }

    /// A login of `user` wants its password.
    mutating func lookup(_ user: String, now: UInt64, waiter: Waiter) -> Lookup {
        if inFlight[user] != nil {
            inFlight[user, default: []].append(waiter)
            return .joined
        }
        if let e = entries[user] {
            if !e.stale && now &- e.fetchedAt < ttl(of: e.outcome) {
                counters.hits += 1
                return .cached(e.outcome)
            }
            if withinMinInterval(user, now: now) {
                counters.rateLimited += 1
                return .cached(e.outcome)
            }
        }
        counters.misses += 1
        startFetch(user, now: now, waiter: waiter)
        return .fetch
    }

    /// The client's MD5 response did not match the cached hash: look again once (the password may
    /// have changed in PostgreSQL), unless the user was looked up less than `minInterval` ago.
    mutating func md5Mismatch(_ user: String, now: UInt64, waiter: Waiter) -> Refetch {
        if inFlight[user] != nil {
            inFlight[user, default: []].append(waiter)
            return .joined
        }
        if withinMinInterval(user, now: now) {
            counters.rateLimited += 1
            return .rateLimited
        }
        counters.refetches += 1
        startFetch(user, now: now, waiter: waiter)
        return .fetch
    }

    /// A SCRAM proof did not match: the entry is stale, so the next login looks the user up again
    /// (a client cannot be re-challenged within one SCRAM exchange).
    mutating func scramMismatch(_ user: String) {
        entries[user]?.stale = true
    }

    private mutating func startFetch(_ user: String, now: UInt64, waiter: Waiter) {
        inFlight[user] = [waiter]
        lastFetch[user] = now
    }

    /// The query for `user` finished; returns every waiter to answer with `result`. Found and not
    /// found are cached; failures are not (the next login tries again).
    mutating func fetched(_ user: String, _ result: AuthQueryFetch, now: UInt64) -> [Waiter] {
        switch result {
        case .found, .notFound:
            if entries[user] == nil && entries.count >= capacity { prune(now: now) }
            entries[user] = Entry(outcome: result, fetchedAt: now, stale: false)
        case .unusable, .unavailable:
            break
        }
        return inFlight.removeValue(forKey: user) ?? []
    }

    /// Drops expired entries; when that frees nothing, the oldest negative ones, then the oldest.
    mutating func prune(now: UInt64) {
        entries = entries.filter { now &- $0.value.fetchedAt < ttl(of: $0.value.outcome) && !$0.value.stale }
        if entries.count >= capacity {
            let victims = entries.sorted { a, b in
                let an = a.value.outcome == .notFound, bn = b.value.outcome == .notFound
                return an != bn ? an : a.value.fetchedAt < b.value.fetchedAt
            }.prefix(entries.count - capacity + 1)
            for (k, _) in victims { entries.removeValue(forKey: k) }
        }
        lastFetch = lastFetch.filter { now &- $0.value < policy.minIntervalMs || entries[$0.key] != nil }
    }
}
