import Atomics
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

/// The server connections of one (database, user) pair: the lock around its `PoolStateMachine`,
/// and the runner of what the machine decides (connects, closes, timers, callbacks).
///
/// The lock is taken once per checkout and once per checkin, never per message. Callbacks always
/// run on the requester's event loop.
public final class ServerPool {
    public let settings: PoolSettings
    let connector: ServerConnector
    private let lock = NIOLock()
    /// Every checkout/checkin decision (guarded by `lock`).
    private var machine: PoolStateMachine<ServerConnection, Waiter>
    private typealias Pending = PoolStateMachine<ServerConnection, Waiter>.Pending
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
    /// Event loops for min_pool_size connects (given by the maintenance cycle; used by RESUME too).
    private var replenishLoops: [EventLoop] = []
    public let stats = PoolStats()
    /// Prepared statements shared by the pool's clients (transaction mode).
    public let statementCache: PreparedStatementCache

    /// A waiting client: its loop and what to call with the outcome.
    private struct Waiter {
        var loop: EventLoop
        var callback: (Result<ServerConnection, PoolError>) -> Void
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
        self.machine = PoolStateMachine(
            settings: .init(poolSize: settings.poolSize, minPoolSize: settings.minPoolSize,
                            roundRobin: settings.serverRoundRobin, idleCheckMs: settings.serverIdleCheckMs,
                            queryWaitTimeoutMs: settings.queryWaitTimeoutMs, idleTimeoutMs: settings.idleTimeoutMs),
            limits: limits)
        self.createSlots = createSlots
        self.userBudget = userBudget
        self.statementCache = PreparedStatementCache(capacity: settings.preparedStatementsCacheSize,
                                                     counter: .shared)
    }

    // MARK: - Shared state accessors

    public var paused: Bool { lock.withLock { machine.paused } }
    public var epoch: Int { lock.withLock { machine.epoch } }

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
            var maxWait: UInt64 = 0
            if let oldest = machine.oldestWaiterSince {
                maxWait = UInt64(max(0, (now - oldest).nanoseconds / 1000))
            }
            return Counts(idle: machine.idle.count, active: machine.open - machine.idle.count,
                          opening: machine.opening, waiting: machine.waiterCount, maxWaitMicros: maxWait)
        }
    }

    public func idleServers() -> [ServerConnection] { lock.withLock { machine.idle } }

    // MARK: - Checkout

    /// The hot path of checkout: an idle, reusable server right now, or nil (then call `acquire`).
    /// No closure, no allocation.
    @inline(__always)
    public func tryAcquireIdle(on loop: EventLoop, now: NIODeadline) -> ServerConnection? {
        let key = ObjectIdentifier(loop)
        while true {
            switch lock.withLock({ machine.takeIdle(preferring: key, now: now) }) {
            case .none: return nil
            case .use(let server): return server
            case .discard(let server): discard(server)
            case .check(let server): checkThenRelease(server)
            }
        }
    }

    private static let logger = Logger(label: "pg_doorman")

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
        enum Step { case use(ServerConnection), discard(ServerConnection), check(ServerConnection), create, wait, closed }
        let now = NIODeadline.now()
        let key = ObjectIdentifier(loop)
        var step: Step = .wait
        var blocked: SharedGate?
        var anticipating: UInt64?
        var retryAt: NIODeadline?
        lock.withLock {
            if machine.closed {
                step = .closed
                return
            }
            switch machine.takeIdle(preferring: key, now: now) {
            case .use(let server): step = .use(server); return
            case .discard(let server): step = .discard(server); return
            case .check(let server): step = .check(server); return
            case .none: break
            }
            if admitCreateLocked(now: now, waitedMs: nil, blocked: &blocked, anticipate: true,
                                 anticipating: &anticipating) {
                step = .create
            } else {
                machine.enqueue(Waiter(loop: loop, callback: callback), loopKey: key, now: now,
                                anticipating: anticipating != nil)
                step = .wait
                retryAt = machine.armRetry(now: now)
            }
        }
        if let retryAt { scheduleRetry(at: retryAt, on: loop) }
        if let anticipating { armAnticipationTimer(in: anticipating, on: loop) }
        switch step {
        case .closed:
            Self.run(on: loop) { callback(.failure(.closed)) }
        case .use(let server):
            if loop.inEventLoop {
                callback(.success(server))
            } else {
                loop.execute { callback(.success(server)) }
            }
        case .discard(let server):
            discard(server)
            acquire(on: loop, callback)
        case .check(let server):
            checkThenRelease(server)
            acquire(on: loop, callback)
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
        guard lock.withLock({ machine.armAnticipationTimer() }) else { return }
        loop.scheduleTask(in: .milliseconds(Int64(ms))) { [self] in
            lock.withLock { machine.anticipationTimerDone() }
            serveWaitersWithNewConnections()
            let again: UInt64? = lock.withLock {
                machine.anticipationBudgetIfWaiting(now: .now(),
                                                    xactP99Micros: { self.stats.xactHistogram.percentile(0.99) },
                                                    jitter: { Double.random(in: 0..<1) })
            }
            if let again { armAnticipationTimer(in: max(1, again), on: loop) }
        }
    }

    /// With `anticipate` (not for min_pool_size connects), sets `anticipating` to the budget when the
    /// client should first wait that long for a returned connection (`scaling_warm_pool_ratio`).
    private func admitCreateLocked(now: NIODeadline, waitedMs: UInt64?, blocked: inout SharedGate?,
                                   anticipate: Bool, anticipating: inout UInt64?) -> Bool {
        let reserve: Bool
        switch machine.admit(now: now, waitedMs: waitedMs, anticipate: anticipate,
                             xactP99Micros: { self.stats.xactHistogram.percentile(0.99) },
                             jitter: { Double.random(in: 0..<1) }) {
        case .hold:
            return false
        case .anticipate(let budget):
            anticipating = budget
            return false
        case .mayOpen(let r):
            reserve = r
        }
        if let createSlots, !createSlots.tryTake() {
            machine.createRefusedByShared(countsAsGateWait: true)
            blocked = .createSlots
            return false
        }
        if let userBudget, !userBudget.tryTake() {
            createSlots?.giveWithoutWaking()
            blocked = .user
            return false
        }
        if let coordinator, !coordinator.tryAcquire(
            for: self, reserveAllowed: CreateGate.reserveAllowed(limits: machine.limits, waitedMs: waitedMs)) {
            userBudget?.giveWithoutWaking()
            createSlots?.giveWithoutWaking()
            blocked = .database
            return false
        }
        machine.createStarted(reserve: reserve)
        return true
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
    func setLimits(_ new: PoolLimits) { lock.withLock { machine.limits = new } }

    var currentLimits: PoolLimits { lock.withLock { machine.limits } }

    public struct ScalingCounters {
        public var creates: Int, gateWaits: Int, reserveCreates: Int
        /// Anticipating clients served by a returned connection / given a new one after the budget.
        public var anticipationServed: Int, anticipationTimeouts: Int
    }

    public var scalingCounters: ScalingCounters {
        lock.withLock {
            ScalingCounters(creates: machine.creates, gateWaits: machine.gateWaits, reserveCreates: machine.reserveCreates,
                            anticipationServed: machine.anticipationServed,
                            anticipationTimeouts: machine.anticipationTimeouts)
        }
    }

    /// Whether any client waits for a server of this pool.
    var hasWaiters: Bool { lock.withLock { machine.hasWaiters } }

    /// Fails every waiter that has waited longer than query_wait_timeout (with the last connect
    /// error when connects have been failing meanwhile).
    func expireWaiters(now: NIODeadline) {
        let (expired, lastReason) = lock.withLock { machine.expireWaiters(now: now) }
        if !expired.isEmpty {
            let error: PoolError = lastReason.map { .connectFailed($0) } ?? .queryWaitTimeout(limit: limitText())
            for p in expired {
                stats.recordWaitTimeout()
                Self.run(on: p.waiter.loop) { p.waiter.callback(.failure(error)) }
            }
        }
        // The clients still waiting may now be owed a connection: a reserve one (reserve_pool_timeout
        // passed), one a coordinator eviction can make room for (min_connection_lifetime passed), or
        // one a shared limit freed without waking this pool.
        if hasWaiters { serveWaitersWithNewConnections() }
    }

    private func scheduleRetry(at deadline: NIODeadline, on loop: EventLoop) {
        loop.scheduleTask(deadline: deadline) { [self] in retryDue(on: loop) }
    }

    /// The backoff has (probably) passed: open a connection for the oldest waiter, or wait longer
    /// when a later failure pushed the next attempt back.
    private func retryDue(on loop: EventLoop) {
        switch lock.withLock({ machine.retryDue(now: .now()) }) {
        case .later(let at): scheduleRetry(at: at, on: loop)
        case .serveWaiters: serveWaitersWithNewConnections()
        }
    }

    private func create(on loop: EventLoop, enqueuedAt: NIODeadline,
                        _ callback: @escaping (Result<ServerConnection, PoolError>) -> Void) {
        let startedAt = NIODeadline.now()
        startConnect(on: loop).whenComplete { [self] result in
            switch result {
            case .success(let server):
                lock.withLock { machine.connected(server) }
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
            switch machine.connectFailed(failure, startedAt: startedAt, now: now, waiterDeadline: waitDeadline,
                                         jitter: Double.random(in: 0..<1)) {
            case .retry:
                machine.requeueFront(Waiter(loop: loop, callback: callback), loopKey: ObjectIdentifier(loop),
                                     enqueuedAt: enqueuedAt)
                requeued = true
                retryAt = machine.armRetry(now: now)
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
        switch lock.withLock({ machine.checkin(server, now: now) }) {
        case .discard:
            discard(server)
        case .idled:
            break
        case .handTo(let p):
            stats.recordWait(micros: UInt64(max(0, (now - p.enqueuedAt).nanoseconds / 1000)))
            // Direct handoff; on the same loop without a closure allocation.
            let waiter = p.waiter
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
        let counted: Bool = lock.withLock { machine.forget(server) }
        if counted {
            returnPermits(1)
            serveWaitersWithNewConnections()
        }
    }

    /// Idle servers at least `minAgeMs` old (what the coordinator may evict).
    func idleCount(olderThanMs minAgeMs: UInt64, now: NIODeadline) -> Int {
        lock.withLock { machine.idleCount(olderThanMs: minAgeMs, now: now) }
    }

    /// Closes the least recently used idle server at least `minAgeMs` old (min_connection_lifetime)
    /// to make room for another pool of the database (`DatabaseCoordinator.want`); false when none is.
    func evictOneIdle(olderThanMs minAgeMs: UInt64 = 0, now: NIODeadline = .now()) -> Bool {
        guard let (victim, counted) = lock.withLock({ machine.evictOneIdle(olderThanMs: minAgeMs, now: now) })
        else { return false }
        victim.close()
        if counted { returnPermits(1) }
        return true
    }

    /// Opens connections for waiters while there is room (and, with `max_db_connections`, a permit).
    func serveWaitersWithNewConnections() {
        while true {
            var blocked: SharedGate?
            let pending: Pending? = lock.withLock {
                guard let oldest = machine.takeOldestWaiter() else { return nil }
                let now = NIODeadline.now()
                let waited = UInt64(max(0, (now - oldest.enqueuedAt).nanoseconds / 1_000_000))
                var anticipating: UInt64?
                if admitCreateLocked(now: now, waitedMs: waited, blocked: &blocked, anticipate: true,
                                     anticipating: &anticipating) {
                    machine.servedByNewConnection(oldest)
                    return oldest
                }
                machine.putBack(oldest)
                return nil
            }
            noteBlocked(blocked)
            guard let pending else { return }
            create(on: pending.waiter.loop, enqueuedAt: pending.enqueuedAt, pending.waiter.callback)
        }
    }

    // MARK: - Admin operations

    public func pause() { lock.withLock { machine.pause() } }

    public func resume() {
        let ready = lock.withLock { machine.resume() }
        for (p, s) in ready {
            let w = p.waiter
            Self.run(on: w.loop) { w.callback(.success(s)) }
        }
        serveWaitersWithNewConnections()
        replenish(loops: lock.withLock { replenishLoops })
    }

    /// Retires every existing server: idle ones now, busy ones when they come back.
    public func reconnect() {
        let (drained, uncounted) = lock.withLock { machine.reconnect() }
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
        for p in pending { successor.acquire(on: p.waiter.loop, p.waiter.callback) }
    }

    /// Closes idle servers and refuses new checkouts (used when the pool is replaced or at shutdown).
    public func shutdown() {
        let pending = close(handingOverTo: nil)
        for p in pending {
            let w = p.waiter
            Self.run(on: w.loop) { w.callback(.failure(.closed)) }
        }
    }

    /// Marks the pool closed, closes its idle servers, and returns the waiters for the caller to settle.
    private func close(handingOverTo successor: ServerPool?) -> [Pending] {
        let (drained, uncounted, pending) = lock.withLock {
            _successor = successor
            closedFlag.store(true, ordering: .releasing)
            return machine.close()
        }
        for s in drained { s.close() }
        returnPermits(uncounted)
        return pending
    }

    /// Asked by every client at every transaction start: a flag set under the lock when the pool
    /// closes, read without it (a client that misses a close by a moment is refused by the
    /// locked checkout itself and takes the successor on its next try).
    public var isClosed: Bool { closedFlag.load(ordering: .acquiring) }
    private let closedFlag = ManagedAtomic<Bool>(false)

    // MARK: - Maintenance (driven by `RetainCycle`)

    /// The idle servers this pool would close in a maintenance cycle: past server_lifetime (or
    /// RECONNECT), idle past idle_timeout above min_pool_size, and reserve connections (beyond
    /// pool_size) no client waits for. `RetainPlanner` picks among all pools' candidates.
    func retainCandidates(now: NIODeadline) -> [RetainPlanner.Candidate<ServerConnection>] {
        lock.withLock { machine.retainCandidates(now: now) }
    }

    /// Closes those of `servers` that are still idle here (chosen by the maintenance cycle).
    func closeIdle(_ servers: [ServerConnection]) {
        let (closing, uncounted) = lock.withLock { machine.takeIdle(servers) }
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
                guard machine.wantsReplenish else { return false }
                var never: UInt64?
                return admitCreateLocked(now: .now(), waitedMs: nil, blocked: &blocked, anticipate: false,
                                         anticipating: &never)
            }
            guard go else { return }
            let loop = loops[next % loops.count]
            next += 1
            startConnect(on: loop).whenComplete { [self] result in
                switch result {
                case .success(let server):
                    lock.withLock { machine.replenishConnectEnded(server) }
                    release(server)
                    serveWaitersWithNewConnections()
                    replenish(loops: [loop])
                case .failure:
                    lock.withLock { machine.replenishConnectEnded(nil) }
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
