/// The decisions of one database's coordinator (`max_db_connections`), pure: permits held per user
/// pool, the reserve beyond the limit, whom to evict, whether a releasing pool gives way. Keys are
/// whatever identifies a pool to the caller.
struct CoordinatorLedger<Key: Hashable> {
    struct Settings: Equatable {
        /// `max_db_connections`.
        var limit: Int
        /// `reserve_pool_size`: permits beyond the limit for clients that waited `reserve_pool_timeout`.
        var reserveSize = 0
        /// `min_guaranteed_pool_size`: a user pool never loses a connection to eviction or give-way
        /// below this many.
        var guarantee = 0
        /// `min_connection_lifetime` (ms): younger connections are not evicted.
        var minLifetimeMs: UInt64 = 30_000
    }

    enum Grant: Equatable { case regular, reserve }

    var settings: Settings
    private(set) var used = 0
    private(set) var held: [Key: Int] = [:]
    /// Permits granted beyond the limit, since start.
    private(set) var reserveAcquisitions = 0

    init(settings: Settings) { self.settings = settings }

    /// Permits in use beyond the limit.
    var reserveUsed: Int { max(0, used - settings.limit) }

    func held(by key: Key) -> Int { held[key] ?? 0 }

    /// A permit for `key`: a regular one under the limit, else a reserve one when allowed (its client
    /// has waited reserve_pool_timeout) and the reserve is not used up.
    mutating func acquire(for key: Key, reserveAllowed: Bool) -> Grant? {
        let grant: Grant
        if used < settings.limit {
            grant = .regular
        } else if reserveAllowed && used < settings.limit + settings.reserveSize {
            grant = .reserve
            reserveAcquisitions += 1
        } else {
            return nil
        }
        used += 1
        held[key, default: 0] += 1
        return grant
    }

    /// `key` gives back `count` permits (at most as many as it holds).
    mutating func release(_ count: Int, from key: Key) {
        let mine = held[key] ?? 0
        let n = min(max(0, count), mine)
        guard n > 0 else { return }
        used = max(0, used - n)
        held[key] = mine - n > 0 ? mine - n : nil
    }

    /// What the coordinator knows of a sibling pool when it must evict.
    struct EvictionCandidate: Equatable {
        var key: Key
        /// Idle connections at least `min_connection_lifetime` old.
        var evictableIdle: Int
    }

    /// The pools to try evicting an idle connection from, best first: those holding more than the
    /// guarantee and with an evictable idle connection, most surplus above the guarantee first (ties
    /// keep the given order).
    func evictionOrder(_ candidates: [EvictionCandidate]) -> [Key] {
        candidates.enumerated()
            .map { (i: $0.offset, c: $0.element, surplus: held(by: $0.element.key) - settings.guarantee) }
            .filter { $0.surplus > 0 && $0.c.evictableIdle > 0 }
            .sorted { $0.surplus != $1.surplus ? $0.surplus > $1.surplus : $0.i < $1.i }
            .map { $0.c.key }
    }

    /// Whether `key`, releasing a connection while other pools want a permit, should close it so the
    /// permit moves: never at or below its guarantee; always when none of its own clients waits;
    /// else when it holds more than its fair share (⌈limit / pools holding or wanting⌉).
    func shouldYield(_ key: Key, ownClientsWaiting: Bool, holders: Int) -> Bool {
        let mine = held(by: key)
        if mine <= settings.guarantee { return false }
        if !ownClientsWaiting { return true }
        let n = max(1, holders)
        let fairShare = max(1, (settings.limit + n - 1) / n)
        return mine > fairShare
    }
}
