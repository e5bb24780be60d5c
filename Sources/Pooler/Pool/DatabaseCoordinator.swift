import NIOConcurrencyHelpers
import NIOCore

/// `max_db_connections`: one database's server connections, across all its user pools, stay at or
/// below the limit. A pool takes a permit for every connection it opens (or is opening) and gives
/// it back when the connection closes or the attempt fails. A pool that finds no permit keeps its
/// client waiting (bounded by query_wait_timeout as always), registers as wanting, and asks the
/// coordinator to close an idle connection of another user pool of the same database: the pool
/// with the most connections above `min_guaranteed_pool_size`, and only a connection at least
/// `min_connection_lifetime` old (the waiter sweep asks again while the client waits, so a
/// connection that ages past it is taken then). Every permit given back goes to the pool that has
/// wanted one longest. While another pool wants one, a pool releasing a connection that no client
/// of its own waits for — or that takes it over its fair share, ⌈limit / pools holding or
/// wanting⌉ — closes it instead of keeping it (never below its guarantee), so a busy user cannot
/// starve another.
///
/// The reserve: a client that has waited `reserve_pool_timeout` may get one of `reserve_pool_size`
/// permits beyond the limit; reserve connections that are idle are closed by the maintenance
/// cycle (`RetainCycle`). The decisions are `CoordinatorLedger`'s; this class runs them.
///
/// Lock order: a pool may call in while holding its own lock (`tryAcquire`); the coordinator never
/// calls a pool while holding its lock.
final class DatabaseCoordinator {
    let database: String
    private let lock = NIOLock()
    private var ledger: CoordinatorLedger<ObjectIdentifier>
    private var wanting: [ServerPool] = []
    private var _evictions = 0
    private var _exhaustions = 0
    /// The database's current pools (set by the runtime, which owns the pool map).
    var siblings: () -> [ServerPool] = { [] }

    typealias Settings = CoordinatorLedger<ObjectIdentifier>.Settings

    init(database: String, settings: Settings) {
        self.database = database
        self.ledger = CoordinatorLedger(settings: settings)
    }

    convenience init(database: String, limit: Int) {
        self.init(database: database, settings: Settings(limit: limit))
    }

    struct Snapshot: Equatable {
        var limit: Int, current: Int, evictions: Int, exhaustions: Int
        var reserveSize = 0, reserveUsed = 0, reserveAcquisitions = 0
    }

    var snapshot: Snapshot {
        lock.withLock {
            Snapshot(limit: ledger.settings.limit, current: ledger.used, evictions: _evictions,
                     exhaustions: _exhaustions, reserveSize: ledger.settings.reserveSize,
                     reserveUsed: ledger.reserveUsed, reserveAcquisitions: ledger.reserveAcquisitions)
        }
    }

    var settings: Settings { lock.withLock { ledger.settings } }

    /// RELOAD changed the database's settings. A raised limit serves waiting pools at the next
    /// `wake()`; over a lowered one, no new connection opens until enough have closed (idle_timeout,
    /// server_lifetime, RECONNECT).
    func configure(_ settings: Settings) { lock.withLock { ledger.settings = settings } }

    func setLimit(_ limit: Int) { lock.withLock { ledger.settings.limit = limit } }

    /// Takes a permit for `pool` if one is free (a reserve one when `reserveAllowed`).
    func tryAcquire(for pool: ServerPool, reserveAllowed: Bool = false) -> Bool {
        lock.withLock { ledger.acquire(for: ObjectIdentifier(pool), reserveAllowed: reserveAllowed) != nil }
    }

    /// When the database is at its limit, what a client of `user` that timed out is told.
    func limitText(user: String) -> String? {
        lock.withLock {
            let s = ledger.settings
            guard ledger.used >= s.limit else { return nil }
            let reserve = s.reserveSize > 0 ? ", reserve=\(ledger.reserveUsed)/\(s.reserveSize)" : ""
            return "all server connections to database '\(database)' are in use "
                + "(max=\(s.limit)\(reserve), user='\(user)')"
        }
    }

    /// `pool` gives `count` permits back; the pools that want one may open connections.
    func release(_ count: Int = 1, from pool: ServerPool) {
        guard count > 0 else { return }
        lock.withLock { ledger.release(count, from: ObjectIdentifier(pool)) }
        wakeWanting()
    }

    /// Asked by `pool` when a client releases a server: true when the server should close so that
    /// a permit goes to another pool that wants one (see the type's comment).
    func shouldYield(_ pool: ServerPool, ownClientsWaiting: Bool) -> Bool {
        let others: [ServerPool] = lock.withLock { wanting.isEmpty ? [] : wanting.filter { $0 !== pool } }
        guard !others.isEmpty else { return false }
        // A pool whose waiters have all timed out or been served no longer needs a permit.
        guard others.contains(where: \.hasWaiters) else { return false }
        return lock.withLock {
            let holders = Set(ledger.held.keys).union(wanting.map(ObjectIdentifier.init)).count
            return ledger.shouldYield(ObjectIdentifier(pool), ownClientsWaiting: ownClientsWaiting, holders: holders)
        }
    }

    /// `pool` has a client waiting and no permit: remember it, and close an idle connection of a
    /// sibling pool to make room.
    func want(_ pool: ServerPool) {
        lock.withLock {
            if !wanting.contains(where: { $0 === pool }) {
                wanting.append(pool)
                _exhaustions += 1
            }
        }
        evict(for: pool)
    }

    private func evict(for pool: ServerPool) {
        let sibs = siblings().filter { $0 !== pool && $0.coordinator === self }
        guard !sibs.isEmpty else { return }
        let minLifetime = settings.minLifetimeMs
        let now = NIODeadline.now()
        let candidates = sibs.map {
            CoordinatorLedger<ObjectIdentifier>.EvictionCandidate(
                key: ObjectIdentifier($0), evictableIdle: $0.idleCount(olderThanMs: minLifetime, now: now))
        }
        let order = lock.withLock { ledger.evictionOrder(candidates) }
        for key in order {
            guard let sibling = sibs.first(where: { ObjectIdentifier($0) == key }) else { continue }
            if sibling.evictOneIdle(olderThanMs: minLifetime, now: now) {
                lock.withLock { _evictions += 1 }
                return
            }
        }
    }

    /// Permits in use beyond the limit (reserve connections the retain cycle may close).
    var reserveUsed: Int { lock.withLock { ledger.reserveUsed } }

    /// Hands free permits to the pools that want one, longest-waiting first. Call without holding
    /// a pool's or the runtime's lock.
    func wake() { wakeWanting() }

    private func wakeWanting() {
        while true {
            let next: ServerPool? = lock.withLock {
                guard ledger.used < ledger.settings.limit, !wanting.isEmpty else { return nil }
                return wanting.removeFirst()
            }
            guard let next else { return }
            next.serveWaitersWithNewConnections()
        }
    }
}
