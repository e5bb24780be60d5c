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
    /// `scaling_warm_pool_ratio` (%): up to this share of pool_size a pool opens connections at once;
    /// above it a client first waits `Anticipation.budgetMs` for a connection to come back.
    var warmRatio = 100
    /// query_wait_timeout (ms), which caps the anticipation budget.
    var queryWaitTimeoutMs: UInt64 = 5_000

    static func resolve(pool: Pool, general: General) -> PoolLimits {
        PoolLimits(reserveSize: max(0, pool.effectiveReservePoolSize),
                   reserveTimeoutMs: pool.effectiveReservePoolTimeout,
                   maxParallelCreates: max(1, general.scalingMaxParallelCreates),
                   warmRatio: min(100, max(0, pool.effectiveScalingWarmPoolRatio(general))),
                   queryWaitTimeoutMs: general.queryWaitTimeout)
    }

    /// Connections a pool opens without anticipation: ⌈pool_size × warm ratio / 100⌉.
    func warmSize(poolSize: Int) -> Int { (max(0, poolSize) * warmRatio + 99) / 100 }
}

/// The anticipation budget: how long a client above the warm share waits for a returned connection
/// before one is opened for it — twice the pool's 99th-percentile transaction time, 5…500 ms (100 ms
/// before any transaction), ±20 % jitter, and at most query_wait_timeout − 500 ms. Pure.
enum Anticipation {
    static func budgetMs(xactP99Micros: Int?, queryWaitTimeoutMs: UInt64, jitter: Double) -> UInt64 {
        let base: Double
        if let p99 = xactP99Micros, p99 > 0 {
            base = min(500, max(5, Double(p99) * 2 / 1000))
        } else {
            base = 100
        }
        let jittered = base * (0.8 + 0.4 * min(1, max(0, jitter)))
        let cap = queryWaitTimeoutMs > 500 ? Double(queryWaitTimeoutMs - 500) : 0
        return UInt64(min(jittered, cap).rounded())
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
        /// Above the warm share with connections in use: wait for one to come back until the
        /// anticipation budget has passed.
        case anticipate
    }

    /// - Parameters:
    ///   - waitedMs: how long the client the connection is for has waited; nil for a client that
    ///     has just asked (it never gets a reserve connection ahead of clients already waiting).
    ///   - anticipationMs: the anticipation budget; 0 opens without anticipating (min_pool_size).
    static func decide(open: Int, opening: Int, poolSize: Int, limits: PoolLimits, waitedMs: UInt64?,
                       anticipationMs: UInt64 = 0) -> Verdict {
        let total = open + opening
        let roomRegular = total < poolSize
        let roomReserve = total < poolSize + limits.reserveSize
        guard roomRegular || roomReserve else { return .hold(.full) }
        if !roomRegular {
            guard let waitedMs, limits.reserveSize > 0, waitedMs >= limits.reserveTimeoutMs else { return .hold(.full) }
        }
        // `open` connections are all in use here (the caller found no idle one): one may come back.
        if roomRegular && open > 0 && total >= limits.warmSize(poolSize: poolSize)
            && (waitedMs ?? 0) < anticipationMs {
            return .hold(.anticipate)
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
