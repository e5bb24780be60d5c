import ConfigKit
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// auth_query for one database: the executor, the cache, and the dynamic pools of users found by
/// it — one per user in passthrough mode (no `server_user`: each logs in to PostgreSQL as itself,
/// MD5 pass-the-hash or SCRAM ClientKey passthrough), or one shared `server_user` pool in
/// dedicated mode.
///
/// Decisions live in `AuthQueryCache` and `DynamicPoolGC`; this class holds them under a lock and
/// runs what they ask for.
final class AuthQueryService {
    let database: String
    let settings: AuthQuery
    let executor: AuthQueryExecutor
    private let connector: ServerConnector
    private let waiterAlarm: WaiterAlarm?
    private let logger: Logger
    private let lock = NIOLock()
    private var poolConfig: Pool
    private var general: General
    private var cache: AuthQueryCache<(AuthQueryFetch) -> Void>
    private var dynamic: [String: Entry] = [:]
    private var counters = Counters()
    private var stopped = false

    struct Counters: Equatable {
        var authSuccess = 0
        var authFailure = 0
        var executorQueries = 0
        var executorErrors = 0
        var poolsCreated = 0
        var poolsDestroyed = 0
    }

    private final class Entry {
        var pool: ServerPool
        var clients = 0
        var gc = DynamicPoolGC()
        init(pool: ServerPool) { self.pool = pool }
    }

    /// Whether the database's listed users' pools are PAUSEd (set by the runtime): a dynamic pool
    /// created meanwhile starts paused too, as if it had existed at PAUSE.
    var staticPoolsPaused: () -> Bool = { false }

    /// Dedicated mode: every user found shares the `server_user` pool.
    var isDedicated: Bool { settings.serverUser != nil }

    init(database: String, pool: Pool, general: General, connector: ServerConnector, waiterAlarm: WaiterAlarm?,
         logger: Logger) {
        let settings = pool.authQuery ?? AuthQuery()
        self.database = database
        self.settings = settings
        self.poolConfig = pool
        self.general = general
        self.connector = connector
        self.waiterAlarm = waiterAlarm
        self.logger = logger
        self.cache = AuthQueryCache(policy: .init(ttlMs: settings.cacheTtl, failureTTLMs: settings.cacheFailureTtl,
                                                  minIntervalMs: settings.minInterval))
        self.executor = AuthQueryExecutor(
            pool: ServerPool(settings: Self.executorSettings(database: database, pool: pool, general: general),
                             connector: connector, waiterAlarm: waiterAlarm),
            query: settings.query,
            queryTimeout: .milliseconds(Int64(clamping: max(1000, min(general.queryWaitTimeout, 30_000)))))
    }

    /// The executor's own pool: `workers` connections as the auth_query `user` to its `database`.
    /// A client waits for a lookup at most connect_timeout (bounded by query_wait_timeout) when
    /// PostgreSQL cannot be reached: a prompt error rather than a hang.
    static func executorSettings(database: String, pool: Pool, general: General) -> PoolSettings {
        let aq = pool.authQuery ?? AuthQuery()
        let user = User(username: aq.user, password: aq.password, poolSize: max(1, aq.workers))
        var s = PoolSettings.resolve(poolName: database, pool: pool, user: user, general: general)
        s.serverDatabase = aq.database ?? database
        s.applicationName = "pg_doorman auth_query"
        s.startupParameters = []
        s.minPoolSize = 0
        s.mode = .transaction
        s.preparedStatementsCacheSize = 0
        s.cleanupServerConnections = false
        s.queryWaitTimeoutMs = max(1, min(general.queryWaitTimeout, general.connectTimeout))
        return s
    }

    /// The settings of a dynamic pool: in passthrough mode as a listed user with the fetched
    /// password (and the row's startup_parameters over the pool's); in dedicated mode as
    /// `server_user` with `server_password`.
    static func dynamicSettings(database: String, pool: Pool, general: General, user: String,
                                secret: AuthQuerySecret) -> PoolSettings {
        let aq = pool.authQuery ?? AuthQuery()
        if let serverUser = aq.serverUser {
            var u = User(username: serverUser, password: aq.serverPassword ?? "", poolSize: aq.poolSize)
            u.serverUsername = serverUser
            u.serverPassword = aq.serverPassword
            return PoolSettings.resolve(poolName: database, pool: pool, user: u, general: general)
        }
        var u = User(username: user, password: secret.password, poolSize: aq.poolSize)
        u.minPoolSize = aq.minPoolSize
        var s = PoolSettings.resolve(poolName: database, pool: pool, user: u, general: general)
        if !secret.startupParameters.isEmpty {
            var merged = s.startupParameterPairs
            for kv in secret.startupParameters {
                let name = SessionParameters.canonicalName(kv.key)
                merged.removeAll { SessionParameters.canonicalName($0.key) == name }
                merged.append(kv)
            }
            s.startupParameterPairs = merged.sorted { $0.key < $1.key }
        }
        return s
    }

    private static func nowMs(_ now: NIODeadline = .now()) -> UInt64 { now.uptimeNanoseconds / 1_000_000 }

    // MARK: - Lookups

    /// The password of `user` (cached, or fetched); `done` runs once on some loop.
    func lookup(user: String, on loop: EventLoop, done: @escaping (AuthQueryFetch) -> Void) {
        let step = lock.withLock { () -> AuthQueryCache<(AuthQueryFetch) -> Void>.Lookup in
            if stopped { return .cached(.unavailable("auth_query for this database was removed by RELOAD")) }
            return cache.lookup(user, now: Self.nowMs(), waiter: done)
        }
        switch step {
        case .cached(let outcome): done(outcome)
        case .joined: break
        case .fetch: runFetch(user: user, on: loop)
        }
    }

    /// An MD5 response did not match: refetch once (rate limit permitting). `done` gets the
    /// fresh answer, or nil when the cache was not allowed to look again.
    func md5Mismatch(user: String, on loop: EventLoop, done: @escaping (AuthQueryFetch?) -> Void) {
        let step = lock.withLock { cache.md5Mismatch(user, now: Self.nowMs(), waiter: { done($0) }) }
        switch step {
        case .rateLimited: done(nil)
        case .joined: break
        case .fetch: runFetch(user: user, on: loop)
        }
    }

    func scramMismatch(user: String) { lock.withLock { cache.scramMismatch(user) } }

    func recordAuthentication(success: Bool) {
        lock.withLock {
            if success { counters.authSuccess += 1 } else { counters.authFailure += 1 }
        }
    }

    private func runFetch(user: String, on loop: EventLoop) {
        lock.withLock { counters.executorQueries += 1 }
        executor.fetch(user: user, on: loop) { [self] outcome in
            let waiters: [(AuthQueryFetch) -> Void] = lock.withLock {
                switch outcome {
                case .unavailable, .unusable: counters.executorErrors += 1
                case .found, .notFound: break
                }
                return cache.fetched(user, outcome, now: Self.nowMs())
            }
            switch outcome {
            case .unavailable(let why):
                logger.warning("auth_query for database \"\(database)\" could not look up user \"\(user)\": \(why)")
            case .unusable(let why):
                logger.warning("auth_query for database \"\(database)\" returned an unusable row for user \"\(user)\": \(why)")
            case .found, .notFound:
                break
            }
            for w in waiters { w(outcome) }
        }
    }

    // MARK: - Dynamic pools

    /// The pool a user found by auth_query uses, created when needed, counted as one more client
    /// (until `leave`). A pool whose credentials no longer match the fetched password (changed in
    /// PostgreSQL) is replaced: its waiters and later checkouts move to the new one.
    func join(user: String, secret: AuthQuerySecret) -> ServerPool? {
        let key = settings.serverUser ?? user
        var retired: (ServerPool, ServerPool)?
        let staticPaused = staticPoolsPaused()
        let pool: ServerPool? = lock.withLock {
            guard !stopped else { return nil }
            let wanted = Self.dynamicSettings(database: database, pool: poolConfig, general: general, user: user,
                                              secret: secret)
            let paused = staticPaused || dynamic.values.contains { $0.pool.paused }
            func makePool() -> ServerPool {
                let p = ServerPool(settings: wanted, connector: connector, waiterAlarm: waiterAlarm)
                if paused { p.pause() }
                return p
            }
            if let e = dynamic[key] {
                if e.pool.settings != wanted || e.pool.isClosed {
                    let fresh = makePool()
                    retired = (e.pool, fresh)
                    e.pool = fresh
                }
                e.clients += 1
                return e.pool
            }
            let e = Entry(pool: makePool())
            e.clients = 1
            dynamic[key] = e
            counters.poolsCreated += 1
            return e.pool
        }
        if let (old, fresh) = retired { old.retire(successor: fresh) }
        return pool
    }

    /// A client of the dynamic pool of `user` disconnected.
    func leave(user: String) {
        let key = settings.serverUser ?? user
        lock.withLock {
            if let e = dynamic[key], e.clients > 0 { e.clients -= 1 }
        }
    }

    var pools: [ServerPool] { lock.withLock { dynamic.values.map(\.pool) } }

    /// Garbage collection of dynamic pools (`DynamicPoolGC`); the retain cycle closes idle executor connections.
    func maintain(now: NIODeadline, loops: [EventLoop]) {
        let delay = settings.dynamicPoolGcDelay
        let nowMs = Self.nowMs(now)
        var collected: [ServerPool] = []
        lock.withLock {
            for (key, e) in dynamic {
                let c = e.pool.counts(now: now)
                if e.gc.collectable(clients: e.clients, servers: c.idle + c.active + c.opening, waiting: c.waiting,
                                    paused: e.pool.paused, now: nowMs, delay: delay) {
                    dynamic.removeValue(forKey: key)
                    counters.poolsDestroyed += 1
                    collected.append(e.pool)
                }
            }
        }
        for p in collected {
            logger.info("auth_query: dynamic pool \(p.settings.user)@\(database) removed after \(delay) ms without clients or servers")
            p.shutdown()
        }
    }

    /// RELOAD kept this service (its auth_query settings are unchanged): the pool's other settings
    /// may have changed, so dynamic pools whose settings differ are replaced as static ones are.
    func reconfigure(pool: Pool, general: General) {
        var replaced: [(ServerPool, ServerPool)] = []
        lock.withLock {
            let (previousPool, previousGeneral) = (poolConfig, self.general)
            poolConfig = pool
            self.general = general
            for e in dynamic.values {
                let old = e.pool
                // The row's own parameters: those the previous config did not give.
                let row = Self.rowParameters(of: old, pool: previousPool, general: previousGeneral)
                let wanted = Self.dynamicSettings(
                    database: database, pool: pool, general: general, user: old.settings.user,
                    secret: AuthQuerySecret(password: old.settings.clientPassword, startupParameters: row))
                if wanted != old.settings {
                    let fresh = ServerPool(settings: wanted, connector: connector, waiterAlarm: waiterAlarm)
                    e.pool = fresh
                    replaced.append((old, fresh))
                }
            }
        }
        for (old, fresh) in replaced { old.retire(successor: fresh) }
    }

    /// The startup_parameters a passthrough pool got from its auth_query row (those not from config).
    private static func rowParameters(of pool: ServerPool, pool config: Pool, general: General) -> [PoolSettings.KV] {
        var configured: [String: String] = [:]
        for kv in config.effectiveStartupParameters(general) { configured[kv.key] = kv.value }
        return pool.settings.startupParameterPairs.filter { configured[$0.key] != $0.value }
    }

    /// RELOAD removed or changed this database's auth_query: no more lookups; the dynamic pools and
    /// the executor close.
    func shutdown() {
        let all: [ServerPool] = lock.withLock {
            stopped = true
            let p = dynamic.values.map(\.pool)
            counters.poolsDestroyed += p.count
            dynamic.removeAll()
            return p
        }
        for p in all { p.shutdown() }
        executor.shutdown()
    }

    /// The SHOW AUTH_QUERY row.
    struct Snapshot {
        var cacheEntries: Int
        var cache: AuthQueryCache<(AuthQueryFetch) -> Void>.Counters
        var counters: Counters
        var dynamicPools: Int
    }

    func snapshot() -> Snapshot {
        lock.withLock {
            Snapshot(cacheEntries: cache.count, cache: cache.counters, counters: counters, dynamicPools: dynamic.count)
        }
    }

    // MARK: - The services of a config

    /// One service per database with auth_query; one whose auth_query settings are unchanged is
    /// kept (cache and dynamic pools included). Returns the services and those to shut down.
    static func services(config: Config, previous: [String: AuthQueryService], connector: ServerConnector,
                         waiterAlarm: WaiterAlarm?, logger: Logger)
        -> (services: [String: AuthQueryService], retired: [AuthQueryService])
    {
        var out: [String: AuthQueryService] = [:]
        for (name, pool) in config.pools {
            guard let aq = pool.authQuery else { continue }
            if let old = previous[name], old.settings == aq,
               old.sameExecutorTarget(pool: pool, general: config.general) {
                old.reconfigure(pool: pool, general: config.general)
                out[name] = old
            } else {
                out[name] = AuthQueryService(database: name, pool: pool, general: config.general, connector: connector,
                                             waiterAlarm: waiterAlarm, logger: logger)
            }
        }
        let retired = previous.filter { out[$0.key] !== $0.value }.map(\.value)
        return (out, retired)
    }

    private func sameExecutorTarget(pool: Pool, general: General) -> Bool {
        executor.pool.settings == Self.executorSettings(database: database, pool: pool, general: general)
    }
}
