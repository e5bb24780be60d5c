import ConfigKit

/// The pool-side knobs that RELOAD may change without replacing the pool (they decide when a
/// connection may be opened, not what it looks like).
struct PoolLimits: Equatable, Sendable {
    /// `reserve_pool_size`: connections a pool may open beyond `pool_size` for a client that has
    /// waited `reserveTimeoutMs`.
    var reserveSize = 0
    /// `reserve_pool_timeout` (ms).
    var reserveTimeoutMs: UInt64 = 3_000
    /// `scaling_max_parallel_creates`: connects one pool may have in flight (at least 1).
    var maxParallelCreates = 2

    static func resolve(pool: Pool, general: General) -> PoolLimits {
        PoolLimits(reserveSize: max(0, pool.effectiveReservePoolSize),
                   reserveTimeoutMs: pool.effectiveReservePoolTimeout,
                   maxParallelCreates: max(1, general.scalingMaxParallelCreates))
    }
}

/// Whether one pool may start another server connect now, from its own counts. Pure: the caller
/// passes the counts and how long its oldest client has waited. The shared gates
/// (`max_concurrent_creates`, `max_user_connections`, `max_db_connections`) are asked afterwards.
enum CreateGate {
    enum Verdict: Equatable {
        /// Open one; `reserve` when it goes beyond `pool_size` (into `reserve_pool_size`).
        case open(reserve: Bool)
        case hold(Hold)
    }

    enum Hold: Equatable {
        /// `pool_size` reached (and the reserve is used up, or no client has waited long enough).
        case full
        /// `scaling_max_parallel_creates` connects are already in flight.
        case burst
    }

    /// - Parameter waitedMs: how long the client the connection is for has waited; nil for a client
    ///   that has just asked (it never gets a reserve connection ahead of clients already waiting).
    static func decide(open: Int, opening: Int, poolSize: Int, limits: PoolLimits, waitedMs: UInt64?) -> Verdict {
        let total = open + opening
        let roomRegular = total < poolSize
        let roomReserve = total < poolSize + limits.reserveSize
        guard roomRegular || roomReserve else { return .hold(.full) }
        if !roomRegular {
            guard let waitedMs, limits.reserveSize > 0, waitedMs >= limits.reserveTimeoutMs else { return .hold(.full) }
        }
        if opening >= max(1, limits.maxParallelCreates) { return .hold(.burst) }
        return .open(reserve: !roomRegular)
    }

    /// Whether a client that has waited `waitedMs` may take a reserve slot (of the pool or of the
    /// database's coordinator).
    static func reserveAllowed(limits: PoolLimits, waitedMs: UInt64?) -> Bool {
        guard let waitedMs, limits.reserveSize > 0 else { return false }
        return waitedMs >= limits.reserveTimeoutMs
    }
}

/// A count of permits with a limit (0 = no limit). Pure.
struct PermitCount: Equatable {
    var limit: Int
    private(set) var used = 0

    init(limit: Int) { self.limit = limit }

    var isFull: Bool { limit > 0 && used >= limit }

    mutating func tryTake() -> Bool {
        if isFull { return false }
        used += 1
        return true
    }

    mutating func give(_ n: Int = 1) { used = max(0, used - n) }
}
