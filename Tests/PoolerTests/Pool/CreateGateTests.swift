import Testing
@testable import Pooler

struct CreateGateTests {
    let limits = PoolLimits(reserveSize: 2, reserveTimeoutMs: 500, maxParallelCreates: 2)

    struct Row {
        var open: Int, opening: Int, waited: UInt64?
        var expected: CreateGate.Verdict
    }

    @Test func table() {
        // pool_size 4, reserve 2 after 500 ms, 2 connects in flight at most.
        let rows: [Row] = [
            Row(open: 0, opening: 0, waited: nil, expected: .open(reserve: false)),
            Row(open: 0, opening: 1, waited: nil, expected: .open(reserve: false)),
            Row(open: 0, opening: 2, waited: nil, expected: .hold(.burst)),  // scaling_max_parallel_creates
            Row(open: 2, opening: 2, waited: 10_000, expected: .hold(.burst)),
            Row(open: 3, opening: 0, waited: nil, expected: .open(reserve: false)),
            Row(open: 4, opening: 0, waited: nil, expected: .hold(.full)),  // a new client never takes the reserve
            Row(open: 4, opening: 0, waited: 499, expected: .hold(.full)),
            Row(open: 4, opening: 0, waited: 500, expected: .open(reserve: true)),
            Row(open: 5, opening: 0, waited: 900, expected: .open(reserve: true)),
            Row(open: 5, opening: 1, waited: 900, expected: .hold(.full)),  // reserve used up
            Row(open: 6, opening: 0, waited: 60_000, expected: .hold(.full)),
        ]
        for r in rows {
            let v = CreateGate.decide(open: r.open, opening: r.opening, poolSize: 4, limits: limits, waitedMs: r.waited)
            #expect(v == r.expected, "open \(r.open) opening \(r.opening) waited \(String(describing: r.waited))")
        }
    }

    @Test func noReserveConfiguredMeansPoolSizeIsHard() {
        let none = PoolLimits(reserveSize: 0, reserveTimeoutMs: 0, maxParallelCreates: 8)
        #expect(CreateGate.decide(open: 4, opening: 0, poolSize: 4, limits: none, waitedMs: 99_999) == .hold(.full))
        #expect(!CreateGate.reserveAllowed(limits: none, waitedMs: 99_999))
        #expect(CreateGate.reserveAllowed(limits: limits, waitedMs: 500))
        #expect(!CreateGate.reserveAllowed(limits: limits, waitedMs: nil))
    }

    @Test func parallelismBelowOneActsAsOne() {
        let zero = PoolLimits(reserveSize: 0, reserveTimeoutMs: 0, maxParallelCreates: 0)
        #expect(CreateGate.decide(open: 0, opening: 0, poolSize: 4, limits: zero, waitedMs: nil) == .open(reserve: false))
        #expect(CreateGate.decide(open: 0, opening: 1, poolSize: 4, limits: zero, waitedMs: nil) == .hold(.burst))
    }

    @Test func permitCount() {
        var p = PermitCount(limit: 2)
        let taken = [p.tryTake(), p.tryTake(), p.tryTake()]
        #expect(taken == [true, true, false])
        #expect(p.isFull)
        p.give()
        let again = p.tryTake()
        #expect(again)
        p.give(5)
        #expect(p.used == 0)
        var unlimited = PermitCount(limit: 0)
        let all = (0..<1000).map { _ in unlimited.tryTake() }
        #expect(all.allSatisfy { $0 })
        #expect(!unlimited.isFull)
        unlimited.limit = 10  // lowered below use: nothing new until enough come back
        let over = unlimited.tryTake()
        #expect(!over)
    }
}
