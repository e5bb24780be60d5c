import NIOConcurrencyHelpers
import Logging
import NIOCore

/// Why a client could not get a server connection.
public enum PoolError: Error, CustomStringConvertible {
    /// query_wait_timeout passed; `limit` names the limit that kept the client waiting, if one did
    /// (`max_user_connections`, `max_db_connections`).
    case queryWaitTimeout(limit: String?)
    case connectFailed(String)
    case serverRejected(ServerError)
    case closed

    public var description: String {
        switch self {
        case .queryWaitTimeout(let limit):
            let base = "Timeout occurred while waiting free connection from pool (query_wait_timeout)"
            return limit.map { base + ": " + $0 } ?? base
        case .connectFailed(let why):
            return "Error occurred while creating a new connection to postgresql: \(why)"
        case .serverRejected(let e):
            return "PostgreSQL rejected the connection: \(e.message)"
        case .closed:
            return "Pool has been closed"
        }
    }
}

/// The server connections of one (database, user) pair.
///
/// Idle servers, waiters and counters are guarded by one lock; it is taken once per checkout and
/// once per checkin, never per message. Callbacks always run on the requester's event loop.
public final class ServerPool {
    public let settings: PoolSettings
    let connector: ServerConnector
    private let lock = NIOLock()

    private var idle: [ServerConnection] = []
    private var opening = 0
    private var open = 0
    private var waiters = WaiterQueue<Waiter>()
    /// Backoff for connects while they fail (PostgreSQL restarting): waiters wait on.
    private var retry = ConnectRetry()
    private var retryTimerArmed = false
    /// One timer per pool ends the anticipation of its waiters (not one per waiting client: under
    /// load most checkouts anticipate, and a scheduled task each cost more than the checkout).
    private var anticipationTimerArmed = false
    private var _paused = false
    private var _epoch = 0
    private var _closed = false
    private var _scramClientKey: [UInt8]?
    private var _clientScramKeys: ScramServer.Keys??
    private var _serverParameters: ParameterStatusBlock?
    private var _validatedParameters: [String: ValidatedParameters] = [:]
    private var _parameterSetIDs: [String: Int] = [:]
    /// Parameter-set ids are unique in the process (a client keeps its id when RELOAD moves it to
    /// a successor pool).
    private static let idLock = NIOLock()
    nonisolated(unsafe) private static var lastParameterSetID = 0
    /// Set when RELOAD replaced this pool: checkouts go there instead.
    private var _successor: ServerPool?
    /// Reserve and connect-parallelism knobs (RELOAD updates them in place: `setLimits`).
    private var limits: PoolLimits
    /// Event loops for min_pool_size connects (given by the maintenance cycle; used by RESUME too).
    private var replenishLoops: [EventLoop] = []
    /// SHOW POOL_SCALING counters (slow path only).
    private var _creates = 0
    private var _gateWaits = 0
    private var _reserveCreates = 0
    private var _anticipationServed = 0
    private var _anticipationTimeouts = 0
    /// The anticipation budget, worked out again at most once a second (`Anticipation.budgetMs`).
    private var anticipationMs: UInt64 = 100
    private var anticipationAt: NIODeadline?
    public let stats = PoolStats()
    /// Prepared statements shared by the pool's clients (transaction mode).
    public let statementCache: PreparedStatementCache

    private struct Waiter {
        var loop: EventLoop
        var enqueuedAt: NIODeadline
        var callback: (Result<ServerConnection, PoolError>) -> Void
        /// Queued by the anticipation (above the warm share) rather than by a limit.
        var anticipating = false
    }

    /// The SCRAM verifier clients of this pool authenticate against (with its HMACs keyed), worked
    /// out once: parsed from a stored `SCRAM-SHA-256$…`, or derived from a plaintext password. Nil
    /// for an MD5 hash, an empty password, or a stored verifier that does not parse.
    var clientScramKeys: ScramServer.Keys? {
        lock.withLock {
            if let known = _clientScramKeys { return known }
            let stored = settings.clientPassword
            let keys = stored.isEmpty || MD5Password.isHash(stored)
                ? nil : (try? ScramVerifier.forConfiguredPassword(stored)).map(ScramServer.Keys.init)
            _clientScramKeys = .some(keys)
            return keys
        }
    }

    /// Told when a client starts waiting, so that waiter expiry runs only while someone waits.
    let waiterAlarm: WaiterAlarm?
    /// The database's `max_db_connections` permits, when it has a limit.
    let coordinator: DatabaseCoordinator?
    /// `max_concurrent_creates`: connects in flight across all pools.
    let createSlots: SharedPermits?
    /// `max_user_connections`: server connections of this pool's user name across all databases.
    let userBudget: SharedPermits?

    init(settings: PoolSettings, connector: ServerConnector, waiterAlarm: WaiterAlarm? = nil,
         coordinator: DatabaseCoordinator? = nil, limits: PoolLimits = PoolLimits(),
         createSlots: SharedPermits? = nil, userBudget: SharedPermits? = nil) {
        self.settings = settings
        self.connector = connector
        self.waiterAlarm = waiterAlarm
        self.coordinator = coordinator
        self.limits = limits
        self.createSlots = createSlots
        self.userBudget = userBudget
        self.statementCache = PreparedStatementCache(capacity: settings.preparedStatementsCacheSize,
                                                     counter: .shared)
    }

    // MARK: - Shared state accessors

    public var paused: Bool { lock.withLock { _paused } }
    public var epoch: Int { lock.withLock { _epoch } }

    /// ClientKey captured from the first successful client SCRAM login (passthrough auth).
    public var scramClientKey: [UInt8]? {
        get { lock.withLock { _scramClientKey } }
        set { lock.withLock { _scramClientKey = newValue } }
    }

    /// ParameterStatus values captured from the first server login, sent to every client at login.
    public var serverParameters: ParameterStatusBlock? {
        get { lock.withLock { _serverParameters } }
        set { lock.withLock { if _serverParameters == nil { _serverParameters = newValue } } }
    }

    /// What a server said of a set of client startup parameters: accepted (with the values it
    /// reported, in its own spelling) or refused (its error, which the client gets as FATAL).
    enum ValidatedParameters {
        case accepted(reported: [String: String])
        case refused(ServerError)
    }

    /// Startup parameter sets already tried on a server (`SessionParameters.cacheKey`), so that
    /// clients sending the same ones log in without a round trip. Bounded: emptied at 1,024.
    func validatedParameters(_ key: String) -> ValidatedParameters? {
        lock.withLock { _validatedParameters[key] }
    }

    func rememberParameters(_ key: String, _ verdict: ValidatedParameters) {
        lock.withLock {
            if _validatedParameters.count >= 1024 { _validatedParameters.removeAll() }
            _validatedParameters[key] = verdict
        }
    }

    /// One id per distinct set of client parameter values (`SessionParameters.cacheKey`): a server
    /// remembers the id it was last made to match, so a client with the same values needs no
    /// comparison at checkout. Bounded: forgotten at 4,096 sets (new ids are then handed out).
    func parameterSetID(_ key: String) -> Int {
        lock.withLock {
            if let id = _parameterSetIDs[key] { return id }
            if _parameterSetIDs.count >= 4096 { _parameterSetIDs.removeAll() }
            let id = Self.idLock.withLock {
                Self.lastParameterSetID += 1
                return Self.lastParameterSetID
            }
            _parameterSetIDs[key] = id
            return id
        }
    }

    public struct Counts {
        public var idle: Int
        public var active: Int
        public var opening: Int
        public var waiting: Int
        public var maxWaitMicros: UInt64
    }

    public func counts(now: NIODeadline = .now()) -> Counts {
        lock.withLock {
            let waiting = waiters.count
            var maxWait: UInt64 = 0
            if let oldest = waiters.oldest {
                maxWait = UInt64(max(0, (now - oldest.enqueuedAt).nanoseconds / 1000))
            }
            return Counts(idle: idle.count, active: open - idle.count, opening: opening, waiting: waiting,
                          maxWaitMicros: maxWait)
        }
    }

    public func idleServers() -> [ServerConnection] { lock.withLock { idle } }

    // MARK: - Checkout

    /// The hot path of checkout: an idle, reusable server right now, or nil (then call `acquire`).
    /// No closure, no allocation.
    @inline(__always)
    public func tryAcquireIdle(on loop: EventLoop, now: NIODeadline) -> ServerConnection? {
        while true {
            var epochNow = 0
            let server: ServerConnection? = lock.withLock {
                epochNow = _epoch
                guard !_closed, !_paused else { return nil }
                return popIdleLocked(preferring: loop)
            }
            guard let server else { return nil }
            if !server.isReusable(epoch: epochNow, now: now) {
                discard(server)
            } else if needsLivenessCheck(server, now: now) {
                checkThenRelease(server)
            } else {
                return server
            }
        }
    }

    private static let logger = Logger(label: "pg_doorman")

    /// True when `server` has been idle for longer than `server_idle_check_timeout`.
    @inline(__always)
    private func needsLivenessCheck(_ server: ServerConnection, now: NIODeadline) -> Bool {
        let limit = settings.serverIdleCheckMs
        return limit > 0 && (now - server.lastUsed).nanoseconds > Int64(limit) * 1_000_000
    }

    /// Checks a server taken from the idle list before anyone uses it: a live one comes back
    /// through `release` (to the oldest waiter, else idle again as just used), a dead one is
    /// discarded, which lets waiters open a replacement. The client that found it stale goes on
    /// to another idle server or waits.
    private func checkThenRelease(_ server: ServerConnection) {
        let timeout = TimeAmount.milliseconds(Int64(max(1, settings.connectTimeoutMs)))
        let query = settings.checkQuery
        let run = { [self] in
            server.checkAlive(query: query, timeout: timeout) { [self] alive in
                if alive {
                    release(server)
                } else {
                    Self.logger.warning("server connection \(server.serverAddress) pid \(server.processID) failed its liveness check after \(settings.serverIdleCheckMs) ms idle; replaced")
                    discard(server)
                }
            }
        }
        if server.loop.inEventLoop { run() } else { server.loop.execute(run) }
    }

    /// Gets a server for a client living on `loop`; `callback` runs on `loop`.
    public func acquire(on loop: EventLoop, _ callback: @escaping (Result<ServerConnection, PoolError>) -> Void) {
        if let next = successor {
            return next.acquire(on: loop, callback)
        }
        enum Step { case use(ServerConnection), create, wait, closed }
        let now = NIODeadline.now()
        var step: Step = .wait
        var currentEpoch = 0
        var blocked: SharedGate?
        var anticipating: UInt64?
        var retryAt: NIODeadline?
        lock.withLock {
            currentEpoch = _epoch
            if _closed {
                step = .closed
            } else if !_paused, let server = popIdleLocked(preferring: loop) {
                step = .use(server)
            } else if admitCreateLocked(now: now, waitedMs: nil, blocked: &blocked, anticipate: true,
                                                anticipating: &anticipating) {
                step = .create
            } else {
                waiters.append(loopKey: ObjectIdentifier(loop), enqueuedAt: now,
                               Waiter(loop: loop, enqueuedAt: now, callback: callback,
                                      anticipating: anticipating != nil))
                step = .wait
                retryAt = armRetryLocked()
            }
        }
        if let retryAt { scheduleRetry(at: retryAt, on: loop) }
        if let anticipating { armAnticipationTimer(in: anticipating, on: loop) }
        switch step {
        case .closed:
            Self.run(on: loop) { callback(.failure(.closed)) }
        case .use(let server):
            if !server.isReusable(epoch: currentEpoch, now: now) {
                discard(server)
                acquire(on: loop, callback)
            } else if needsLivenessCheck(server, now: now) {
                checkThenRelease(server)
                acquire(on: loop, callback)
            } else if loop.inEventLoop {
                callback(.success(server))
            } else {
                loop.execute { callback(.success(server)) }
            }
        case .create:
            create(on: loop, enqueuedAt: now, callback)
        case .wait:
            // Expired by `expireWaiters`, which the runtime calls while the alarm is armed.
            waiterAlarm?.waiterQueued()
            noteBlocked(blocked)
        }
    }

    /// The shared limits a connect can wait for.
    private enum SharedGate { case createSlots, user, database }

    /// Whether one more connect may start now: the pool's own counts (`CreateGate`: pool_size, the
    /// reserve, scaling_max_parallel_creates), then `max_concurrent_creates`, `max_user_connections`
    /// and `max_db_connections`, whose permits it takes. `blocked` names the shared limit that said
    /// no. Called under `lock`; counts the connect as opening when it says yes.
    /// No connection came back within the anticipation budget: open one for the waiters whose
    /// budget has passed, then look again while any client still waits. At most one timer per pool
    /// (a waiter that came after it was armed is served by the next one, or by the waiter sweep).
    private func armAnticipationTimer(in ms: UInt64, on loop: EventLoop) {
        let arm: Bool = lock.withLock {
            if anticipationTimerArmed { return false }
            anticipationTimerArmed = true
            return true
        }
        guard arm else { return }
        loop.scheduleTask(in: .milliseconds(Int64(ms))) { [self] in
            lock.withLock { anticipationTimerArmed = false }
            serveWaitersWithNewConnections()
            let again: UInt64? = lock.withLock {
                waiters.isEmpty || _closed ? nil : anticipationBudgetLocked(now: .now())
            }
            if let again { armAnticipationTimer(in: max(1, again), on: loop) }
        }
    }

    /// With `anticipate` (not for min_pool_size connects), sets `anticipating` to the budget when the
    /// client should first wait that long for a returned connection (`scaling_warm_pool_ratio`).
    private func admitCreateLocked(now: NIODeadline, waitedMs: UInt64?, blocked: inout SharedGate?,
                                   anticipate: Bool, anticipating: inout UInt64?) -> Bool {
        guard !_paused, !_closed, retry.mayAttempt(now: now, opening: opening) else { return false }
        let budget = anticipate ? anticipationBudgetLocked(now: now) : 0
        let reserve: Bool
        switch CreateGate.decide(open: open, opening: opening, poolSize: settings.poolSize, limits: limits,
                                 waitedMs: waitedMs, anticipationMs: budget) {
        case .hold(.full):
            return false
        case .hold(.burst):
            _gateWaits += 1
            return false
        case .hold(.anticipate):
            anticipating = budget
            return false
        case .open(let r):
            reserve = r
        }
        if let createSlots, !createSlots.tryTake() {
            _gateWaits += 1
            blocked = .createSlots
            return false
        }
        if let userBudget, !userBudget.tryTake() {
            createSlots?.giveWithoutWaking()
            blocked = .user
            return false
        }
        if let coordinator, !coordinator.tryAcquire(
            for: self, reserveAllowed: CreateGate.reserveAllowed(limits: limits, waitedMs: waitedMs)) {
            userBudget?.giveWithoutWaking()
            createSlots?.giveWithoutWaking()
            blocked = .database
            return false
        }
        opening += 1
        _creates += 1
        if reserve { _reserveCreates += 1 }
        return true
    }

    /// The anticipation budget (ms), recomputed at most once a second from the pool's transaction times.
    private func anticipationBudgetLocked(now: NIODeadline) -> UInt64 {
        if limits.warmRatio >= 100 { return 0 }
        if let at = anticipationAt, now - at < .seconds(1) { return anticipationMs }
        let p99 = stats.xactHistogram.percentile(0.99)
        anticipationMs = Anticipation.budgetMs(xactP99Micros: p99 > 0 ? p99 : nil,
                                               queryWaitTimeoutMs: limits.queryWaitTimeoutMs,
                                               jitter: Double.random(in: 0..<1))
        anticipationAt = now
        return anticipationMs
    }

    /// Registers with the shared limit that kept a connect from starting, to be woken when it frees.
    private func noteBlocked(_ gate: SharedGate?) {
        guard let gate else { return }
        switch gate {
        case .createSlots: createSlots?.want(self)
        case .user: userBudget?.want(self)
        case .database: coordinator?.want(self)
        }
    }

    /// Gives back the per-connection permits (user, database) of `count` connections that stopped
    /// counting in this pool; those waiting for them may open connections.
    private func returnPermits(_ count: Int) {
        guard count > 0 else { return }
        userBudget?.give(count)
        coordinator?.release(count, from: self)
    }

    /// Starts a connect; its `max_concurrent_creates` slot (taken by `admitCreateLocked`) is given
    /// back when it ends.
    private func startConnect(on loop: EventLoop) -> EventLoopFuture<ServerConnection> {
        let future = connector.connect(pool: self, on: loop)
        if let createSlots { future.whenComplete { _ in createSlots.give() } }
        return future
    }

    /// What a client that timed out was waiting for, when a limit held it back.
    private func limitText() -> String? {
        if let userBudget, userBudget.isFull {
            return "max_user_connections (\(userBudget.limit)) reached for user '\(settings.user)'"
        }
        return coordinator?.limitText(user: settings.user)
    }

    /// RELOAD changed reserve_pool_size, reserve_pool_timeout or scaling_max_parallel_creates (the
    /// runtime serves waiters afterwards, outside its lock).
    func setLimits(_ new: PoolLimits) { lock.withLock { limits = new } }

    var currentLimits: PoolLimits { lock.withLock { limits } }

    public struct ScalingCounters {
        public var creates: Int, gateWaits: Int, reserveCreates: Int
        /// Anticipating clients served by a returned connection / given a new one after the budget.
        public var anticipationServed: Int, anticipationTimeouts: Int
    }

    public var scalingCounters: ScalingCounters {
        lock.withLock {
            ScalingCounters(creates: _creates, gateWaits: _gateWaits, reserveCreates: _reserveCreates,
                            anticipationServed: _anticipationServed, anticipationTimeouts: _anticipationTimeouts)
        }
    }

    private func popIdleLocked(preferring loop: EventLoop) -> ServerConnection? {
        if idle.isEmpty { return nil }
        if settings.serverRoundRobin {
            // FIFO: the least recently used server first.
            if let i = idle.firstIndex(where: { $0.loop === loop }) { return idle.remove(at: i) }
            return idle.removeFirst()
        }
        // LIFO: the most recently used server on the same event loop, else any.
        var i = idle.count - 1
        while i >= 0 {
            if idle[i].loop === loop { return idle.remove(at: i) }
            i -= 1
        }
        return idle.removeLast()
    }

    private func popWaiterLocked() -> Waiter? {
        waiters.popOldest()?.element
    }

    /// Whether any client waits for a server of this pool.
    var hasWaiters: Bool { lock.withLock { !waiters.isEmpty } }

    /// Fails every waiter that has waited longer than query_wait_timeout (with the last connect
    /// error when connects have been failing meanwhile).
    func expireWaiters(now: NIODeadline) {
        let limit = now - .milliseconds(Int64(settings.queryWaitTimeoutMs))
        var lastReason: String?
        let expired: [Waiter] = lock.withLock {
            guard !waiters.isEmpty else { return [] }
            lastReason = retry.lastReason
            return waiters.expire(enqueuedAtOrBefore: limit)
        }
        if !expired.isEmpty {
            let error: PoolError = lastReason.map { .connectFailed($0) } ?? .queryWaitTimeout(limit: limitText())
            for w in expired {
                stats.recordWaitTimeout()
                Self.run(on: w.loop) { w.callback(.failure(error)) }
            }
        }
        // The clients still waiting may now be owed a connection: a reserve one (reserve_pool_timeout
        // passed), one a coordinator eviction can make room for (min_connection_lifetime passed), or
        // one a shared limit freed without waking this pool.
        if hasWaiters { serveWaitersWithNewConnections() }
    }

    /// While connects fail and clients wait, the time of the next attempt if no timer is set for
    /// it yet (the caller schedules `retryDue`). Called under `lock`.
    private func armRetryLocked() -> NIODeadline? {
        guard retry.isFailing, !retryTimerArmed, !waiters.isEmpty, !_closed else { return nil }
        retryTimerArmed = true
        return retry.notBefore ?? .now()
    }

    private func scheduleRetry(at deadline: NIODeadline, on loop: EventLoop) {
        loop.scheduleTask(deadline: deadline) { [self] in retryDue(on: loop) }
    }

    /// The backoff has (probably) passed: open a connection for the oldest waiter, or wait longer
    /// when a later failure pushed the next attempt back.
    private func retryDue(on loop: EventLoop) {
        let later: NIODeadline? = lock.withLock {
            retryTimerArmed = false
            guard retry.isFailing, !waiters.isEmpty, !_closed else { return nil }
            let now = NIODeadline.now()
            if let notBefore = retry.notBefore, now < notBefore {
                retryTimerArmed = true
                return notBefore
            }
            if opening > 0 {
                // An attempt is still under way (a retry's outcome re-arms this; a pre-warming
                // connect's does not): look again shortly.
                retryTimerArmed = true
                return now + retry.initialDelay
            }
            return nil
        }
        if let later { return scheduleRetry(at: later, on: loop) }
        serveWaitersWithNewConnections()
    }

    private func create(on loop: EventLoop, enqueuedAt: NIODeadline,
                        _ callback: @escaping (Result<ServerConnection, PoolError>) -> Void) {
        let startedAt = NIODeadline.now()
        startConnect(on: loop).whenComplete { [self] result in
            switch result {
            case .success(let server):
                lock.withLock {
                    opening -= 1
                    open += 1
                    server.countedInPool = true
                    retry.attemptSucceeded()
                }
                stats.recordWait(micros: UInt64(max(0, (NIODeadline.now() - enqueuedAt).nanoseconds / 1000)))
                Self.run(on: loop) { callback(.success(server)) }
                // A connect slot is free (and if PostgreSQL was down, it is back): open servers for
                // the others that waited meanwhile.
                serveWaitersWithNewConnections()
            case .failure(let error):
                connectFailed(error, startedAt: startedAt, on: loop, enqueuedAt: enqueuedAt, callback)
            }
        }
    }

    /// A connect for a waiter failed: the waiter waits on for a retry when the failure may pass
    /// and its query_wait_timeout allows (`ConnectRetry`), else gets the error.
    private func connectFailed(_ error: Error, startedAt: NIODeadline, on loop: EventLoop, enqueuedAt: NIODeadline,
                               _ callback: @escaping (Result<ServerConnection, PoolError>) -> Void) {
        let now = NIODeadline.now()
        let failure = ConnectRetry.classify(error)
        let waitDeadline = enqueuedAt + .milliseconds(Int64(settings.queryWaitTimeoutMs))
        var requeued = false
        var retryAt: NIODeadline?
        lock.withLock {
            opening -= 1
            let verdict = retry.attemptFailed(failure, startedAt: startedAt, now: now, waiterDeadline: waitDeadline,
                                              jitter: Double.random(in: 0..<1))
            switch verdict {
            case .retry:
                guard !_closed else { break }
                waiters.prepend(loopKey: ObjectIdentifier(loop), enqueuedAt: enqueuedAt,
                                Waiter(loop: loop, enqueuedAt: enqueuedAt, callback: callback))
                requeued = true
                retryAt = armRetryLocked()
            case .fail:
                break
            }
        }
        returnPermits(1)
        if case .transient(let reason) = failure {
            Self.logger.info("connect to \(settings.serverHost):\(settings.serverPort) for \(settings.serverUser)@\(settings.serverDatabase) failed: \(reason)\(requeued ? "; retrying while clients wait" : "")")
        }
        if requeued {
            waiterAlarm?.waiterQueued()
            if let retryAt { scheduleRetry(at: retryAt, on: loop) }
            return
        }
        let poolError: PoolError
        if let e = error as? ServerError { poolError = .serverRejected(e) }
        else if let e = error as? PoolError { poolError = e }
        else { poolError = .connectFailed("\(error)") }
        Self.run(on: loop) { callback(.failure(poolError)) }
        // A failed attempt frees a slot; a waiter may try again.
        serveWaitersWithNewConnections()
    }

    // MARK: - Checkin

    /// Returns a clean server to the pool (or hands it to the oldest waiter).
    public func release(_ server: ServerConnection, now: NIODeadline = .now()) {
        server.lastUsed = now
        if let coordinator, coordinator.shouldYield(self, ownClientsWaiting: hasWaiters) {
            return discard(server)  // its permit goes to another user pool of the database
        }
        var reusable = true
        let waiter: Waiter? = lock.withLock {
            guard !_closed, server.isReusable(epoch: _epoch, now: now) else {
                reusable = false
                return nil
            }
            if !_paused, let w = waiters.pop(preferring: ObjectIdentifier(server.loop), now: now)?.element {
                if w.anticipating { _anticipationServed += 1 }
                return w
            }
            if settings.serverRoundRobin { idle.insert(server, at: 0) } else { idle.append(server) }
            return nil
        }
        if !reusable {
            discard(server)
            return
        }
        if let waiter {
            stats.recordWait(micros: UInt64(max(0, (now - waiter.enqueuedAt).nanoseconds / 1000)))
            // Direct handoff; on the same loop without a closure allocation.
            if waiter.loop.inEventLoop {
                waiter.callback(.success(server))
            } else {
                waiter.loop.execute { waiter.callback(.success(server)) }
            }
        }
    }

    /// Closes a server that must not be reused and frees its slot.
    public func discard(_ server: ServerConnection) {
        forget(server)
        server.close()
    }

    /// Called by a server that closed by itself (network error, backend terminated).
    func serverDidClose(_ server: ServerConnection) {
        forget(server)
    }

    /// Removes a server from the idle list and frees its slot (once), then lets waiters open new ones.
    private func forget(_ server: ServerConnection) {
        let counted: Bool = lock.withLock {
            if let i = idle.firstIndex(where: { $0 === server }) { idle.remove(at: i) }
            return uncountLocked(server)
        }
        if counted {
            returnPermits(1)
            serveWaitersWithNewConnections()
        }
    }

    /// Idle servers at least `minAgeMs` old (what the coordinator may evict).
    func idleCount(olderThanMs minAgeMs: UInt64, now: NIODeadline) -> Int {
        lock.withLock { idle.reduce(0) { $0 + (Self.isOlder($1, than: minAgeMs, now: now) ? 1 : 0) } }
    }

    private static func isOlder(_ s: ServerConnection, than ms: UInt64, now: NIODeadline) -> Bool {
        (now - s.createdAt).nanoseconds >= Int64(clamping: ms) * 1_000_000
    }

    /// Closes the least recently used idle server at least `minAgeMs` old (min_connection_lifetime)
    /// to make room for another pool of the database (`DatabaseCoordinator.want`); false when none is.
    func evictOneIdle(olderThanMs minAgeMs: UInt64 = 0, now: NIODeadline = .now()) -> Bool {
        var counted = false
        let victim: ServerConnection? = lock.withLock {
            let old = { (s: ServerConnection) in Self.isOlder(s, than: minAgeMs, now: now) }
            // Least recently used first: the front of the LIFO list, the back of the FIFO one.
            guard let i = settings.serverRoundRobin ? idle.lastIndex(where: old) : idle.firstIndex(where: old)
            else { return nil }
            let s = idle.remove(at: i)
            counted = uncountLocked(s)
            return s
        }
        guard let victim else { return false }
        victim.close()
        if counted { returnPermits(1) }
        return true
    }

    /// Stops counting `s` in `open` (once); true if it was counted. Called under `lock`.
    private func uncountLocked(_ s: ServerConnection) -> Bool {
        guard s.countedInPool else { return false }
        s.countedInPool = false
        open -= 1
        return true
    }

    /// Opens connections for waiters while there is room (and, with `max_db_connections`, a permit).
    func serveWaitersWithNewConnections() {
        while true {
            var blocked: SharedGate?
            let waiter: Waiter? = lock.withLock {
                guard !_paused, !_closed, let oldest = waiters.popOldest() else { return nil }
                let now = NIODeadline.now()
                let waited = UInt64(max(0, (now - oldest.enqueuedAt).nanoseconds / 1_000_000))
                var anticipating: UInt64?
                if admitCreateLocked(now: now, waitedMs: waited, blocked: &blocked, anticipate: true,
                                     anticipating: &anticipating) {
                    if oldest.element.anticipating { _anticipationTimeouts += 1 }  // its budget ran out
                    return oldest.element
                }
                waiters.prepend(loopKey: oldest.loopKey, enqueuedAt: oldest.enqueuedAt, oldest.element)
                return nil
            }
            noteBlocked(blocked)
            guard let waiter else { return }
            create(on: waiter.loop, enqueuedAt: waiter.enqueuedAt, waiter.callback)
        }
    }

    // MARK: - Admin operations

    public func pause() { lock.withLock { _paused = true } }

    public func resume() {
        var ready: [(Waiter, ServerConnection)] = []
        lock.withLock {
            _paused = false
            while !idle.isEmpty, let w = popWaiterLocked() {
                ready.append((w, idle.removeLast()))
            }
        }
        for (w, s) in ready {
            Self.run(on: w.loop) { w.callback(.success(s)) }
        }
        serveWaitersWithNewConnections()
        replenish(loops: lock.withLock { replenishLoops })
    }

    /// Retires every existing server: idle ones now, busy ones when they come back.
    public func reconnect() {
        var uncounted = 0
        let drained: [ServerConnection] = lock.withLock {
            _epoch += 1
            let d = idle
            idle.removeAll()
            uncounted = d.filter(uncountLocked).count
            return d
        }
        for s in drained { s.close() }
        returnPermits(uncounted)
        serveWaitersWithNewConnections()
    }

    /// The pool that replaced this one at RELOAD (followed to the newest), if any.
    public var successor: ServerPool? {
        guard let next = lock.withLock({ _successor }) else { return nil }
        return next.successor ?? next
    }

    /// RELOAD replaced this pool: idle servers close, waiters and future checkouts move to `successor`;
    /// servers still in use are closed when they come back.
    public func retire(successor: ServerPool) {
        let pending = close(handingOverTo: successor)
        for w in pending { successor.acquire(on: w.loop, w.callback) }
    }

    /// Closes idle servers and refuses new checkouts (used when the pool is replaced or at shutdown).
    public func shutdown() {
        let pending = close(handingOverTo: nil)
        for w in pending {
            Self.run(on: w.loop) { w.callback(.failure(.closed)) }
        }
    }

    /// Marks the pool closed, closes its idle servers, and returns the waiters for the caller to settle.
    private func close(handingOverTo successor: ServerPool?) -> [Waiter] {
        var uncounted = 0
        let (drained, pending): ([ServerConnection], [Waiter]) = lock.withLock {
            _closed = true
            _successor = successor
            let d = idle
            idle.removeAll()
            uncounted = d.filter(uncountLocked).count
            return (d, waiters.removeAll())
        }
        for s in drained { s.close() }
        returnPermits(uncounted)
        return pending
    }

    public var isClosed: Bool { lock.withLock { _closed } }

    // MARK: - Maintenance (driven by `RetainCycle`)

    /// The idle servers this pool would close in a maintenance cycle: past server_lifetime (or
    /// RECONNECT), idle past idle_timeout above min_pool_size, and reserve connections (beyond
    /// pool_size) no client waits for. `RetainPlanner` picks among all pools' candidates.
    func retainCandidates(now: NIODeadline) -> [RetainPlanner.Candidate<ServerConnection>] {
        let idleLimit = settings.idleTimeoutMs
        return lock.withLock {
            guard !idle.isEmpty else { return [] }
            var out: [RetainPlanner.Candidate<ServerConnection>] = []
            func add(_ s: ServerConnection, _ reason: RetainPlanner.Reason) {
                out.append(.init(item: s, id: ObjectIdentifier(s), createdAt: s.createdAt, reason: reason))
            }
            let byAge = idle.sorted { $0.createdAt < $1.createdAt }
            var idleRoom = max(0, open - settings.minPoolSize)
            var reserveRoom = waiters.isEmpty ? max(0, open - settings.poolSize) : 0
            for s in byAge {
                if !s.isReusable(epoch: _epoch, now: now) {
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
    }

    /// Closes those of `servers` that are still idle here (chosen by the maintenance cycle).
    func closeIdle(_ servers: [ServerConnection]) {
        var uncounted = 0
        let closing: [ServerConnection] = lock.withLock {
            var out: [ServerConnection] = []
            for s in servers {
                guard let i = idle.firstIndex(where: { $0 === s }) else { continue }
                idle.remove(at: i)
                if uncountLocked(s) { uncounted += 1 }
                out.append(s)
            }
            return out
        }
        for s in closing { s.close() }
        returnPermits(uncounted)
        if uncounted > 0 { serveWaitersWithNewConnections() }
    }

    /// Opens servers up to min_pool_size, as fast as the connect limits allow (each finished
    /// connect starts the next); skipped while paused or while connects fail.
    func replenish(loops: [EventLoop]) {
        guard !loops.isEmpty else { return }
        lock.withLock { if replenishLoops.isEmpty { replenishLoops = loops } }
        var next = 0
        while true {
            var blocked: SharedGate?
            let go: Bool = lock.withLock {
                guard !retry.isFailing, open + opening < settings.minPoolSize else { return false }
                var never: UInt64?
                return admitCreateLocked(now: .now(), waitedMs: nil, blocked: &blocked, anticipate: false,
                                         anticipating: &never)
            }
            guard go else { return }
            let loop = loops[next % loops.count]
            next += 1
            startConnect(on: loop).whenComplete { [self] result in
                lock.withLock { opening -= 1 }
                switch result {
                case .success(let server):
                    lock.withLock {
                        open += 1
                        server.countedInPool = true
                        retry.attemptSucceeded()
                    }
                    release(server)
                    serveWaitersWithNewConnections()
                    replenish(loops: [loop])
                case .failure:
                    returnPermits(1)
                    serveWaitersWithNewConnections()
                }
            }
        }
    }

    static func run(on loop: EventLoop, _ body: @escaping () -> Void) {
        if loop.inEventLoop { body() } else { loop.execute(body) }
    }
}
