import NIOCore
import Testing
@testable import Pooler

/// The pool's decisions with fake servers and a fixed clock: no event loop, no socket.
struct PoolStateMachineTests {
    final class FakeServer: PooledServer, CustomStringConvertible {
        let name: String
        let loopKey: ObjectIdentifier
        var lastUsed: NIODeadline
        let createdAt: NIODeadline
        var countedInPool = false
        var verdict = ServerReuse.reusable
        var epoch = 0

        init(_ name: String, loop: Loop, at: NIODeadline) {
            self.name = name
            self.loopKey = ObjectIdentifier(loop)
            self.lastUsed = at
            self.createdAt = at
        }

        func reuse(epoch poolEpoch: Int, now: NIODeadline) -> ServerReuse {
            if verdict != .reusable { return verdict }
            return epoch < poolEpoch ? .staleEpoch : .reusable
        }

        var description: String { name }
    }

    /// Stands for an event loop (only its identity matters).
    final class Loop {}

    typealias Machine = PoolStateMachine<FakeServer, String>

    static let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
    static let loopA = Loop(), loopB = Loop()
    static var a: ObjectIdentifier { ObjectIdentifier(loopA) }
    static var b: ObjectIdentifier { ObjectIdentifier(loopB) }

    static func machine(poolSize: Int = 2, minPoolSize: Int = 0, roundRobin: Bool = false, idleCheckMs: UInt64 = 0,
                        limits: PoolLimits = PoolLimits()) -> Machine {
        Machine(settings: .init(poolSize: poolSize, minPoolSize: minPoolSize, roundRobin: roundRobin,
                                idleCheckMs: idleCheckMs, queryWaitTimeoutMs: 5_000, idleTimeoutMs: 60_000),
                limits: limits)
    }

    /// Opens a server the way the runner does: admission, connect started, connected, returned.
    @discardableResult
    static func open(_ m: inout Machine, _ name: String, loop: Loop = loopA, now: NIODeadline = t0) -> FakeServer {
        let admission = m.admit(now: now, waitedMs: nil, anticipate: false, xactP99Micros: { 0 }, jitter: { 0.5 })
        guard case .mayOpen(let reserve) = admission else {
            Issue.record("\(name): \(admission)")
            return FakeServer(name, loop: loop, at: now)
        }
        m.createStarted(reserve: reserve)
        let s = FakeServer(name, loop: loop, at: now)
        m.connected(s)
        return s
    }

    static func name(_ take: Machine.IdleTake) -> String {
        switch take {
        case .none: return "none"
        case .use(let s): return "use \(s)"
        case .discard(let s): return "discard \(s)"
        case .check(let s): return "check \(s)"
        }
    }

    static func name(_ c: Machine.Checkin) -> String {
        switch c {
        case .discard: return "discard"
        case .idled: return "idled"
        case .handTo(let p): return "hand to \(p.waiter)"
        }
    }

    // MARK: - Checkout and checkin

    @Test func anIdleServerOnTheClientsLoopComesFirstThenAny() {
        var m = Self.machine(poolSize: 3)
        let s1 = Self.open(&m, "s1", loop: Self.loopA)
        let s2 = Self.open(&m, "s2", loop: Self.loopB)
        let s3 = Self.open(&m, "s3", loop: Self.loopA)
        for s in [s1, s2, s3] { _ = m.checkin(s, now: Self.t0) }
        // LIFO on the same loop: s3, then s1; then the other loop's s2.
        #expect(Self.name(m.takeIdle(preferring: Self.a, now: Self.t0)) == "use s3")
        #expect(Self.name(m.takeIdle(preferring: Self.a, now: Self.t0)) == "use s1")
        #expect(Self.name(m.takeIdle(preferring: Self.a, now: Self.t0)) == "use s2")
        #expect(Self.name(m.takeIdle(preferring: Self.a, now: Self.t0)) == "none")
    }

    @Test func roundRobinTakesTheLeastRecentlyUsed() {
        var m = Self.machine(poolSize: 2, roundRobin: true)
        let s1 = Self.open(&m, "s1")
        let s2 = Self.open(&m, "s2")
        _ = m.checkin(s1, now: Self.t0)
        _ = m.checkin(s2, now: Self.t0)
        #expect(Self.name(m.takeIdle(preferring: Self.a, now: Self.t0)) == "use s1")
        _ = m.checkin(s1, now: Self.t0)
        #expect(Self.name(m.takeIdle(preferring: Self.a, now: Self.t0)) == "use s2")
        #expect(Self.name(m.takeIdle(preferring: Self.a, now: Self.t0)) == "use s1")
    }

    @Test func eachReuseVerdictDiscardsAtCheckoutAndCheckin() {
        for verdict in [ServerReuse.broken, .cancelled, .expired, .closed] {
            var m = Self.machine()
            let s = Self.open(&m, "s")
            #expect(Self.name(m.checkin(s, now: Self.t0)) == "idled")
            s.verdict = verdict
            #expect(Self.name(m.takeIdle(preferring: Self.a, now: Self.t0)) == "discard s", "\(verdict)")
            do { let r = m.forget(s); #expect(r) }
            do { let r = m.forget(s); #expect(!r, "counted once") }
            #expect(m.open == 0)
            let t = Self.open(&m, "t")
            t.verdict = verdict
            #expect(Self.name(m.checkin(t, now: Self.t0)) == "discard", "\(verdict)")
        }
    }

    @Test func aLongIdleServerIsCheckedBeforeUse() {
        var m = Self.machine(idleCheckMs: 1_000)
        let s = Self.open(&m, "s")
        _ = m.checkin(s, now: Self.t0)
        #expect(Self.name(m.takeIdle(preferring: Self.a, now: Self.t0 + .milliseconds(500))) == "use s")
        _ = m.checkin(s, now: Self.t0)
        #expect(Self.name(m.takeIdle(preferring: Self.a, now: Self.t0 + .milliseconds(1_500))) == "check s")
    }

    @Test func atPoolSizeClientsWaitAndACheckinGoesToTheOldestOnItsLoop() {
        var m = Self.machine(poolSize: 1)
        let s = Self.open(&m, "s", loop: Self.loopB)
        let full = m.admit(now: Self.t0, waitedMs: nil, anticipate: true, xactP99Micros: { 0 }, jitter: { 0.5 })
        #expect(full == .hold)
        m.enqueue("first", loopKey: Self.a, now: Self.t0, anticipating: false)
        m.enqueue("second", loopKey: Self.b, now: Self.t0 + .milliseconds(1), anticipating: false)
        #expect(m.waiterCount == 2)
        // The server lives on loop B: the waiter on B gets it (within the fairness window).
        #expect(Self.name(m.checkin(s, now: Self.t0 + .milliseconds(2))) == "hand to second")
        #expect(Self.name(m.checkin(s, now: Self.t0 + .milliseconds(3))) == "hand to first")
        #expect(Self.name(m.checkin(s, now: Self.t0 + .milliseconds(4))) == "idled")
    }

    @Test func waitersPastQueryWaitTimeoutExpireWithTheLastConnectError() {
        var m = Self.machine(poolSize: 1)
        Self.open(&m, "s")
        m.enqueue("old", loopKey: Self.a, now: Self.t0, anticipating: false)
        m.enqueue("new", loopKey: Self.a, now: Self.t0 + .seconds(3), anticipating: false)
        let early = m.expireWaiters(now: Self.t0 + .seconds(4))
        #expect(early.expired.isEmpty)
        let (expired, reason) = m.expireWaiters(now: Self.t0 + .seconds(5))
        #expect(expired.map(\.waiter) == ["old"] && reason == nil)
        #expect(m.waiterCount == 1)
    }

    // MARK: - Opening connections

    @Test func admissionFollowsPoolSizeReserveAndParallelCreates() {
        var limits = PoolLimits()
        limits.reserveSize = 1
        limits.reserveTimeoutMs = 100
        limits.maxParallelCreates = 1
        var m = Self.machine(poolSize: 2, limits: limits)
        let p99 = { 0 }, jitter = { 0.5 }
        #expect(m.admit(now: Self.t0, waitedMs: nil, anticipate: true, xactP99Micros: p99, jitter: jitter)
                == .mayOpen(reserve: false))
        m.createStarted(reserve: false)
        // One connect in flight at most (scaling_max_parallel_creates 1): a gate wait.
        #expect(m.admit(now: Self.t0, waitedMs: nil, anticipate: true, xactP99Micros: p99, jitter: jitter) == .hold)
        #expect(m.gateWaits == 1)
        m.connected(FakeServer("s1", loop: Self.loopA, at: Self.t0))
        Self.open(&m, "s2")
        // Full: a client that waited past reserve_pool_timeout may have a reserve connection.
        #expect(m.admit(now: Self.t0, waitedMs: 50, anticipate: true, xactP99Micros: p99, jitter: jitter) == .hold)
        #expect(m.admit(now: Self.t0, waitedMs: 150, anticipate: true, xactP99Micros: p99, jitter: jitter)
                == .mayOpen(reserve: true))
        m.createStarted(reserve: true)
        #expect(m.reserveCreates == 1 && m.creates == 3)
    }

    @Test func aboveTheWarmShareAClientFirstAnticipates() {
        var limits = PoolLimits()
        limits.warmRatio = 50
        limits.maxParallelCreates = 10
        var m = Self.machine(poolSize: 4, limits: limits)
        Self.open(&m, "s1")
        Self.open(&m, "s2")
        var asked = 0
        let admission = m.admit(now: Self.t0, waitedMs: nil, anticipate: true,
                                xactP99Micros: { asked += 1; return 20_000 }, jitter: { 0.5 })
        guard case .anticipate(let ms) = admission else {
            Issue.record("\(admission)")
            return
        }
        #expect(ms >= 5 && ms <= 500)
        // The budget is worked out once a second, not per checkout.
        _ = m.admit(now: Self.t0 + .milliseconds(10), waitedMs: nil, anticipate: true,
                    xactP99Micros: { asked += 1; return 20_000 }, jitter: { 0.5 })
        #expect(asked == 1)
        // A waiter served by a returned connection counts as served; one given a new connection, as timed out.
        m.enqueue("w", loopKey: Self.a, now: Self.t0, anticipating: true)
        let s3 = FakeServer("s3", loop: Self.loopA, at: Self.t0)
        #expect(Self.name(m.checkin(s3, now: Self.t0)) == "hand to w")
        #expect(m.anticipationServed == 1)
        // One anticipation timer per pool.
        do { let r = m.armAnticipationTimer(); #expect(r) }
        do { let r = m.armAnticipationTimer(); #expect(!r) }
    }

    @Test func failingConnectsBackOffAndWaitersRetry() {
        var m = Self.machine(poolSize: 2)
        _ = m.admit(now: Self.t0, waitedMs: nil, anticipate: false, xactP99Micros: { 0 }, jitter: { 0 })
        m.createStarted(reserve: false)
        let verdict = m.connectFailed(.transient(reason: "connection refused"), startedAt: Self.t0, now: Self.t0,
                                      waiterDeadline: Self.t0 + .seconds(5), jitter: 0)
        guard case .retry = verdict else {
            Issue.record("\(verdict)")
            return
        }
        m.requeueFront("w", loopKey: Self.a, enqueuedAt: Self.t0)
        // Backing off: no connect now, one retry timer.
        #expect(m.admit(now: Self.t0, waitedMs: 0, anticipate: true, xactP99Micros: { 0 }, jitter: { 0 }) == .hold)
        let at = m.armRetry(now: Self.t0)
        #expect(at != nil)
        #expect(m.armRetry(now: Self.t0) == nil)
        if let at {
            #expect(m.retryDue(now: at - .milliseconds(1)) == .later(at))
            #expect(m.retryDue(now: at) == .serveWaiters)
        }
        // A permanent failure fails the waiter at once.
        _ = m.admit(now: Self.t0 + .seconds(1), waitedMs: nil, anticipate: false, xactP99Micros: { 0 }, jitter: { 0 })
        m.createStarted(reserve: false)
        #expect(m.connectFailed(.permanent, startedAt: Self.t0, now: Self.t0, waiterDeadline: Self.t0 + .seconds(5),
                                jitter: 0) == .fail)
    }

    // MARK: - PAUSE, RESUME, RECONNECT, close

    @Test func pausedPoolsKeepServersAndWaitersUntilResume() {
        var m = Self.machine(poolSize: 1)
        let s = Self.open(&m, "s")
        m.pause()
        #expect(Self.name(m.checkin(s, now: Self.t0)) == "idled")  // not handed to anyone while paused
        #expect(Self.name(m.takeIdle(preferring: Self.a, now: Self.t0)) == "none")
        m.enqueue("w", loopKey: Self.a, now: Self.t0, anticipating: false)
        #expect(m.takeOldestWaiter() == nil)
        let ready = m.resume()
        #expect(ready.map { "\($0.0.waiter) <- \($0.1)" } == ["w <- s"])
    }

    @Test func reconnectRetiresIdleNowAndBusyAtCheckin() {
        var m = Self.machine(poolSize: 2)
        let idle = Self.open(&m, "idle")
        let busy = Self.open(&m, "busy")
        _ = m.checkin(idle, now: Self.t0)
        let (drained, uncounted) = m.reconnect()
        #expect(drained.map(\.name) == ["idle"] && uncounted == 1 && m.open == 1)
        #expect(Self.name(m.checkin(busy, now: Self.t0)) == "discard")  // logged in before the new epoch
    }

    @Test func closingHandsBackIdleServersAndWaiters() {
        var m = Self.machine(poolSize: 1)
        let s = Self.open(&m, "s")
        _ = m.checkin(s, now: Self.t0)
        m.enqueue("w", loopKey: Self.a, now: Self.t0, anticipating: false)
        let (drained, uncounted, waiters) = m.close()
        #expect(drained.map(\.name) == ["s"] && uncounted == 1 && waiters.map(\.waiter) == ["w"])
        let afterClose = m.admit(now: Self.t0, waitedMs: nil, anticipate: true, xactP99Micros: { 0 }, jitter: { 0 })
        #expect(afterClose == .hold)
        #expect(Self.name(m.takeIdle(preferring: Self.a, now: Self.t0)) == "none")
    }

    // MARK: - Maintenance

    @Test func retainCandidatesNameLifetimeIdleAndReserve() {
        var m = Self.machine(poolSize: 2, minPoolSize: 1)
        let old = Self.open(&m, "old")
        let young = Self.open(&m, "young", now: Self.t0 + .seconds(1))
        _ = m.checkin(old, now: Self.t0)
        _ = m.checkin(young, now: Self.t0)
        old.verdict = .expired  // server_lifetime passed while it was idle
        // young: idle for 120 s > idle_timeout 60 s, and one connection above min_pool_size.
        let candidates = m.retainCandidates(now: Self.t0 + .seconds(120))
        #expect(candidates.map { "\($0.item.name):\($0.reason)" } == ["old:lifetime", "young:idle"])
        let (closing, uncounted) = m.takeIdle([old])
        #expect(closing.map(\.name) == ["old"] && uncounted == 1)
        #expect(m.takeIdle([old]).closing.isEmpty)  // no longer idle here
    }

    @Test func evictionTakesTheLeastRecentlyUsedOldEnough() {
        var m = Self.machine(poolSize: 3)
        let s1 = Self.open(&m, "s1", now: Self.t0)
        let s2 = Self.open(&m, "s2", now: Self.t0 + .seconds(10))
        _ = m.checkin(s1, now: Self.t0)
        _ = m.checkin(s2, now: Self.t0)
        #expect(m.idleCount(olderThanMs: 5_000, now: Self.t0 + .seconds(12)) == 1)
        let victim = m.evictOneIdle(olderThanMs: 5_000, now: Self.t0 + .seconds(12))
        #expect(victim?.0.name == "s1" && victim?.counted == true)
        #expect(m.evictOneIdle(olderThanMs: 5_000, now: Self.t0 + .seconds(12)) == nil)
    }

    @Test func replenishWantsConnectionsUpToMinPoolSize() {
        var m = Self.machine(poolSize: 4, minPoolSize: 2)
        #expect(m.wantsReplenish)
        Self.open(&m, "s1")
        _ = m.admit(now: Self.t0, waitedMs: nil, anticipate: false, xactP99Micros: { 0 }, jitter: { 0 })
        m.createStarted(reserve: false)
        #expect(!m.wantsReplenish)  // one open, one opening
        m.replenishConnectEnded(nil)  // that connect failed
        #expect(m.wantsReplenish)
    }
}
