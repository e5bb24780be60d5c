import Atomics
import ConfigKit
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// The running pooler: event loops, listeners, pools, and what the admin console reads.
public final class PoolerRuntime {
    public let group: MultiThreadedEventLoopGroup
    public var logger: Logger
    public let configPath: String
    let cancels = CancelRegistry()
    /// `max_memory_usage`: large messages held whole, across all clients.
    let memory: MemoryBudget
    let connector: ServerConnector
    /// `client_login_timeout`: how long a client has from connecting to the end of authentication
    /// (0 in the config: no limit). Read once per connection; RELOAD changes it for new clients.
    var startupTimeout: TimeAmount {
        let ms = loginTimeoutMs.load(ordering: .relaxed)
        return ms == 0 ? .hours(24 * 365 * 100) : .milliseconds(Int64(min(ms, UInt64(Int64.max / 1_000_000))))
    }
    private let loginTimeoutMs = ManagedAtomic<UInt64>(15_000)
    /// `message_size_to_be_stream`: larger messages the pooler need not rewrite are relayed in
    /// pieces, never held whole (at least 1 KiB).
    var streamThreshold: Int { streamThresholdBytes.load(ordering: .relaxed) }
    private let streamThresholdBytes = ManagedAtomic<Int>(1 << 20)
    /// `unix_socket_buffer_size` for accepted Unix-socket clients (0: the kernel's default).
    private let unixSocketBufferBytes = ManagedAtomic<Int>(0)

    /// SO_SNDBUF and SO_RCVBUF of an accepted Unix-socket client (on its loop; best effort).
    static func setUnixBuffers(_ channel: Channel, bytes: Int) {
        guard bytes > 0, let options = channel.syncOptions else { return }
        let value = SocketOptionValue(clamping: bytes)
        try? options.setOption(ChannelOptions.socketOption(.so_sndbuf), value: value)
        try? options.setOption(ChannelOptions.socketOption(.so_rcvbuf), value: value)
    }
    static func streamThreshold(_ g: General) -> Int { max(1024, Int(clamping: g.messageSizeToBeStream)) }
    /// Every configured user has an MD5 hash: an unknown user then gets a mock MD5 exchange (what
    /// any known user gets under pg_hba md5), else a mock SCRAM one (`MockAuthentication`).
    var mockAuthenticationUsesMD5: Bool { mockMD5.load(ordering: .relaxed) }
    private let mockMD5 = ManagedAtomic<Bool>(false)
    /// `auth_failure_delay`: failed logins per client address and how long their answer waits.
    let authFailures = AuthFailureGate()

    static func allUsersHaveMD5Hashes(_ config: Config) -> Bool {
        var any = false
        for pool in config.pools.values {
            for user in pool.users {
                guard MD5Password.isHash(user.password) else { return false }
                any = true
            }
        }
        return any
    }
    /// How often each loop looks for clients past `startupTimeout` (so a client is cut off up to
    /// a second after it).
    static let loginSweepInterval = TimeAmount.seconds(1)
    /// Clients still logging in, per event loop (each watch is used only on its loop).
    private let loginWatches: [ObjectIdentifier: LoginDeadlines<ClientSession>]
    private var loginSweepTasks: [RepeatedTask] = []
    public let startedAt = NIODeadline.now()

    private let lock = NIOLock()
    private var _config: Config
    private var _pools: [String: ServerPool] = [:]
    /// `max_db_connections` per database (kept across RELOAD while the database has a limit).
    private var _coordinators: [String: DatabaseCoordinator] = [:]
    /// The pools of each database with a coordinator (what `DatabaseCoordinator.siblings` reads).
    private var _coordinatedPools: [String: [ServerPool]] = [:]
    /// `max_concurrent_creates`: connects in flight across all pools.
    let createSlots: SharedPermits
    /// `max_user_connections`, one budget per user name (kept across RELOAD: it counts open connections).
    private var _userBudgets: [String: SharedPermits] = [:]
    /// auth_query per database (`AuthQueryService`: executor, cache, dynamic pools).
    private var _authQueries: [String: AuthQueryService] = [:]
    /// Sessions from login to channelInactive (strong: a weak reference would give every session a side
    /// table, which slows each retain and release of it on the hot path).
    private var sessions: [Int32: ClientSession] = [:]
    /// The sessions that finished logging in: only their disconnection is logged (a refused login
    /// has its own, rate-limited line, `FailedLoginLog`, so a flood of them cannot fill the disk).
    private var loggedIn: Set<Int32> = []

    private let clientCount = ManagedAtomic<Int>(0)
    private var _migrationSender: MigrationSender?
    /// After a binary upgrade, the way to the old process for cancels of its clients (set before
    /// `start`, never changed).
    var cancelRelay: CancelRelay?
    private let migrationActive = ManagedAtomic<Bool>(false)
    private let connectionCounter = ManagedAtomic<Int32>(0)
    public let totalConnections = ManagedAtomic<Int>(0)
    public let cancelRequests = ManagedAtomic<Int>(0)
    /// `tls_rate_limit_per_second` (read at start, like the reference: not reloadable).
    private(set) var tlsHandshakeLimiter: HandshakeLimiter?
    /// The `/metrics` listener when `web.enabled`.
    private(set) var metricsServer: MetricsServer?
    private let shuttingDown = ManagedAtomic<Bool>(false)
    private var listeners: [Channel] = []
    private var maintenanceTask: RepeatedTask?
    private var statsTask: RepeatedTask?
    /// Starts the query_wait_timeout checks when a client starts waiting (see `scheduleWaiterCheck`).
    let waiterAlarm = WaiterAlarm()
    /// Client limits and the pooler's timeouts on clients.
    let governor: ClientGovernor
    static let waiterCheckInterval = TimeAmount.milliseconds(50)
    let averager = StatsAverager()
    public let logLevels: LogLevels
    /// Set by the process layer: what SHUTDOWN and UPGRADE from the admin console do.
    public var onShutdownRequest: (() -> Void)?
    public var onUpgradeRequest: (() -> Void)?

    public init(config: Config, configPath: String, logger: Logger, logLevels: LogLevels, eventLoops: Int? = nil) {
        self.logLevels = logLevels
        // PostgreSQL and the clients usually share the machine: half the cores at most (one loop on
        // two cores measured faster than two — no cross-thread handoffs, more events per wakeup).
        let cores = System.coreCount
        let threads = max(1, eventLoops ?? min(max(1, config.general.workerThreads), max(1, cores / 2)))
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        var watches: [ObjectIdentifier: LoginDeadlines<ClientSession>] = [:]
        for loop in group.makeIterator() { watches[ObjectIdentifier(loop)] = LoginDeadlines() }
        self.loginWatches = watches
        self.governor = ClientGovernor(loops: Array(group.makeIterator()))
        governor.apply(config)
        self.logger = logger
        self.configPath = configPath
        self._config = config
        self.memory = MemoryBudget(limit: Int(clamping: config.general.maxMemoryUsage))
        self.connector = ServerConnector(tcpNoDelay: config.general.tcpNoDelay)
        self._coordinators = Self.coordinators(config: config, previous: [:])
        self.createSlots = SharedPermits(name: "max_concurrent_creates", limit: config.general.maxConcurrentCreates)
        self._userBudgets = Self.userBudgets(config: config, previous: [:])
        self._pools = Self.buildPools(config: config, previous: [:], connector: connector, waiterAlarm: waiterAlarm,
                                      coordinators: _coordinators, createSlots: createSlots, userBudgets: _userBudgets)
        self._coordinatedPools = Self.coordinatedPools(_pools)
        for c in _coordinators.values { wireSiblings(c) }
        for b in _userBudgets.values { wireUserBudget(b) }
        self._authQueries = AuthQueryService.services(config: config, previous: [:], connector: connector,
                                                      waiterAlarm: waiterAlarm, logger: logger).services
        for service in _authQueries.values { wirePause(service) }
        waiterAlarm.onStart = { [weak self] in self?.scheduleWaiterCheck() }
        loginTimeoutMs.store(config.general.clientLoginTimeout, ordering: .relaxed)
        streamThresholdBytes.store(Self.streamThreshold(config.general), ordering: .relaxed)
        unixSocketBufferBytes.store(Int(clamping: config.general.unixSocketBufferSize), ordering: .relaxed)
        mockMD5.store(Self.allUsersHaveMD5Hashes(config), ordering: .relaxed)
        authFailures.configure(delayMs: config.general.authFailureDelay)
    }

    /// The login watch of `loop` (nil for a loop outside the group).
    func loginWatch(for loop: EventLoop) -> LoginDeadlines<ClientSession>? {
        loginWatches[ObjectIdentifier(loop)]
    }

    // MARK: - Configuration and pools

    public var config: Config { lock.withLock { _config } }

    static func key(_ database: String, _ user: String) -> String { database + "\u{0}" + user }

    static func buildPools(config: Config, previous: [String: ServerPool], connector: ServerConnector,
                           waiterAlarm: WaiterAlarm?, coordinators: [String: DatabaseCoordinator],
                           createSlots: SharedPermits? = nil, userBudgets: [String: SharedPermits] = [:])
        -> [String: ServerPool]
    {
        var out: [String: ServerPool] = [:]
        for (name, pool) in config.pools {
            let coordinator = coordinators[name]
            let limits = PoolLimits.resolve(pool: pool, general: config.general)
            for user in pool.users {
                let settings = PoolSettings.resolve(poolName: name, pool: pool, user: user, general: config.general)
                let k = key(name, user.username)
                let budget = userBudgets[user.username]
                if let old = previous[k], old.settings == settings, old.coordinator === coordinator,
                   old.createSlots === createSlots, old.userBudget === budget, !old.isClosed {
                    old.setLimits(limits)  // reserve and parallelism apply to the kept pool
                    out[k] = old
                } else {
                    out[k] = ServerPool(settings: settings, connector: connector, waiterAlarm: waiterAlarm,
                                        coordinator: coordinator, limits: limits, createSlots: createSlots,
                                        userBudget: budget)
                }
            }
        }
        return out
    }

    /// One coordinator per database with `max_db_connections` > 0; an existing one is kept (with
    /// its count of open connections) and gets the new limit.
    static func coordinators(config: Config, previous: [String: DatabaseCoordinator]) -> [String: DatabaseCoordinator] {
        var out: [String: DatabaseCoordinator] = [:]
        for (name, pool) in config.pools {
            guard let limit = pool.maxDbConnections, limit > 0 else { continue }
            let settings = DatabaseCoordinator.Settings(
                limit: limit, reserveSize: max(0, pool.effectiveReservePoolSize),
                guarantee: max(0, pool.effectiveMinGuaranteedPoolSize), minLifetimeMs: pool.effectiveMinConnectionLifetime)
            if let c = previous[name] {
                c.configure(settings)
                out[name] = c
            } else {
                out[name] = DatabaseCoordinator(database: name, settings: settings)
            }
        }
        return out
    }

    /// One `max_user_connections` budget per user name of the configuration; an existing one is kept
    /// (it counts the user's open connections) and gets its new limit when the caller applies it.
    static func userBudgets(config: Config, previous: [String: SharedPermits]) -> [String: SharedPermits] {
        var out: [String: SharedPermits] = [:]
        for pool in config.pools.values {
            for user in pool.users where out[user.username] == nil {
                out[user.username] = previous[user.username]
                    ?? SharedPermits(name: "max_user_connections", limit: config.general.maxUserConnections)
            }
        }
        return out
    }

    /// A user at max_user_connections gets room by closing an idle connection of the same user in
    /// another database.
    private func wireUserBudget(_ budget: SharedPermits) {
        budget.evictIdle = { [weak self, weak budget] requester in
            guard let self, let budget else { return }
            let others = self.unsortedPools.filter { $0 !== requester && $0.userBudget === budget }
            for p in others where p.evictOneIdle() { return }
        }
    }

    private func wirePause(_ service: AuthQueryService) {
        let database = service.database
        service.staticPoolsPaused = { [weak self] in self?.staticPoolsPaused(database) ?? false }
    }

    /// The coordinator finds the database's current pools through the runtime's pool map.
    private func wireSiblings(_ c: DatabaseCoordinator) {
        let database = c.database
        c.siblings = { [weak self] in
            guard let self else { return [] }
            return self.lock.withLock { self._coordinatedPools[database] ?? [] }
        }
    }

    static func coordinatedPools(_ pools: [String: ServerPool]) -> [String: [ServerPool]] {
        Dictionary(grouping: pools.values.filter { $0.coordinator != nil }, by: \.settings.database)
    }

    /// The databases' coordinators, by name.
    var coordinators: [DatabaseCoordinator] {
        lock.withLock { Array(_coordinators.values) }.sorted { $0.database < $1.database }
    }

    func pool(database: String, user: String) -> ServerPool? {
        lock.withLock { _pools[Self.key(database, user)] }
    }

    /// Whether a listed user's pool of `database` is PAUSEd (what a new dynamic pool follows).
    func staticPoolsPaused(_ database: String) -> Bool {
        lock.withLock { _pools.values.contains { $0.settings.database == database && $0.paused } }
    }

    /// The auth_query service of `database`, if it has auth_query.
    func authQuery(for database: String) -> AuthQueryService? { lock.withLock { _authQueries[database] } }

    var authQueries: [AuthQueryService] {
        lock.withLock { Array(_authQueries.values) }.sorted { $0.database < $1.database }
    }

    /// Static pools and the dynamic (auth_query) ones.
    public var pools: [ServerPool] {
        lock.withLock { Array(_pools.values) + _authQueries.values.flatMap(\.pools) }.sorted {
            ($0.settings.database, $0.settings.user) < ($1.settings.database, $1.settings.user)
        }
    }

    /// The pools without sorting, for the periodic timers (the 50 ms waiter sweep must not sort).
    var unsortedPools: [ServerPool] { lock.withLock { Array(_pools.values) + _authQueries.values.flatMap(\.pools) } }

    func hasDatabase(_ database: String) -> Bool { lock.withLock { _config.pools[database] != nil } }

    func isAdminDatabase(_ database: String) -> Bool { database == "pgdoorman" || database == "pgbouncer" }

    var adminUsername: String { lock.withLock { _config.general.adminUsername } }
    var adminPassword: String { lock.withLock { _config.general.adminPassword } }

    func hbaDecision(address: SocketAddress?, tls: Bool, database: String, user: String) -> HbaDecision {
        // Only the two settings used, not a copy of all of `general`.
        let (pgHba, legacy) = lock.withLock { (_config.general.pgHba, _config.general.hba) }
        let transport: HbaTransport
        if let address, let ip = Self.ipAddress(of: address) {
            transport = .tcp(address: ip, tls: tls)
        } else {
            transport = .unix
        }
        return General.hbaDecision(pgHba: pgHba, legacyNetworks: legacy, transport: transport,
                                   database: database, user: user)
    }

    /// The peer's address bytes, read from the socket address (no text round trip).
    static func ipAddress(of address: SocketAddress) -> IPAddress? {
        switch address {
        case .v4(let a):
            var sin = a.address.sin_addr
            return IPAddress(bytes: withUnsafeBytes(of: &sin) { Array($0) })
        case .v6(let a):
            var sin6 = a.address.sin6_addr
            return IPAddress(bytes: withUnsafeBytes(of: &sin6) { Array($0) })
        case .unixDomainSocket:
            return nil
        }
    }

    /// Re-reads the config file. On any error the running config stays and the diagnostics are returned.
    public func reload() -> (changed: Bool, diagnostics: [Diagnostic]) {
        let result = ConfigLoader.load(path: configPath)
        for d in result.diagnostics where d.severity == .warning { logger.warning("\(d.description)") }
        guard let newConfig = result.config, !result.hasErrors else {
            for d in result.diagnostics where d.severity == .error { logger.error("RELOAD rejected: \(d.description)") }
            return (false, result.diagnostics)
        }
        // Server-facing certificates are re-read on every RELOAD (new connections use them).
        if let problem = reloadServerTLS(newConfig) { return (false, result.diagnostics + [problem]) }
        var retiredAuthQueries: [AuthQueryService] = []
        let (before, replaced): (Config, [(ServerPool, ServerPool?)]) = lock.withLock {
            let before = _config
            if newConfig == _config { return (before, []) }
            let keptAuthQueries = _authQueries
            (_authQueries, retiredAuthQueries) = AuthQueryService.services(
                config: newConfig, previous: _authQueries, connector: connector, waiterAlarm: waiterAlarm, logger: logger)
            for (name, service) in _authQueries where keptAuthQueries[name] !== service { wirePause(service) }
            let old = _pools
            let fresh = Self.coordinators(config: newConfig, previous: _coordinators)
            for (name, c) in fresh where _coordinators[name] !== c { wireSiblings(c) }
            _coordinators = fresh
            let budgets = Self.userBudgets(config: newConfig, previous: _userBudgets)
            for b in budgets.values where b.evictIdle == nil { wireUserBudget(b) }
            _userBudgets = budgets
            _pools = Self.buildPools(config: newConfig, previous: old, connector: connector, waiterAlarm: waiterAlarm,
                                     coordinators: fresh, createSlots: createSlots, userBudgets: _userBudgets)
            _coordinatedPools = Self.coordinatedPools(_pools)
            _config = newConfig
            loginTimeoutMs.store(newConfig.general.clientLoginTimeout, ordering: .relaxed)
            streamThresholdBytes.store(Self.streamThreshold(newConfig.general), ordering: .relaxed)
            unixSocketBufferBytes.store(Int(clamping: newConfig.general.unixSocketBufferSize), ordering: .relaxed)
            governor.apply(newConfig)
            mockMD5.store(Self.allUsersHaveMD5Hashes(newConfig), ordering: .relaxed)
            authFailures.configure(delayMs: newConfig.general.authFailureDelay)
            return (before, old.filter { kv in !_pools.values.contains { $0 === kv.value } }
                .map { ($0.value, _pools[$0.key]) })
        }
        memory.setLimit(Int(clamping: newConfig.general.maxMemoryUsage))
        for s in retiredAuthQueries { s.shutdown() }
        for c in coordinators { c.wake() }  // a raised max_db_connections serves waiting pools
        // Raised max_concurrent_creates / max_user_connections / pool_size-side limits serve waiters too.
        createSlots.setLimit(newConfig.general.maxConcurrentCreates)
        for b in lock.withLock({ Array(_userBudgets.values) }) { b.setLimit(newConfig.general.maxUserConnections) }
        for p in unsortedPools where p.hasWaiters { p.serveWaitersWithNewConnections() }
        // Replaced pools hand their waiters and future checkouts to the new pool of the same
        // (database, user); connected clients keep working. Removed pools close.
        for (old, successor) in replaced {
            if let successor { old.retire(successor: successor) } else { old.shutdown() }
        }
        // New client connections get the new TCP options (they inherit them from the listener).
        if Self.acceptedSocketsInheritTCPOptions && listenerFD >= 0 { Self.setTCPOptions(fd: listenerFD, newConfig.general) }
        for d in InertSettings.warnings(newConfig) { logger.warning("\(d.description)") }
        let (w0, w1) = (before.web, newConfig.web)
        if (w0.enabled, w0.host, w0.port) != (w1.enabled, w1.host, w1.port) {
            logger.warning("web.enabled, web.host and web.port apply at start: restart or UPGRADE to change the metrics listener")
        }
        if before.general.tlsRateLimitPerSecond != newConfig.general.tlsRateLimitPerSecond {
            logger.warning("tls_rate_limit_per_second applies at start: restart or UPGRADE to change it")
        }
        let changes = ConfigDiff.lines(old: before, new: newConfig)
        if changes.isEmpty {
            logger.info("config unchanged")
        } else {
            for c in changes { logger.info("config changed: \(c)") }
            if !replaced.isEmpty { logger.info("RELOAD: \(replaced.count) pool(s) replaced; new connections use the new settings") }
        }
        return (!changes.isEmpty, result.diagnostics)
    }

    func statsAverages(for pool: ServerPool) -> PoolStats.Snapshot { averager.averages(for: pool) }

    func requestShutdown() { onShutdownRequest?() }
    func requestUpgrade() { onUpgradeRequest?() }

    // MARK: - Clients

    /// Binary upgrade: the old process's migration channel while sessions are handed over
    /// (`SessionMigration`); `migrationActive` is the flag the hot path reads.
    var migrationSender: MigrationSender? {
        get { lock.withLock { _migrationSender } }
        set {
            lock.withLock { _migrationSender = newValue }
            migrationActive.store(newValue != nil, ordering: .relaxed)
        }
    }
    var isMigrating: Bool { migrationActive.load(ordering: .relaxed) }

    /// Client ids continue after the old process's (a migrated client keeps its id and cancel key).
    public func continueConnectionIDs(after last: Int32) {
        connectionCounter.store(last, ordering: .relaxed)
    }

    /// The last client id handed out.
    public var lastConnectionID: Int32 { connectionCounter.load(ordering: .relaxed) }

    /// Undoes `admitClient` for a client that did not become a session.
    func releaseAdmission() { clientCount.wrappingDecrement(ordering: .relaxed) }

    func nextConnectionID() -> Int32 {
        connectionCounter.wrappingIncrementThenLoad(ordering: .relaxed) & Int32.max
    }

    func admitClient() -> Bool {
        let max = lock.withLock { _config.general.maxConnections }
        let now = clientCount.wrappingIncrementThenLoad(ordering: .relaxed)
        if now > max {
            clientCount.wrappingDecrement(ordering: .relaxed)
            return false
        }
        return true
    }

    func sessionStarted(_ s: ClientSession) {
        lock.withLock { sessions[s.id] = s }
    }

    func sessionEnded(_ s: ClientSession, admin: Bool) {
        var wasLoggedIn = false
        var logIt = false
        let removed = lock.withLock {
            wasLoggedIn = loggedIn.remove(s.id) != nil
            logIt = _config.general.logClientDisconnections
            return sessions.removeValue(forKey: s.id) != nil
        }
        if removed && s.isCounted { clientCount.wrappingDecrement(ordering: .relaxed) }
        if s.countedInClientLimits {
            s.countedInClientLimits = false
            governor.leave(database: s.database, user: s.user)
        }
        if logIt && wasLoggedIn && !s.user.isEmpty && !s.handedOver {
            logger.info("client \(s.peer) disconnected: \(s.user)@\(s.database)")
        }
    }

    /// A client finished logging in (called once per session, on its loop).
    func logClientConnection(_ s: ClientSession) {
        if lock.withLock({ () -> Bool in
            loggedIn.insert(s.id)
            return _config.general.logClientConnections
        }) {
            logger.info("client \(s.peer) connected: \(s.user)@\(s.database) application_name=\(s.applicationName)")
        }
    }

    var clients: [ClientSession] {
        lock.withLock { Array(sessions.values) }.sorted { $0.id < $1.id }
    }

    var currentClients: Int { clientCount.load(ordering: .relaxed) }

    // MARK: - Cancel

    func cancel(processID: Int32, secretKey: Int32) {
        cancelRequests.wrappingIncrement(ordering: .relaxed)
        guard let session = cancels.session(processID: processID, secret: secretKey) else {
            // Perhaps a client that stayed with the process this one upgraded.
            cancelRelay?.forward(processID: processID, secretKey: secretKey)
            return
        }
        session.cancelCurrentQuery()
    }

    /// `tls`: the pool's server TLS settings when the cancelled server connection uses TLS.
    func sendCancel(host: String, port: Int, processID: Int32, secretKey: Int32, tls: ServerTLSSettings? = nil) {
        if let tls, !host.hasPrefix("/") {
            return sendTLSCancel(host: host, port: port, processID: processID, secretKey: secretKey, tls: tls)
        }
        let bootstrap = ClientBootstrap(group: group).connectTimeout(.seconds(3))
        let connected = host.hasPrefix("/")
            ? bootstrap.connect(unixDomainSocketPath: "\(host)/.s.PGSQL.\(port)")
            : bootstrap.connect(host: host, port: port)
        connected.whenSuccess { channel in
            var buf = channel.allocator.buffer(capacity: 16)
            FrontendMessage.cancelRequest(processID: processID, secretKey: secretKey, into: &buf)
            channel.writeAndFlush(buf).whenComplete { _ in channel.close(promise: nil) }
        }
    }

    // MARK: - Lifecycle

    var isShuttingDown: Bool { shuttingDown.load(ordering: .relaxed) }

    /// The descriptor of the TCP listener (handed to the next process by a binary upgrade).
    public private(set) var listenerFD: Int32 = -1
    private var serverBootstrap: ServerBootstrap?
    private var tcpListener: Channel?

    /// Binary upgrade, step 1: stop accepting on the TCP socket but keep the socket itself (and its
    /// backlog) alive in a duplicate descriptor, returned for the new process. Two processes never
    /// accept from one socket at the same time.
    public func releaseTCPListener() -> Int32? {
        guard let channel = tcpListener, listenerFD >= 0 else { return nil }
        let held = fcntl(listenerFD, F_DUPFD_CLOEXEC, 3)
        guard held >= 0 else { return nil }
        try? channel.close().wait()
        listeners.removeAll { $0 === channel }
        tcpListener = nil
        listenerFD = held
        return held
    }

    /// Binary upgrade aborted: accept again on the socket kept by `releaseTCPListener`.
    public func readoptTCPListener(_ fd: Int32) throws {
        guard let bootstrap = serverBootstrap else { return }
        let tcp = try bootstrap.withBoundSocket(fd).wait()
        tcpListener = tcp
        listeners.append(tcp)
        listenerFD = fd
    }

    /// Binds the listeners (TCP, and the Unix socket when configured) and starts maintenance.
    /// `inheritedFD` is a listening socket passed by the previous process during a binary upgrade.
    public func start(inheritedFD: Int32? = nil) throws {
        raiseFileLimit()
        let general = config.general
        try loadTLSContexts()
        let backlog = Int32(general.backlog > 0 ? general.backlog : min(general.maxConnections, 4096))
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: backlog)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [unowned self] channel in
                self.totalConnections.wrappingIncrement(ordering: .relaxed)
                let session = ClientSession(runtime: self, loop: channel.eventLoop, id: self.nextConnectionID())
                // TCP-only socket options (Unix-socket clients share this bootstrap). On Linux an
                // accepted socket inherits them from the listener, where they are set once.
                if case .unixDomainSocket = channel.remoteAddress {
                    Self.setUnixBuffers(channel, bytes: self.unixSocketBufferBytes.load(ordering: .relaxed))
                } else if !Self.acceptedSocketsInheritTCPOptions {
                    Self.configureTCP(channel, general)
                }
                // Added synchronously (we are on the channel's loop): no future and promise per connection.
                do {
                    try channel.pipeline.syncOperations.addHandler(session)
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
        let fd: Int32
        if let inheritedFD {
            fd = inheritedFD
            ListenSocket.setCloseOnExec(fd, true)
            logger.info("binary upgrade: adopted listening socket fd \(fd)")
        } else {
            fd = try ListenSocket.open(host: general.host, port: Int(general.port), backlog: backlog)
        }
        listenerFD = fd
        if Self.acceptedSocketsInheritTCPOptions { Self.setTCPOptions(fd: fd, general) }
        serverBootstrap = bootstrap
        let tcp = try bootstrap.withBoundSocket(fd).wait()
        tcpListener = tcp
        listeners.append(tcp)
        logger.info("listening on \(general.host):\(general.port)")
        if let dir = general.unixSocketDir {
            let path = "\(dir)/.s.PGSQL.\(general.port)"
            unlink(path)
            // Create the socket file with its final mode (no window with the default umask).
            let mode = mode_t(general.unixSocketModeBits ?? 0o600)
            let oldMask = umask(~mode & 0o777)
            let bound = bootstrap.bind(unixDomainSocketPath: path)
            let unix: Channel
            do {
                unix = try bound.wait()
                umask(oldMask)
            } catch {
                umask(oldMask)
                throw error
            }
            chmod(path, mode)
            listeners.append(unix)
            logger.info("listening on unix socket \(path)")
        }
        if general.tlsRateLimitPerSecond > 0 {
            tlsHandshakeLimiter = HandshakeLimiter(perSecond: general.tlsRateLimitPerSecond)
        }
        if config.web.enabled {
            let web = config.web
            do {
                metricsServer = try MetricsServer.start(web: web, group: group, runtime: self)
                logger.info("metrics on http://\(web.host):\(web.port)/metrics")
            } catch {
                throw MetricsServer.ListenError(description: "cannot listen for metrics on \(web.host):\(web.port): \(error)")
            }
        }
        let loops = Array(group.makeIterator())
        maintenanceTask = group.next().scheduleRepeatedTask(initialDelay: .milliseconds(100), delay: .seconds(1)) {
            [weak self] _ in
            guard let self else { return }
            let now = NIODeadline.now()
            for s in self.authQueries { s.maintain(now: now, loops: loops) }
            FailedLoginLog.shared.flush(self.logger, now: now)
        }
        scheduleRetainCycle(in: .milliseconds(100), loops: loops)
        for loop in loops {
            guard let watch = loginWatches[ObjectIdentifier(loop)] else { continue }
            let interval = Self.loginSweepInterval
            loginSweepTasks.append(loop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
                for session in watch.expired(now: .now()) { session.startupTimedOut() }
            })
        }
        governor.startSweeps(loops: loops)
        if general.workerCpuAffinityPinning {
            let cores = System.coreCount
            if CPUAffinity.applies(enabled: true, cores: cores) {
                let n = CPUAffinity.pin(loops: loops, cores: cores)
                logger.info("worker_cpu_affinity_pinning: \(n) of \(loops.count) event loop(s) pinned to cores 0-\(loops.count - 1)")
            } else {
                logger.info("worker_cpu_affinity_pinning ignored: \(cores) core(s), pinning needs at least \(CPUAffinity.minimumCores)")
            }
        }
        statsTask = group.next().scheduleRepeatedTask(initialDelay: StatsAverager.period, delay: StatsAverager.period) {
            [weak self] _ in
            guard let self else { return }
            self.averager.tick(pools: self.unsortedPools, seconds: 15)
        }
    }

    /// The maintenance cycle (`RetainCycle`), every retain_connections_time (read again each time, so
    /// RELOAD changes the interval from the next cycle on).
    private func scheduleRetainCycle(in delay: TimeAmount, loops: [EventLoop]) {
        group.next().scheduleTask(in: delay) { [weak self] in
            guard let self, !self.shuttingDown.load(ordering: .relaxed) else { return }
            let (interval, maxCloses) = self.lock.withLock {
                (self._config.general.retainConnectionsTime, self._config.general.retainConnectionsMax)
            }
            RetainCycle.run(pools: self.unsortedPools + self.authQueries.map(\.executor.pool), coordinators: self.coordinators, maxCloses: maxCloses,
                            now: .now(), loops: loops)
            self.scheduleRetainCycle(in: .milliseconds(Int64(clamping: max(100, interval))), loops: loops)
        }
    }

    /// One query_wait_timeout check 50 ms from now; it schedules the next one while any client waits.
    func scheduleWaiterCheck() {
        group.next().scheduleTask(in: Self.waiterCheckInterval) { [weak self] in
            guard let self, !self.shuttingDown.load(ordering: .relaxed) else { return }
            let now = NIODeadline.now()
            let pools = self.unsortedPools
            for p in pools { p.expireWaiters(now: now) }
            if pools.contains(where: \.hasWaiters)
                || !self.waiterAlarm.checksFoundNobody(stillWaiting: { self.unsortedPools.contains(where: \.hasWaiters) }) {
                self.scheduleWaiterCheck()
            }
        }
    }

    /// TCP_NODELAY, keepalive and its timing, and TCP_USER_TIMEOUT from `general` on an accepted
    /// client socket (failures are ignored: best effort). Set with setsockopt(2) on the descriptor:
    /// NIO's `setOption` costs a future per option on every accepted connection.
    /// Linux copies TCP_NODELAY, SO_KEEPALIVE, the keepalive timings and TCP_USER_TIMEOUT from a
    /// listening socket to the sockets it accepts (and arms the keepalive timer), so setting them on
    /// the listener saves six setsockopt(2) calls per client connection.
    #if os(Linux)
    static let acceptedSocketsInheritTCPOptions = true
    #else
    static let acceptedSocketsInheritTCPOptions = false
    #endif

    /// The client-side TCP options from the config: (level, name, value).
    static func clientTCPOptions(_ general: General) -> [(Int32, Int32, Int32)] {
        let tcp = Int32(IPPROTO_TCP)
        return [
            (tcp, Int32(TCP_NODELAY), general.tcpNoDelay ? 1 : 0), (Int32(SOL_SOCKET), Int32(SO_KEEPALIVE), 1),
            (tcp, Int32(TCP_KEEPIDLE), Int32(clamping: max(1, general.tcpKeepalivesIdle))),
            (tcp, Int32(TCP_KEEPINTVL), Int32(clamping: max(1, general.tcpKeepalivesInterval))),
            (tcp, Int32(TCP_KEEPCNT), Int32(clamping: max(1, general.tcpKeepalivesCount))),
            (tcp, Int32(TCP_USER_TIMEOUT), Int32(clamping: general.tcpUserTimeout * 1000)),
        ]
    }

    /// Sets the client TCP options on a socket (the listener, where accepted sockets inherit them).
    static func setTCPOptions(fd: Int32, _ general: General) {
        for (level, name, value) in clientTCPOptions(general) {
            var v = value
            _ = setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    /// Sets the client TCP options on one accepted connection (where they are not inherited).
    static func configureTCP(_ channel: Channel, _ general: General) {
        let fd = ChannelOutput.socketDescriptor(of: channel)
        if fd >= 0 { return setTCPOptions(fd: fd, general) }
        for (level, name, value) in clientTCPOptions(general) {
            let option = ChannelOptions.Types.SocketOption(level: SocketOptionLevel(level), name: SocketOptionName(name))
            channel.setOption(option, value: SocketOptionValue(value)).whenComplete { _ in }
        }
    }

    /// The port actually bound (useful when the config says 0).
    public var boundPort: Int? { listeners.first?.localAddress?.port }

    /// Asks every non-admin client to leave: idle ones now, busy ones after their transaction.
    public func closeClientsGracefully() {
        shuttingDown.store(true, ordering: .relaxed)
        for c in clients where !isAdminDatabase(c.database) { c.shutdownRequested() }
    }

    /// Closes the listeners only; connected clients keep being served.
    public func stopAccepting() {
        for l in listeners { try? l.close().wait() }
        listeners.removeAll()
    }

    /// Stops accepting, closes pools and event loops.
    public func stop() {
        shuttingDown.store(true, ordering: .relaxed)
        metricsServer?.stop()
        maintenanceTask?.cancel()
        statsTask?.cancel()
        for task in loginSweepTasks { task.cancel() }
        governor.stopSweeps()
        for l in listeners { try? l.close().wait() }
        listeners.removeAll()
        for p in pools { p.shutdown() }
        for s in authQueries { s.shutdown() }
        if let dir = config.general.unixSocketDir { unlink("\(dir)/.s.PGSQL.\(config.general.port)") }
    }

    public func shutdownGroup() {
        try? group.syncShutdownGracefully()
    }

    /// 2,000 clients need more than the default 1,024 descriptors: raise the soft limit to the hard one.
    private func raiseFileLimit() {
        var rl = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl) == 0 else { return }
        if rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
        }
        let needed = UInt64(config.general.maxConnections) * 2 + 64
        if UInt64(rl.rlim_cur) < needed {
            logger.warning("open file limit is \(rl.rlim_cur); max_connections=\(config.general.maxConnections) may need up to \(needed) descriptors")
        }
    }
}
