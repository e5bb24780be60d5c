import Atomics
import ConfigKit
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// The running pooler: it owns the event loops and wires the parts together — the pool registry
/// (config, pools, RELOAD), the session registry, the listener, the cancel forwarder and the janitor —
/// and holds the few settings the client sessions read on every connection.
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
    /// Clients still logging in, per event loop (each watch is used only on its loop).
    private let loginWatches: [ObjectIdentifier: LoginDeadlines<ClientSession>]
    /// RelayLoops by the NIO loop each is paired with (empty unless `relayLoopsEnabled`).
    let relayByLoop: [ObjectIdentifier: RelayLoop]
    /// The same RelayLoops in the order of their NIO loops.
    let relayLoops: [RelayLoop]
    public let startedAt = NIODeadline.now()

    /// The config and what RELOAD rebuilds from it.
    let registry: PoolRegistry
    /// Client sessions, ids and the max_connections count.
    let sessions = SessionRegistry()
    private(set) var listener: Listener?
    private let janitor: Janitor
    private let lock = NIOLock()
    private var _migrationSender: MigrationSender?
    /// After a binary upgrade, the way to the old process for cancels of its clients (set before
    /// `start`, never changed).
    var cancelRelay: CancelRelay?
    private let migrationActive = ManagedAtomic<Bool>(false)
    public let totalConnections = ManagedAtomic<Int>(0)
    public let cancelRequests = ManagedAtomic<Int>(0)
    /// `tls_rate_limit_per_second` (read at start, like the reference: not reloadable).
    private(set) var tlsHandshakeLimiter: HandshakeLimiter?
    /// The `/metrics` listener when `web.enabled`.
    private(set) var metricsServer: MetricsServer?
    private let shuttingDown = ManagedAtomic<Bool>(false)
    /// Starts the query_wait_timeout checks when a client starts waiting (see `scheduleWaiterCheck`).
    let waiterAlarm = WaiterAlarm()
    /// Client limits and the pooler's timeouts on clients.
    let governor: ClientGovernor
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
        var relays: [ObjectIdentifier: RelayLoop] = [:]
        var relayList: [RelayLoop] = []
        if Self.relayLoopsEnabled {
            for (i, loop) in group.makeIterator().enumerated() {
                guard let relay = try? RelayLoop(name: "pgdm relay \(i)") else { continue }
                relay.companion = loop
                relays[ObjectIdentifier(loop)] = relay
                relayList.append(relay)
            }
        }
        self.relayByLoop = relays
        self.relayLoops = relayList
        var watches: [ObjectIdentifier: LoginDeadlines<ClientSession>] = [:]
        for loop in group.makeIterator() { watches[ObjectIdentifier(loop)] = LoginDeadlines() }
        for relay in relayList { watches[ObjectIdentifier(relay)] = LoginDeadlines() }
        self.loginWatches = watches
        self.governor = ClientGovernor(loops: Array(group.makeIterator()) + relayList)
        self.logger = logger
        self.configPath = configPath
        self.memory = MemoryBudget(limit: Int(clamping: config.general.maxMemoryUsage))
        self.connector = ServerConnector(tcpNoDelay: config.general.tcpNoDelay, relays: relays)
        self.registry = PoolRegistry(config: config, connector: connector, waiterAlarm: waiterAlarm, logger: logger)
        let janitor = Janitor(group: group, registry: registry, logger: logger, shuttingDown: shuttingDown)
        self.janitor = janitor
        let alarm = waiterAlarm
        waiterAlarm.onStart = { [weak janitor] in janitor?.scheduleWaiterCheck(alarm: alarm) }
        applySettings(config)
    }

    /// The settings the sessions read, from a new config (at start, and under the registry's lock at
    /// RELOAD so that they switch with the pools).
    func applySettings(_ config: Config) {
        let general = config.general
        governor.apply(config)
        mockMD5.store(Self.allUsersHaveMD5Hashes(config), ordering: .relaxed)
        loginTimeoutMs.store(general.clientLoginTimeout, ordering: .relaxed)
        streamThresholdBytes.store(Self.streamThreshold(general), ordering: .relaxed)
        unixSocketBufferBytes.store(Int(clamping: general.unixSocketBufferSize), ordering: .relaxed)
        authFailures.configure(delayMs: general.authFailureDelay)
    }

    /// Plain transaction-mode connections move to RelayLoops of our own after their login (see
    /// `RelayLoop`) unless `PG_DOORMAN_RELAY_LOOP=0` keeps every connection on SwiftNIO (a
    /// diagnostic switch: same behaviour, more CPU per transaction).
    static var relayLoopsEnabled: Bool { getenv("PG_DOORMAN_RELAY_LOOP").map { String(cString: $0) != "0" } ?? true }

    /// The RelayLoop paired with the NIO loop `loop` (nil: relayed on `loop` itself).
    @inline(__always)
    func relayLoop(for loop: EventLoop) -> RelayLoop? {
        relayByLoop.isEmpty ? nil : relayByLoop[ObjectIdentifier(loop)]
    }

    /// The login watch of `loop` (nil for a loop outside the group).
    func loginWatch(for loop: EventLoop) -> LoginDeadlines<ClientSession>? {
        loginWatches[ObjectIdentifier(loop)]
    }

    // MARK: - Configuration and pools

    public var config: Config { registry.config }

    static func key(_ database: String, _ user: String) -> String { PoolRegistry.key(database, user) }

    var createSlots: SharedPermits { registry.createSlots }
    var coordinators: [DatabaseCoordinator] { registry.coordinators }
    func pool(database: String, user: String) -> ServerPool? { registry.pool(database: database, user: user) }
    func staticPoolsPaused(_ database: String) -> Bool { registry.staticPoolsPaused(database) }
    func authQuery(for database: String) -> AuthQueryService? { registry.authQuery(for: database) }
    var authQueries: [AuthQueryService] { registry.authQueries }
    /// Static pools and the dynamic (auth_query) ones.
    public var pools: [ServerPool] { registry.pools }
    var unsortedPools: [ServerPool] { registry.unsortedPools }
    func hasDatabase(_ database: String) -> Bool { registry.hasDatabase(database) }

    func isAdminDatabase(_ database: String) -> Bool { database == "pgdoorman" || database == "pgbouncer" }

    var adminUsername: String { registry.read { $0.general.adminUsername } }
    var adminPassword: String { registry.read { $0.general.adminPassword } }

    func hbaDecision(address: SocketAddress?, tls: Bool, database: String, user: String) -> HbaDecision {
        // Only the two settings used, not a copy of all of `general`.
        let (pgHba, legacy) = registry.read { ($0.general.pgHba, $0.general.hba) }
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
    public func continueConnectionIDs(after last: Int32) { sessions.continueConnectionIDs(after: last) }

    /// The last client id handed out.
    public var lastConnectionID: Int32 { sessions.lastConnectionID }

    /// Undoes `admitClient` for a client that did not become a session.
    func releaseAdmission() { sessions.releaseAdmission() }

    func nextConnectionID() -> Int32 { sessions.nextConnectionID() }

    /// Counts a new client against max_connections (false: over it, not counted).
    func admitClient() -> Bool { sessions.admit(maxConnections: registry.read { $0.general.maxConnections }) }

    func sessionStarted(_ s: ClientSession) { sessions.started(s) }

    func sessionEnded(_ s: ClientSession, admin: Bool) {
        let (_, wasLoggedIn) = sessions.ended(s)
        if s.countedInClientLimits {
            s.countedInClientLimits = false
            governor.leave(database: s.database, user: s.user)
        }
        if wasLoggedIn && !s.user.isEmpty && !s.handedOver && registry.read({ $0.general.logClientDisconnections }) {
            logger.info("client \(s.peer) disconnected: \(s.user)@\(s.database)")
        }
    }

    /// A client finished logging in (called once per session, on its loop).
    func logClientConnection(_ s: ClientSession) {
        sessions.loggedIn(s)
        if registry.read({ $0.general.logClientConnections }) {
            logger.info("client \(s.peer) connected: \(s.user)@\(s.database) application_name=\(s.applicationName)")
        }
    }

    var clients: [ClientSession] { sessions.clients }

    var currentClients: Int { sessions.currentClients }

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

    /// A CancelRequest to PostgreSQL (`tls`: the pool's server TLS settings when the cancelled server
    /// connection uses TLS).
    func sendCancel(host: String, port: Int, processID: Int32, secretKey: Int32, tls: ServerTLSSettings? = nil) {
        CancelForwarder(group: group, tls: self.tls).send(host: host, port: port, processID: processID,
                                                           secretKey: secretKey, tls: tls)
    }

    // MARK: - Lifecycle

    var isShuttingDown: Bool { shuttingDown.load(ordering: .relaxed) }

    /// The descriptor of the TCP listener (handed to the next process by a binary upgrade).
    public var listenerFD: Int32 { listener?.tcpFD ?? -1 }

    /// Binary upgrade, step 1: stop accepting on the TCP socket but keep the socket (and its
    /// backlog) for the new process (`Listener.releaseTCP`).
    public func releaseTCPListener() -> Int32? { listener?.releaseTCP() }

    /// Binary upgrade aborted: accept again on the socket kept by `releaseTCPListener`.
    public func readoptTCPListener(_ fd: Int32) throws { try listener?.readoptTCP(fd) }

    /// Binds the listeners (TCP, and the Unix socket when configured) and starts maintenance.
    /// `inheritedFD` is a listening socket passed by the previous process during a binary upgrade.
    public func start(inheritedFD: Int32? = nil) throws {
        FileLimit.raise(forClients: config.general.maxConnections, logger: logger)
        let general = config.general
        try loadTLSContexts()
        let backlog = Int32(general.backlog > 0 ? general.backlog : min(general.maxConnections, 4096))
        let listener = Listener(group: group, relays: relayLoops, backlog: backlog, tcpNoDelay: general.tcpNoDelay,
                                logger: logger, accept: { [unowned self] channel in
            self.totalConnections.wrappingIncrement(ordering: .relaxed)
            let session = ClientSession(runtime: self, loop: channel.eventLoop, id: self.nextConnectionID())
            // TCP-only socket options (Unix-socket clients share this listener's bootstrap). On Linux an
            // accepted socket inherits them from the listener, where they are set once.
            if case .unixDomainSocket = channel.remoteAddress {
                Listener.setUnixBuffers(channel, bytes: self.unixSocketBufferBytes.load(ordering: .relaxed))
            } else if !Listener.acceptedSocketsInheritTCPOptions {
                Listener.configureTCP(channel, general)
            }
            try channel.pipeline.syncOperations.addHandler(session)
        }, acceptOnRelay: { [unowned self] fd, address, relay in
            self.totalConnections.wrappingIncrement(ordering: .relaxed)
            ClientSession(runtime: self, loop: relay, id: self.nextConnectionID()).startOnRelay(fd: fd, peer: address, relay: relay)
        })
        self.listener = listener
        try listener.open(general, backlog: backlog, inheritedFD: inheritedFD, logger: logger)
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
        janitor.start(loops: loops, loginLoops: loops + relayLoops, loginWatches: loginWatches, governor: governor,
                      averager: averager)
        governor.startSweeps(loops: relayLoops)
        if general.workerCpuAffinityPinning {
            let cores = System.coreCount
            if CPUAffinity.applies(enabled: true, cores: cores) {
                let n = CPUAffinity.pin(loops: loops, cores: cores)
                CPUAffinity.pin(loops: relayLoops, cores: cores)  // RelayLoop i beside event loop i
                logger.info("worker_cpu_affinity_pinning: \(n) of \(loops.count) event loop(s) pinned to cores 0-\(loops.count - 1)")
            } else {
                logger.info("worker_cpu_affinity_pinning ignored: \(cores) core(s), pinning needs at least \(CPUAffinity.minimumCores)")
            }
        }
    }

    /// The port actually bound (useful when the config says 0).
    public var boundPort: Int? { listener?.boundPort }

    /// Asks every non-admin client to leave: idle ones now, busy ones after their transaction.
    public func closeClientsGracefully() {
        shuttingDown.store(true, ordering: .relaxed)
        for c in clients where !isAdminDatabase(c.database) { c.shutdownRequested() }
    }

    /// Closes the listeners only; connected clients keep being served.
    public func stopAccepting() {
        listener?.close()
    }

    /// Stops accepting, closes pools and event loops.
    public func stop() {
        shuttingDown.store(true, ordering: .relaxed)
        metricsServer?.stop()
        janitor.stop()
        governor.stopSweeps()
        listener?.close()
        registry.shutdown()
        if let dir = config.general.unixSocketDir { unlink("\(dir)/.s.PGSQL.\(config.general.port)") }
    }

    public func shutdownGroup() {
        for relay in relayLoops { relay.syncShutdown() }
        try? group.syncShutdownGracefully()
    }
}
