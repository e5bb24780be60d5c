import NIOCore
import Testing
@testable import Pooler

struct RetainPlannerTests {
    final class Conn {}
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)

    func candidate(_ c: Conn, age: Int64, _ reason: RetainPlanner.Reason) -> RetainPlanner.Candidate<Conn> {
        .init(item: c, id: ObjectIdentifier(c), createdAt: t0 - .seconds(age), reason: reason)
    }

    @Test func oldestFirstUpToTheMaximumAcrossPools() {
        let (a, b, c, d) = (Conn(), Conn(), Conn(), Conn())
        // Offered by different pools, in no particular order.
        let offered = [candidate(a, age: 10, .idle), candidate(b, age: 50, .lifetime), candidate(c, age: 30, .reserve),
                       candidate(d, age: 20, .idle)]
        #expect(RetainPlanner.plan(offered, max: 3).map { $0.id } == [b, c, d].map { ObjectIdentifier($0) })
        #expect(RetainPlanner.plan(offered, max: 0).count == 4)  // 0 = no limit
        #expect(RetainPlanner.plan(offered, max: 1).first?.reason == .lifetime)
    }

    @Test func aConnectionOfferedTwiceClosesOnce() {
        let a = Conn(), b = Conn()
        let offered = [candidate(a, age: 9, .idle), candidate(a, age: 9, .reserve), candidate(b, age: 1, .idle)]
        let plan = RetainPlanner.plan(offered, max: 2)
        #expect(plan.count == 2)
        #expect(plan.map(\.id) == [ObjectIdentifier(a), ObjectIdentifier(b)])
        #expect(plan[0].reason == .idle)  // the first offer of it is kept
    }
}
