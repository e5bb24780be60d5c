import NIOConcurrencyHelpers
import NIOCore

/// Per-second averages over the last 15-second period, as SHOW STATS reports them.
final class StatsAverager {
    static let period = TimeAmount.seconds(15)
    private let lock = NIOLock()
    private var previous: [ObjectIdentifier: PoolStats.Snapshot] = [:]
    private var averages: [ObjectIdentifier: PoolStats.Snapshot] = [:]

    /// Called every period: averages = (now - previous) / seconds; times are per transaction / query.
    func tick(pools: [ServerPool], seconds: Int) {
        lock.withLock {
            var next: [ObjectIdentifier: PoolStats.Snapshot] = [:]
            for p in pools {
                let id = ObjectIdentifier(p)
                let now = p.stats.snapshot()
                let before = previous[id] ?? PoolStats.Snapshot()
                let dx = now.xactCount - before.xactCount
                let dq = now.queryCount - before.queryCount
                var a = PoolStats.Snapshot()
                a.xactCount = dx / seconds
                a.queryCount = dq / seconds
                a.received = (now.received - before.received) / seconds
                a.sent = (now.sent - before.sent) / seconds
                a.errors = (now.errors - before.errors) / seconds
                a.xactTime = dx > 0 ? (now.xactTime - before.xactTime) / dx : 0
                a.queryTime = dq > 0 ? (now.queryTime - before.queryTime) / dq : 0
                a.waitTime = dx > 0 ? (now.waitTime - before.waitTime) / dx : 0
                averages[id] = a
                next[id] = now
            }
            previous = next
        }
    }

    func averages(for pool: ServerPool) -> PoolStats.Snapshot {
        lock.withLock { averages[ObjectIdentifier(pool)] ?? PoolStats.Snapshot() }
    }
}
