import NIOConcurrencyHelpers

/// `max_db_connections`: one database's server connections, across all its user pools, stay at or
/// below the limit. A pool takes a permit for every connection it opens (or is opening) and gives
/// it back when the connection closes or the attempt fails. A pool that finds no permit keeps its
/// client waiting (bounded by query_wait_timeout as always), registers as wanting, and asks the
/// coordinator to close an idle connection of another user pool of the same database; every permit
/// given back goes to the pool that has wanted one longest. While another pool wants one, a pool
/// releasing a connection that no client of its own waits for — or that takes it over its fair
/// share, ⌈limit / pools holding or wanting⌉ — closes it instead of keeping it, so a busy user
/// cannot starve another.
///
/// Not implemented from the reference's coordinator: the reserve pool (`reserve_pool_size`,
/// `reserve_pool_timeout`), `min_guaranteed_pool_size` and `min_connection_lifetime` (the eviction
/// takes the least recently used idle connection of the first sibling that has one).
///
/// Lock order: a pool may call in while holding its own lock (`tryAcquire`); the coordinator never
/// calls a pool while holding its lock.
final class DatabaseCoordinator {
    let database: String
    private let lock = NIOLock()
    private var _limit: Int
    private var used = 0
    private var held: [ObjectIdentifier: Int] = [:]
    private var wanting: [ServerPool] = []
    private var _evictions = 0
    private var _exhaustions = 0
    /// The database's current pools (set by the runtime, which owns the pool map).
    var siblings: () -> [ServerPool] = { [] }

    init(database: String, limit: Int) {
        self.database = database
        self._limit = limit
    }

    struct Snapshot: Equatable {
        var limit: Int, current: Int, evictions: Int, exhaustions: Int
    }

    var snapshot: Snapshot {
        lock.withLock { Snapshot(limit: _limit, current: used, evictions: _evictions, exhaustions: _exhaustions) }
    }

    /// RELOAD changed max_db_connections. A raised limit serves waiting pools at the next `wake()`;
    /// over a lowered one, no new connection opens until enough have closed (idle_timeout,
    /// server_lifetime, RECONNECT).
    func setLimit(_ limit: Int) { lock.withLock { _limit = limit } }

    /// Takes a permit for `pool` if one is free.
    func tryAcquire(for pool: ServerPool) -> Bool {
        lock.withLock {
            guard used < _limit else { return false }
            used += 1
            held[ObjectIdentifier(pool), default: 0] += 1
            return true
        }
    }

    /// `pool` gives `count` permits back; the pools that want one may open connections.
    func release(_ count: Int = 1, from pool: ServerPool) {
        guard count > 0 else { return }
        lock.withLock {
            used = max(0, used - count)
            let k = ObjectIdentifier(pool)
            let left = (held[k] ?? 0) - count
            held[k] = left > 0 ? left : nil
        }
        wakeWanting()
    }

    /// Asked by `pool` when a client releases a server: true when the server should close so that
    /// a permit goes to another pool that wants one (see the type's comment).
    func shouldYield(_ pool: ServerPool, ownClientsWaiting: Bool) -> Bool {
        let (others, mine, holders): ([ServerPool], Int, Int) = lock.withLock {
            let others = wanting.filter { $0 !== pool }
            guard !others.isEmpty else { return ([], 0, 0) }
            let k = ObjectIdentifier(pool)
            let holders = Set(held.keys).union(wanting.map(ObjectIdentifier.init)).count
            return (others, held[k] ?? 0, holders)
        }
        // A pool whose waiters have all timed out or been served no longer needs a permit.
        guard others.contains(where: \.hasWaiters) else { return false }
        if !ownClientsWaiting { return true }
        let limit = lock.withLock { _limit }
        let fairShare = max(1, (limit + max(1, holders) - 1) / max(1, holders))
        return mine > fairShare
    }

    /// `pool` has a client waiting and no permit: remember it, and close an idle connection of a
    /// sibling pool to make room.
    func want(_ pool: ServerPool) {
        lock.withLock {
            _exhaustions += 1
            if !wanting.contains(where: { $0 === pool }) { wanting.append(pool) }
        }
        for sibling in siblings() where sibling !== pool && sibling.coordinator === self {
            if sibling.evictOneIdle() {
                lock.withLock { _evictions += 1 }
                return
            }
        }
    }

    /// Hands free permits to the pools that want one, longest-waiting first. Call without holding
    /// a pool's or the runtime's lock.
    func wake() { wakeWanting() }

    private func wakeWanting() {
        while true {
            let next: ServerPool? = lock.withLock {
                guard used < _limit, !wanting.isEmpty else { return nil }
                return wanting.removeFirst()
            }
            guard let next else { return }
            next.serveWaitersWithNewConnections()
        }
    }
}
