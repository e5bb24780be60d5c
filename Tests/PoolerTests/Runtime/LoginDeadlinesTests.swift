import NIOCore
import Testing
@testable import Pooler

@Suite struct LoginDeadlinesTests {
    final class Client {
        let name: String
        init(_ name: String) { self.name = name }
    }

    private let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    @Test func returnsOnlyMembersPastTheirDeadlineAndOnlyOnce() {
        let watch = LoginDeadlines<Client>()
        _ = watch.add(Client("a"), deadline: t0 + .seconds(1))
        _ = watch.add(Client("b"), deadline: t0 + .seconds(3))
        _ = watch.add(Client("c"), deadline: t0 + .seconds(2))
        #expect(watch.expired(now: t0).isEmpty)
        #expect(watch.expired(now: t0 + .seconds(2)).map(\.name) == ["a", "c"])
        #expect(watch.expired(now: t0 + .seconds(2)).isEmpty)
        #expect(watch.count == 1)
        #expect(watch.expired(now: t0 + .seconds(10)).map(\.name) == ["b"])
        #expect(watch.count == 0)
    }

    @Test func removedMembersNeverExpireAndAreNotRetained() {
        let watch = LoginDeadlines<Client>()
        weak var gone: Client?
        do {
            let client = Client("x")
            gone = client
            let slot = watch.add(client, deadline: t0)
            watch.remove(slot: slot)
            watch.remove(slot: slot)  // twice: no-op
        }
        #expect(gone == nil)
        #expect(watch.count == 0)
        #expect(watch.expired(now: t0 + .seconds(1)).isEmpty)
    }

    @Test func slotsAreReused() {
        let watch = LoginDeadlines<Client>()
        let first = watch.add(Client("a"), deadline: t0)
        let second = watch.add(Client("b"), deadline: t0)
        watch.remove(slot: first)
        let third = watch.add(Client("c"), deadline: t0 + .seconds(5))
        #expect(third == first)
        #expect(second != third)
        watch.remove(slot: 99)  // unknown: no-op
        #expect(watch.count == 2)
        #expect(watch.expired(now: t0).map(\.name) == ["b"])
    }
}
