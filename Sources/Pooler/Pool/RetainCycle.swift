import NIOCore

/// One maintenance cycle, run every `retain_connections_time`: the pools (and, for the reserve
/// beyond `max_db_connections`, the coordinators) offer idle servers to close, `RetainPlanner`
/// keeps at most `retain_connections_max` of them across all pools, oldest first; then every pool
/// opens servers up to its min_pool_size.
enum RetainCycle {
    struct Item {
        var pool: ServerPool
        var server: ServerConnection
    }

    static func run(pools: [ServerPool], coordinators: [DatabaseCoordinator], maxCloses: Int, now: NIODeadline,
                    loops: [EventLoop]) {
        var candidates: [RetainPlanner.Candidate<Item>] = []
        for pool in pools {
            for c in pool.retainCandidates(now: now) {
                candidates.append(.init(item: Item(pool: pool, server: c.item), id: c.id, createdAt: c.createdAt,
                                        reason: c.reason))
            }
        }
        for coordinator in coordinators {
            let surplus = coordinator.reserveUsed
            guard surplus > 0 else { continue }
            let sibs = coordinator.siblings().filter { $0.coordinator === coordinator }
            // Reserve connections go back only when no client of the database waits.
            guard !sibs.contains(where: \.hasWaiters) else { continue }
            let idle = sibs.flatMap { p in p.idleServers().map { Item(pool: p, server: $0) } }
                .sorted { $0.server.createdAt < $1.server.createdAt }
                .prefix(surplus)
            for item in idle {
                candidates.append(.init(item: item, id: ObjectIdentifier(item.server), createdAt: item.server.createdAt,
                                        reason: .reserve))
            }
        }
        let chosen = RetainPlanner.plan(candidates, max: maxCloses)
        var byPool: [ObjectIdentifier: (ServerPool, [ServerConnection])] = [:]
        for c in chosen {
            byPool[ObjectIdentifier(c.item.pool), default: (c.item.pool, [])].1.append(c.item.server)
        }
        for (pool, servers) in byPool.values { pool.closeIdle(servers) }
        for pool in pools { pool.replenish(loops: loops) }
    }
}
