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

    @Test func anticipationAboveTheWarmShare() {
        // pool_size 10, warm ratio 20 %: two connections open at once, then clients wait 100 ms for
        // a returned connection first.
        let warm = PoolLimits(reserveSize: 0, reserveTimeoutMs: 0, maxParallelCreates: 2, warmRatio: 20)
        #expect(warm.warmSize(poolSize: 10) == 2)
        #expect(PoolLimits(warmRatio: 20).warmSize(poolSize: 4) == 1)  // rounded up
        #expect(PoolLimits(warmRatio: 0).warmSize(poolSize: 4) == 0)
        let rows: [(open: Int, opening: Int, waited: UInt64?, budget: UInt64, expected: CreateGate.Verdict)] = [
            (0, 0, nil, 100, .open(reserve: false)),
            (1, 0, nil, 100, .open(reserve: false)),  // in the warm share
            (2, 0, nil, 100, .hold(.anticipate)),
            (2, 0, 99, 100, .hold(.anticipate)),
            (2, 0, 100, 100, .open(reserve: false)),  // the budget ran out
            (0, 2, nil, 100, .hold(.burst)),  // nothing in use that could come back: no anticipation
            (2, 0, nil, 0, .open(reserve: false)),  // min_pool_size connects do not anticipate
            (10, 0, 10_000, 100, .hold(.full)),
        ]
        for r in rows {
            let v = CreateGate.decide(open: r.open, opening: r.opening, poolSize: 10, limits: warm, waitedMs: r.waited,
                                      anticipationMs: r.budget)
            #expect(v == r.expected, "open \(r.open) opening \(r.opening) waited \(String(describing: r.waited))")
        }
        // Ratio 100: never.
        #expect(CreateGate.decide(open: 9, opening: 0, poolSize: 10, limits: PoolLimits(warmRatio: 100), waitedMs: nil,
                                  anticipationMs: 100) == .open(reserve: false))
    }

    @Test func anticipationBudget() {
        // Twice the p99, clamped to 5…500 ms, ±20 % jitter; 100 ms cold; below query_wait_timeout − 500 ms.
        #expect(Anticipation.budgetMs(xactP99Micros: nil, queryWaitTimeoutMs: 5_000, jitter: 0.5) == 100)
        #expect(Anticipation.budgetMs(xactP99Micros: 20_000, queryWaitTimeoutMs: 5_000, jitter: 0.5) == 40)
        #expect(Anticipation.budgetMs(xactP99Micros: 1_000, queryWaitTimeoutMs: 5_000, jitter: 0.5) == 5)
        #expect(Anticipation.budgetMs(xactP99Micros: 9_000_000, queryWaitTimeoutMs: 5_000, jitter: 0.5) == 500)
        #expect(Anticipation.budgetMs(xactP99Micros: nil, queryWaitTimeoutMs: 5_000, jitter: 0) == 80)
        #expect(Anticipation.budgetMs(xactP99Micros: nil, queryWaitTimeoutMs: 5_000, jitter: 1) == 120)
        #expect(Anticipation.budgetMs(xactP99Micros: 9_000_000, queryWaitTimeoutMs: 700, jitter: 0.5) == 200)
        #expect(Anticipation.budgetMs(xactP99Micros: nil, queryWaitTimeoutMs: 400, jitter: 0.5) == 0)
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
