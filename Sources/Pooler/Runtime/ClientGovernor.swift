import Atomics
import ConfigKit
import NIOConcurrencyHelpers
import NIOCore

/// The limits the pooler enforces on clients rather than on servers: how many may be logged in per
/// database and per user (`ClientLimits`), and the timeouts on what a logged-in client does
/// (`SessionTimeouts`), checked by one sweep per event loop over that loop's clients. RELOAD
/// replaces the settings (`apply`); connected clients are measured against the new ones from the
/// next sweep on.
final class ClientGovernor {
    /// How often each loop looks at its clients while any timeout is configured.
    static let sweepInterval = TimeAmount.milliseconds(250)

    private let lock = NIOLock()
    private var limits = ClientLimits()
    /// Timeouts by pool key (`PoolerRuntime.key(database, user)`); pools with all off are absent.
    private var timeouts: [String: SessionTimeouts.Limits] = [:]
    private let anyTimeout = ManagedAtomic<Bool>(false)
    private let watches: [ObjectIdentifier: SessionWatch<ClientSession>]
    private var sweeps: [RepeatedTask] = []

    init(loops: [EventLoop]) {
        var w: [ObjectIdentifier: SessionWatch<ClientSession>] = [:]
        for loop in loops { w[ObjectIdentifier(loop)] = SessionWatch() }
        watches = w
    }

    /// Takes the limits and timeouts of `config` (at start and at every RELOAD).
    func apply(_ config: Config) {
        let (settings, table) = Self.settings(config)
        lock.withLock {
            limits.settings = settings
            timeouts = table
        }
        anyTimeout.store(!table.isEmpty, ordering: .relaxed)
    }

    static func settings(_ config: Config) -> (ClientLimits.Settings, [String: SessionTimeouts.Limits]) {
        let g = config.general
        var s = ClientLimits.Settings(defaultPerDatabase: g.maxDbClientConnections, perUser: g.maxUserClientConnections)
        var table: [String: SessionTimeouts.Limits] = [:]
        for (name, pool) in config.pools {
            if let n = pool.maxDbClientConnections { s.perDatabase[name] = n }
            for user in pool.users {
                let t = timeouts(general: g, pool: pool, user: user)
                if !t.isOff { table[PoolerRuntime.key(name, user.username)] = t }
            }
        }
        return (s, table)
    }

    /// user ?? pool ?? general, per timeout (`proxy_copy_data_timeout` is general only).
    static func timeouts(general g: General, pool p: Pool, user u: User) -> SessionTimeouts.Limits {
        SessionTimeouts.Limits(
            queryMs: u.queryTimeout ?? p.queryTimeout ?? g.queryTimeout,
            idleTransactionMs: u.idleTransactionTimeout ?? p.idleTransactionTimeout ?? g.idleTransactionTimeout,
            transactionMs: u.transactionTimeout ?? p.transactionTimeout ?? g.transactionTimeout,
            clientIdleMs: u.clientIdleTimeout ?? p.clientIdleTimeout ?? g.clientIdleTimeout,
            copyDataMs: g.proxyCopyDataTimeout)
    }

    // MARK: - Client limits

    /// A client finished authenticating: counted in, or refused (nothing counted).
    func admit(database: String, user: String) -> ClientLimits.Refusal? {
        lock.withLock { limits.admit(database: database, user: user) }
    }

    /// An admitted client ended.
    func leave(database: String, user: String) {
        lock.withLock { limits.leave(database: database, user: user) }
    }

    // MARK: - Timeouts

    func watch(for loop: EventLoop) -> SessionWatch<ClientSession>? { watches[ObjectIdentifier(loop)] }

    /// Starts one sweep per loop; each does nothing while no timeout is configured.
    func startSweeps(loops: [EventLoop]) {
        for loop in loops {
            guard let watch = watch(for: loop) else { continue }
            let interval = Self.sweepInterval
            sweeps.append(loop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [weak self] _ in
                guard let self, self.anyTimeout.load(ordering: .relaxed), watch.count > 0 else { return }
                let table = self.lock.withLock { self.timeouts }
                let now = NIODeadline.now()
                for session in watch.members {
                    guard let limits = table[session.poolKey] else { continue }
                    session.checkTimeouts(now: now, limits: limits)
                }
            })
        }
    }

    func stopSweeps() {
        for t in sweeps { t.cancel() }
        sweeps.removeAll()
    }
}
