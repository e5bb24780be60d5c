import ConfigKit
import Logging
import NIOConcurrencyHelpers

/// The running configuration and everything built from it that RELOAD replaces together: the
/// (database, user) pools, the `max_db_connections` coordinators, the `max_user_connections` budgets
/// and the auth_query services. One lock; swapped as a whole by `apply`, so a reader never sees the
/// pools of one config with the limits of another.
final class PoolRegistry {
    let connector: ServerConnector
    let waiterAlarm: WaiterAlarm
    /// `max_concurrent_creates`: connects in flight across all pools (lives as long as the process).
    let createSlots: SharedPermits
    private let logger: Logger

    private let lock = NIOLock()
    private var _config: Config
    private var _pools: [String: ServerPool] = [:]
    /// `max_db_connections` per database (kept across RELOAD while the database has a limit).
    private var _coordinators: [String: DatabaseCoordinator] = [:]
    /// The pools of each database with a coordinator (what `DatabaseCoordinator.siblings` reads).
    private var _coordinatedPools: [String: [ServerPool]] = [:]
    /// `max_user_connections`, one budget per user name (kept across RELOAD: it counts open connections).
    private var _userBudgets: [String: SharedPermits] = [:]
    /// auth_query per database (`AuthQueryService`: executor, cache, dynamic pools).
    private var _authQueries: [String: AuthQueryService] = [:]

    init(config: Config, connector: ServerConnector, waiterAlarm: WaiterAlarm, logger: Logger) {
        self.connector = connector
        self.waiterAlarm = waiterAlarm
        self.logger = logger
        self._config = config
        self.createSlots = SharedPermits(name: "max_concurrent_creates", limit: config.general.maxConcurrentCreates)
        self._coordinators = Self.coordinators(config: config, previous: [:])
        self._userBudgets = Self.userBudgets(config: config, previous: [:])
        self._pools = Self.buildPools(config: config, previous: [:], connector: connector, waiterAlarm: waiterAlarm,
                                      coordinators: _coordinators, createSlots: createSlots, userBudgets: _userBudgets)
        self._coordinatedPools = Self.coordinatedPools(_pools)
        for c in _coordinators.values { wireSiblings(c) }
        for b in _userBudgets.values { wireUserBudget(b) }
        self._authQueries = AuthQueryService.services(config: config, previous: [:], connector: connector,
                                                      waiterAlarm: waiterAlarm, logger: logger).services
        for service in _authQueries.values { wirePause(service) }
    }

    // MARK: - Reading

    var config: Config { lock.withLock { _config } }

    /// A few settings read under the lock without copying the whole config.
    func read<T>(_ body: (Config) -> T) -> T { lock.withLock { body(_config) } }

    static func key(_ database: String, _ user: String) -> String { database + "\u{0}" + user }

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

    /// The databases' coordinators, by name.
    var coordinators: [DatabaseCoordinator] {
        lock.withLock { Array(_coordinators.values) }.sorted { $0.database < $1.database }
    }

    /// Static pools and the dynamic (auth_query) ones, by database and user.
    var pools: [ServerPool] {
        unsortedPools.sorted { ($0.settings.database, $0.settings.user) < ($1.settings.database, $1.settings.user) }
    }

    /// The pools without sorting, for the periodic timers (the 50 ms waiter sweep must not sort).
    var unsortedPools: [ServerPool] { lock.withLock { Array(_pools.values) + _authQueries.values.flatMap(\.pools) } }

    func hasDatabase(_ database: String) -> Bool { lock.withLock { _config.pools[database] != nil } }

    // MARK: - RELOAD

    /// What `apply` replaced; the caller retires the old pools and services outside the lock.
    struct Replacement {
        var before: Config
        /// Old pools with their successor (nil: the pool is gone).
        var replaced: [(old: ServerPool, successor: ServerPool?)]
        var retiredAuthQueries: [AuthQueryService]
    }

    /// Installs `newConfig`: pools whose settings did not change are kept (with their servers and
    /// counts), the others are built anew. `whileLocked` runs inside the same critical section (the
    /// runtime's own settings switch with the pools). Nil when the config is unchanged.
    func apply(_ newConfig: Config, whileLocked: () -> Void) -> Replacement? {
        lock.withLock {
            let before = _config
            if newConfig == _config { return nil }
            let keptAuthQueries = _authQueries
            let retired: [AuthQueryService]
            (_authQueries, retired) = AuthQueryService.services(
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
            whileLocked()
            let replaced = old.filter { kv in !_pools.values.contains { $0 === kv.value } }
                .map { (old: $0.value, successor: _pools[$0.key]) }
            return Replacement(before: before, replaced: replaced, retiredAuthQueries: retired)
        }
    }

    /// After `apply`: raised limits serve the clients already waiting, replaced pools hand their
    /// waiters to their successors, removed pools and auth_query services close.
    func settle(_ r: Replacement, general: General) {
        for s in r.retiredAuthQueries { s.shutdown() }
        for c in coordinators { c.wake() }  // a raised max_db_connections serves waiting pools
        // Raised max_concurrent_creates / max_user_connections / pool_size-side limits serve waiters too.
        createSlots.setLimit(general.maxConcurrentCreates)
        for b in lock.withLock({ Array(_userBudgets.values) }) { b.setLimit(general.maxUserConnections) }
        for p in unsortedPools where p.hasWaiters { p.serveWaitersWithNewConnections() }
        // Replaced pools hand their waiters and future checkouts to the new pool of the same
        // (database, user); connected clients keep working. Removed pools close.
        for (old, successor) in r.replaced {
            if let successor { old.retire(successor: successor) } else { old.shutdown() }
        }
    }

    /// Closes every pool and auth_query service (shutdown).
    func shutdown() {
        for p in pools { p.shutdown() }
        for s in authQueries { s.shutdown() }
    }

    // MARK: - Building

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

    static func coordinatedPools(_ pools: [String: ServerPool]) -> [String: [ServerPool]] {
        Dictionary(grouping: pools.values.filter { $0.coordinator != nil }, by: \.settings.database)
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

    /// The coordinator finds the database's current pools through the registry's pool map.
    private func wireSiblings(_ c: DatabaseCoordinator) {
        let database = c.database
        c.siblings = { [weak self] in
            guard let self else { return [] }
            return self.lock.withLock { self._coordinatedPools[database] ?? [] }
        }
    }
}
