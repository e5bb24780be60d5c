import NIOCore

/// What the pool machine needs to know of a server connection.
protocol PooledServer: AnyObject {
    /// The event loop the connection lives on (a checkout prefers the client's own loop).
    var loopKey: ObjectIdentifier { get }
    var lastUsed: NIODeadline { get }
    var createdAt: NIODeadline { get }
    /// Counted in the pool's open connections (set when its connect succeeded, cleared once when
    /// it stops counting). Guarded by the pool's lock.
    var countedInPool: Bool { get set }
    /// Whether it may serve another client (`ServerReuse`).
    func reuse(epoch: Int, now: NIODeadline) -> ServerReuse
}

/// The checkout and checkin decisions of one (database, user) pool: idle servers, waiting clients,
/// how many connections are open and opening, PAUSE, RECONNECT's epoch, the connect backoff,
/// `scaling_warm_pool_ratio`'s anticipation. Pure: time comes in as arguments, the servers and
/// waiters are opaque values; `ServerPool` holds it under its lock and runs what it decides
/// (connects, closes, timers, callbacks) outside. The database- and process-wide limits
/// (`max_db_connections`, `max_user_connections`, `max_concurrent_creates`) are shared objects the
/// runner asks between `admit` and `createStarted`.
struct PoolStateMachine<Server: PooledServer, Waiter> {
    struct Settings {
        var poolSize: Int
        var minPoolSize: Int
        /// `server_round_robin`: FIFO idle list (least recently used first) instead of LIFO.
        var roundRobin: Bool
        /// `server_idle_check_timeout` (ms, 0 = off): a server idle longer is checked before use.
        var idleCheckMs: UInt64
        var queryWaitTimeoutMs: UInt64
        var idleTimeoutMs: UInt64
    }

    /// A client waiting for a server: the queue's entry itself (its loop, when it queued, whether the
    /// anticipation queued it), so a hand-over copies one flat value.
    typealias Pending = WaiterQueue<Waiter>.Entry

    let settings: Settings
    var limits: PoolLimits
    private(set) var idle: [Server] = []
    private(set) var opening = 0
    private(set) var open = 0
    private var waiters = WaiterQueue<Waiter>()
    /// Backoff for connects while they fail (PostgreSQL restarting): waiters wait on.
    private(set) var retry = ConnectRetry()
    private var retryTimerArmed = false
    /// One timer per pool ends the anticipation of its waiters.
    private var anticipationTimerArmed = false
    private(set) var paused = false
    private(set) var epoch = 0
    private(set) var closed = false
    // SHOW POOL_SCALING counters.
    private(set) var creates = 0
    private(set) var gateWaits = 0
    private(set) var reserveCreates = 0
    private(set) var anticipationServed = 0
    private(set) var anticipationTimeouts = 0
    /// The anticipation budget, worked out again at most once a second.
    private var anticipationMs: UInt64 = 100
    private var anticipationAt: NIODeadline?

    init(settings: Settings, limits: PoolLimits) {
        self.settings = settings
        self.limits = limits
    }

    var waiterCount: Int { waiters.count }
    var hasWaiters: Bool { !waiters.isEmpty }
    var oldestWaiterSince: NIODeadline? { waiters.oldest?.enqueuedAt }

    // MARK: - Checkout

    enum IdleTake {
        /// No idle server to take (none, or the pool is paused or closed).
        case none
        case use(Server)
        /// Taken out of the idle list because it may not serve again: close it (`forget`), look again.
        case discard(Server)
        /// Idle longer than server_idle_check_timeout: check it (it comes back through `checkin`
        /// when alive), look again.
        case check(Server)
    }

    /// The most recently used idle server on the client's loop, else any (FIFO with
    /// server_round_robin), with the verdict on it.
    mutating func takeIdle(preferring loopKey: ObjectIdentifier, now: NIODeadline) -> IdleTake {
        guard !closed, !paused, let server = popIdle(preferring: loopKey) else { return .none }
        if server.reuse(epoch: epoch, now: now) != .reusable { return .discard(server) }
        if needsLivenessCheck(server, now: now) { return .check(server) }
        return .use(server)
    }

    @inline(__always)
    private func needsLivenessCheck(_ server: Server, now: NIODeadline) -> Bool {
        let limit = settings.idleCheckMs
        return limit > 0 && (now - server.lastUsed).nanoseconds > Int64(clamping: limit) * 1_000_000
    }

    private mutating func popIdle(preferring loopKey: ObjectIdentifier) -> Server? {
        if idle.isEmpty { return nil }
        if settings.roundRobin {
            // FIFO: the least recently used server first. A checkin puts a server at the front, so
            // the least recently used is at the back. (Before the machine, this took from the front:
            // server_round_robin handed out the most recently used server, like the LIFO list.)
            if let i = idle.lastIndex(where: { $0.loopKey == loopKey }) { return idle.remove(at: i) }
            return idle.removeLast()
        }
        // LIFO: the most recently used server on the same event loop, else any.
        var i = idle.count - 1
        while i >= 0 {
            if idle[i].loopKey == loopKey { return idle.remove(at: i) }
            i -= 1
        }
        return idle.removeLast()
    }

    // MARK: - Opening connections

    enum Admission: Equatable {
        /// The pool's own counts allow a connect (`reserve`: beyond pool_size); the runner asks the
        /// shared limits, then says `createStarted` or `createRefusedByShared`.
        case mayOpen(reserve: Bool)
        /// Not now: full, paused, closed, backing off, or too many connects in flight.
        case hold
        /// Wait this long (ms) for a returned connection first (`scaling_warm_pool_ratio`).
        case anticipate(UInt64)
    }

    /// Whether one more connect may start now by this pool's own counts (`CreateGate`). `waitedMs`:
    /// how long the client it is for has waited (nil for a new checkout or min_pool_size).
    /// `anticipate` is false for min_pool_size connects. `xactP99Micros` and `jitter` feed the
    /// anticipation budget; they are asked for only when it is recomputed (once a second).
    mutating func admit(now: NIODeadline, waitedMs: UInt64?, anticipate: Bool,
                        xactP99Micros: () -> Int, jitter: () -> Double) -> Admission {
        guard !paused, !closed, retry.mayAttempt(now: now, opening: opening) else { return .hold }
        let budget = anticipate ? anticipationBudget(now: now, xactP99Micros: xactP99Micros, jitter: jitter) : 0
        switch CreateGate.decide(open: open, opening: opening, poolSize: settings.poolSize, limits: limits,
                                 waitedMs: waitedMs, anticipationMs: budget) {
        case .hold(.full):
            return .hold
        case .hold(.burst):
            gateWaits += 1
            return .hold
        case .hold(.anticipate):
            return .anticipate(budget)
        case .open(let reserve):
            return .mayOpen(reserve: reserve)
        }
    }

    /// The anticipation budget (ms), recomputed at most once a second from the transaction times.
    private mutating func anticipationBudget(now: NIODeadline, xactP99Micros: () -> Int,
                                             jitter: () -> Double) -> UInt64 {
        if limits.warmRatio >= 100 { return 0 }
        if let at = anticipationAt, now - at < .seconds(1) { return anticipationMs }
        let p99 = xactP99Micros()
        anticipationMs = Anticipation.budgetMs(xactP99Micros: p99 > 0 ? p99 : nil,
                                               queryWaitTimeoutMs: limits.queryWaitTimeoutMs, jitter: jitter())
        anticipationAt = now
        return anticipationMs
    }

    /// The shared limits agreed too: the connect is under way.
    mutating func createStarted(reserve: Bool) {
        opening += 1
        creates += 1
        if reserve { reserveCreates += 1 }
    }

    /// A shared limit said no (`max_concurrent_creates` counts as a gate wait, as `scaling_max_parallel_creates` does).
    mutating func createRefusedByShared(countsAsGateWait: Bool) {
        if countsAsGateWait { gateWaits += 1 }
    }

    /// A connect succeeded: the server counts as open.
    mutating func connected(_ server: Server) {
        opening -= 1
        open += 1
        server.countedInPool = true
        retry.attemptSucceeded()
    }

    /// A connect for a waiter failed: whether the waiter waits on for a retry (`ConnectRetry`).
    mutating func connectFailed(_ failure: ConnectRetry.Failure, startedAt: NIODeadline, now: NIODeadline,
                                waiterDeadline: NIODeadline, jitter: Double) -> ConnectRetry.Verdict {
        opening -= 1
        let verdict = retry.attemptFailed(failure, startedAt: startedAt, now: now, waiterDeadline: waiterDeadline,
                                          jitter: jitter)
        switch verdict {
        case .retry: return closed ? .fail : verdict
        case .fail: return .fail
        }
    }

    /// A min_pool_size connect ended (its outcome, when it succeeded, comes through `connected`).
    mutating func replenishConnectEnded(_ server: Server?) {
        if let server {
            connected(server)
        } else {
            opening -= 1
        }
    }

    /// Whether a min_pool_size connect should start (then `admit` without anticipation decides).
    var wantsReplenish: Bool { !retry.isFailing && open + opening < settings.minPoolSize }

    // MARK: - Waiting

    mutating func enqueue(_ waiter: Waiter, loopKey: ObjectIdentifier, now: NIODeadline, anticipating: Bool) {
        waiters.append(Pending(loopKey: loopKey, enqueuedAt: now, element: waiter, anticipating: anticipating))
    }

    /// A waiter whose connect failed and may be retried goes back to the front.
    mutating func requeueFront(_ waiter: Waiter, loopKey: ObjectIdentifier, enqueuedAt: NIODeadline) {
        waiters.prepend(Pending(loopKey: loopKey, enqueuedAt: enqueuedAt, element: waiter))
    }

    /// The oldest waiter, to open a connection for (`serveWaitersWithNewConnections`); put it back
    /// with `putBack` when nothing may be opened for it.
    mutating func takeOldestWaiter() -> Pending? {
        guard !paused, !closed else { return nil }
        return waiters.popOldest()
    }

    mutating func putBack(_ p: Pending) {
        waiters.prepend(p)
    }

    /// A connect started for `p`, which had been anticipating: its budget ran out.
    mutating func servedByNewConnection(_ p: Pending) {
        if p.anticipating { anticipationTimeouts += 1 }
    }

    /// The waiters past query_wait_timeout, removed, and the last connect error if connects fail.
    mutating func expireWaiters(now: NIODeadline) -> (expired: [Pending], lastConnectError: String?) {
        guard !waiters.isEmpty else { return ([], nil) }
        let limit = now - .milliseconds(Int64(clamping: settings.queryWaitTimeoutMs))
        return (waiters.expire(enqueuedAtOrBefore: limit), retry.lastReason)
    }

    /// While connects fail and clients wait: when to try again, if no timer is set for it yet.
    mutating func armRetry(now: NIODeadline) -> NIODeadline? {
        guard retry.isFailing, !retryTimerArmed, !waiters.isEmpty, !closed else { return nil }
        retryTimerArmed = true
        return retry.notBefore ?? now
    }

    enum RetryDue: Equatable {
        /// Look again then.
        case later(NIODeadline)
        /// Open connections for the waiters now (also when connects work again or nobody waits:
        /// then that finds nothing to do).
        case serveWaiters
    }

    /// The retry timer fired.
    mutating func retryDue(now: NIODeadline) -> RetryDue {
        retryTimerArmed = false
        guard retry.isFailing, !waiters.isEmpty, !closed else { return .serveWaiters }
        if let notBefore = retry.notBefore, now < notBefore {
            retryTimerArmed = true
            return .later(notBefore)
        }
        if opening > 0 {
            // An attempt is still under way (a retry's outcome re-arms this; a pre-warming
            // connect's does not): look again shortly.
            retryTimerArmed = true
            return .later(now + retry.initialDelay)
        }
        return .serveWaiters
    }

    /// Whether an anticipation timer should be set now (one per pool).
    mutating func armAnticipationTimer() -> Bool {
        if anticipationTimerArmed { return false }
        anticipationTimerArmed = true
        return true
    }

    /// The anticipation timer fired (a new one may be armed from now on).
    mutating func anticipationTimerDone() { anticipationTimerArmed = false }

    /// After the fired timer's waiters were served: the next budget if clients still wait.
    mutating func anticipationBudgetIfWaiting(now: NIODeadline, xactP99Micros: () -> Int,
                                              jitter: () -> Double) -> UInt64? {
        waiters.isEmpty || closed ? nil : anticipationBudget(now: now, xactP99Micros: xactP99Micros, jitter: jitter)
    }

    // MARK: - Checkin

    enum Checkin {
        /// It may not serve again (or the pool closed): close it (`forget` frees its slot).
        case discard
        /// Straight to the client that waited longest (on the server's loop when one does there).
        case handTo(Pending)
        /// Back in the idle list.
        case idled
    }

    /// A client let go of `server`, clean. The one place that decides where a returned server
    /// goes (the client side's `releaseVerdict` decided it may come back at all).
    mutating func checkin(_ server: Server, now: NIODeadline) -> Checkin {
        guard !closed, server.reuse(epoch: epoch, now: now) == .reusable else { return .discard }
        // (`isEmpty` first: with no waiter — the common checkin — the generic queue is not touched.)
        if !paused, !waiters.isEmpty, let p = waiters.pop(preferring: server.loopKey, now: now) {
            if p.anticipating { anticipationServed += 1 }
            return .handTo(p)
        }
        if settings.roundRobin { idle.insert(server, at: 0) } else { idle.append(server) }
        return .idled
    }

    /// Takes `server` out of the idle list if there and stops counting it (once); true if it counted.
    mutating func forget(_ server: Server) -> Bool {
        if let i = idle.firstIndex(where: { $0 === server }) { idle.remove(at: i) }
        return uncount(server)
    }

    private mutating func uncount(_ s: Server) -> Bool {
        guard s.countedInPool else { return false }
        s.countedInPool = false
        open -= 1
        return true
    }

    // MARK: - Eviction and maintenance

    private static func isOlder(_ s: Server, than ms: UInt64, now: NIODeadline) -> Bool {
        (now - s.createdAt).nanoseconds >= Int64(clamping: ms) * 1_000_000
    }

    /// Idle servers at least `minAgeMs` old (what the coordinator may evict).
    func idleCount(olderThanMs minAgeMs: UInt64, now: NIODeadline) -> Int {
        idle.reduce(0) { $0 + (Self.isOlder($1, than: minAgeMs, now: now) ? 1 : 0) }
    }

    /// The least recently used idle server at least `minAgeMs` old, removed (and whether it counted).
    mutating func evictOneIdle(olderThanMs minAgeMs: UInt64, now: NIODeadline) -> (Server, counted: Bool)? {
        let old = { (s: Server) in Self.isOlder(s, than: minAgeMs, now: now) }
        // Least recently used first: the front of the LIFO list, the back of the FIFO one.
        guard let i = settings.roundRobin ? idle.lastIndex(where: old) : idle.firstIndex(where: old) else { return nil }
        let s = idle.remove(at: i)
        return (s, uncount(s))
    }

    /// The idle servers a maintenance cycle may close: past server_lifetime (or RECONNECT), idle past
    /// idle_timeout above min_pool_size, reserve connections no client waits for.
    func retainCandidates(now: NIODeadline) -> [RetainPlanner.Candidate<Server>] {
        guard !idle.isEmpty else { return [] }
        var out: [RetainPlanner.Candidate<Server>] = []
        func add(_ s: Server, _ reason: RetainPlanner.Reason) {
            out.append(.init(item: s, id: ObjectIdentifier(s), createdAt: s.createdAt, reason: reason))
        }
        let idleLimit = settings.idleTimeoutMs
        var idleRoom = max(0, open - settings.minPoolSize)
        var reserveRoom = waiters.isEmpty ? max(0, open - settings.poolSize) : 0
        for s in idle.sorted(by: { $0.createdAt < $1.createdAt }) {
            if s.reuse(epoch: epoch, now: now) != .reusable {
                add(s, .lifetime)
                continue
            }
            let idleFor = UInt64(max(0, (now - s.lastUsed).nanoseconds / 1_000_000))
            if idleLimit > 0 && idleFor > idleLimit && idleRoom > 0 {
                idleRoom -= 1
                add(s, .idle)
            } else if reserveRoom > 0 {
                reserveRoom -= 1
                add(s, .reserve)
            }
        }
        return out
    }

    /// Removes those of `servers` still idle here; returns them and how many counted.
    mutating func takeIdle(_ servers: [Server]) -> (closing: [Server], uncounted: Int) {
        var out: [Server] = []
        var uncounted = 0
        for s in servers {
            guard let i = idle.firstIndex(where: { $0 === s }) else { continue }
            idle.remove(at: i)
            if uncount(s) { uncounted += 1 }
            out.append(s)
        }
        return (out, uncounted)
    }

    // MARK: - PAUSE, RESUME, RECONNECT, close

    mutating func pause() { paused = true }

    /// RESUME: waiters get idle servers (newest first) as far as they go.
    mutating func resume() -> [(Pending, Server)] {
        paused = false
        var ready: [(Pending, Server)] = []
        while !idle.isEmpty, let p = waiters.popOldest() {
            ready.append((p, idle.removeLast()))
        }
        return ready
    }

    /// RECONNECT: a new epoch (servers in use are closed when they come back); the idle ones,
    /// removed, are returned to close.
    mutating func reconnect() -> (drained: [Server], uncounted: Int) {
        epoch += 1
        return drainIdle()
    }

    /// The pool closes (shutdown, or replaced at RELOAD): idle servers to close, waiters to settle.
    mutating func close() -> (drained: [Server], uncounted: Int, waiters: [Pending]) {
        closed = true
        let (drained, uncounted) = drainIdle()
        return (drained, uncounted, waiters.removeAll())
    }

    private mutating func drainIdle() -> (drained: [Server], uncounted: Int) {
        let d = idle
        idle.removeAll()
        var uncounted = 0
        for s in d where uncount(s) { uncounted += 1 }
        return (d, uncounted)
    }
}

extension WaiterQueue.Entry {
    /// The waiting client (the pool's name for the queue's element).
    var waiter: Element { element }
}
