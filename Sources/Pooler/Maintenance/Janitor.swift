import Atomics
import Logging
import NIOCore

/// The pooler's periodic work, in one place: the retain cycle (idle_timeout, server_lifetime,
/// min_pool_size, reserve), query_wait_timeout checks while clients wait, client_login_timeout
/// sweeps per loop, the client timeouts' sweeps (`ClientGovernor`), auth_query maintenance, the
/// failed-login log and the 15 s statistics averages. The decisions are in the pure pieces it calls
/// (`RetainPlanner`, `LoginDeadlines`, `SessionTimeouts`, `WaiterAlarm`); this only schedules.
final class Janitor {
    /// How often each loop looks for clients past client_login_timeout (a client is cut off up to a
    /// second after it).
    static let loginSweepInterval = TimeAmount.seconds(1)
    static let waiterCheckInterval = TimeAmount.milliseconds(50)

    private let group: EventLoopGroup
    private let registry: PoolRegistry
    private let logger: Logger
    /// The runtime's shutting-down flag (graceful shutdown or stop): the cycles end with it.
    private let stopped: ManagedAtomic<Bool>
    private var maintenanceTask: RepeatedTask?
    private var statsTask: RepeatedTask?
    private var loginSweepTasks: [RepeatedTask] = []

    init(group: EventLoopGroup, registry: PoolRegistry, logger: Logger, shuttingDown: ManagedAtomic<Bool>) {
        self.stopped = shuttingDown
        self.group = group
        self.registry = registry
        self.logger = logger
    }

    /// Starts every periodic task (once, at start).
    /// `loginLoops`: the loops where clients log in (the NIO loops and the RelayLoops), each with its watch.
    func start(loops: [EventLoop], loginLoops: [EventLoop], loginWatches: [ObjectIdentifier: LoginDeadlines<ClientSession>],
               governor: ClientGovernor, averager: StatsAverager) {
        maintenanceTask = group.next().scheduleRepeatedTask(initialDelay: .milliseconds(100), delay: .seconds(1)) {
            [weak self] _ in
            guard let self else { return }
            let now = NIODeadline.now()
            for s in self.registry.authQueries { s.maintain(now: now, loops: loops) }
            FailedLoginLog.shared.flush(self.logger, now: now)
        }
        scheduleRetainCycle(in: .milliseconds(100), loops: loops)
        for loop in loginLoops {
            guard let watch = loginWatches[ObjectIdentifier(loop)] else { continue }
            let interval = Self.loginSweepInterval
            loginSweepTasks.append(loop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
                for session in watch.expired(now: .now()) { session.startupTimedOut() }
            })
        }
        governor.startSweeps(loops: loops)
        statsTask = group.next().scheduleRepeatedTask(initialDelay: StatsAverager.period, delay: StatsAverager.period) {
            [weak self] _ in
            guard let self else { return }
            averager.tick(pools: self.registry.unsortedPools, seconds: 15)
        }
    }

    /// The maintenance cycle (`RetainCycle`), every retain_connections_time (read again each time, so
    /// RELOAD changes the interval from the next cycle on).
    private func scheduleRetainCycle(in delay: TimeAmount, loops: [EventLoop]) {
        group.next().scheduleTask(in: delay) { [weak self] in
            guard let self, !self.stopped.load(ordering: .relaxed) else { return }
            let (interval, maxCloses) = self.registry.read {
                ($0.general.retainConnectionsTime, $0.general.retainConnectionsMax)
            }
            let pools = self.registry.unsortedPools + self.registry.authQueries.map(\.executor.pool)
            RetainCycle.run(pools: pools, coordinators: self.registry.coordinators, maxCloses: maxCloses,
                            now: .now(), loops: loops)
            self.scheduleRetainCycle(in: .milliseconds(Int64(clamping: max(100, interval))), loops: loops)
        }
    }

    /// One query_wait_timeout check 50 ms from now; it schedules the next one while any client waits
    /// (`WaiterAlarm` starts the first when a client starts waiting).
    func scheduleWaiterCheck(alarm: WaiterAlarm) {
        group.next().scheduleTask(in: Self.waiterCheckInterval) { [weak self] in
            guard let self, !self.stopped.load(ordering: .relaxed) else { return }
            let now = NIODeadline.now()
            let pools = self.registry.unsortedPools
            for p in pools { p.expireWaiters(now: now) }
            if pools.contains(where: \.hasWaiters)
                || !alarm.checksFoundNobody(stillWaiting: { self.registry.unsortedPools.contains(where: \.hasWaiters) }) {
                self.scheduleWaiterCheck(alarm: alarm)
            }
        }
    }

    /// Shutdown: no more periodic work (the governor's sweeps are stopped by its owner).
    func stop() {
        maintenanceTask?.cancel()
        statsTask?.cancel()
        for task in loginSweepTasks { task.cancel() }
    }
}
