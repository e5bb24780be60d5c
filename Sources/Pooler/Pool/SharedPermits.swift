import NIOConcurrencyHelpers

/// Permits shared by several pools: `max_concurrent_creates` (server logins in flight across all
/// pools; a permit is held from the start of a connect to its end) and `max_user_connections`
/// (server connections of one user name across all databases; a permit is held for the
/// connection's life). A pool that finds none keeps its client waiting, registers here, and is
/// asked to serve its waiters again when a permit comes back (the waiter sweep retries as well).
///
/// Lock order: a pool may call `tryTake`/`giveWithoutWaking` while holding its own lock; this
/// object never calls a pool while holding its lock.
final class SharedPermits {
    /// What the permits count, for messages.
    let name: String
    private let lock = NIOLock()
    private var count: PermitCount
    private var wanting: [ServerPool] = []
    /// Asked when a pool finds no permit: close an idle connection that holds one elsewhere (for
    /// `max_user_connections`, one of the same user in another database, as PgBouncer does).
    var evictIdle: ((ServerPool) -> Void)?

    init(name: String, limit: Int) {
        self.name = name
        self.count = PermitCount(limit: limit)
    }

    var limit: Int { lock.withLock { count.limit } }
    var used: Int { lock.withLock { count.used } }
    var isFull: Bool { lock.withLock { count.isFull } }

    /// RELOAD: a raised limit serves wanting pools at once; a lowered one lets nothing new in until
    /// enough permits come back.
    func setLimit(_ limit: Int) {
        lock.withLock { count.limit = limit }
        wakeWanting()
    }

    func tryTake() -> Bool { lock.withLock { count.tryTake() } }

    /// Gives permits back without waking anyone: for a pool undoing a take under its own lock.
    func giveWithoutWaking(_ n: Int = 1) {
        guard n > 0 else { return }
        lock.withLock { count.give(n) }
    }

    /// Gives permits back and lets the pools that wanted one try again. Call without a pool's lock.
    func give(_ n: Int = 1) {
        guard n > 0 else { return }
        lock.withLock { count.give(n) }
        wakeWanting()
    }

    /// `pool` has a client waiting and found no permit.
    func want(_ pool: ServerPool) {
        lock.withLock { if !wanting.contains(where: { $0 === pool }) { wanting.append(pool) } }
        evictIdle?(pool)
        // A permit may have come back between the failed take and now.
        wakeWanting()
    }

    private func wakeWanting() {
        while true {
            let next: ServerPool? = lock.withLock {
                guard !count.isFull, !wanting.isEmpty else { return nil }
                return wanting.removeFirst()
            }
            guard let next else { return }
            next.serveWaitersWithNewConnections()
        }
    }
}
