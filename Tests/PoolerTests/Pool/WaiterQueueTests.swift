import NIOCore
import Testing
@testable import Pooler

struct WaiterQueueTests {
    final class Loop {}
    let a = Loop(), b = Loop()
    var ka: ObjectIdentifier { ObjectIdentifier(a) }
    var kb: ObjectIdentifier { ObjectIdentifier(b) }
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    @Test func oldestFirst() {
        var q = WaiterQueue<Int>()
        for i in 0..<5 { q.append(loopKey: ka, enqueuedAt: t0 + .milliseconds(Int64(i)), i) }
        #expect(q.count == 5)
        #expect((0..<5).map { _ in q.popOldest()!.element } == [0, 1, 2, 3, 4])
        #expect(q.popOldest() == nil)
        #expect(q.isEmpty)
    }

    @Test func prefersSameLoopWithinWindowButStaysFair() {
        var q = WaiterQueue<Int>()
        q.append(loopKey: ka, enqueuedAt: t0, 1)
        q.append(loopKey: kb, enqueuedAt: t0, 2)
        q.append(loopKey: ka, enqueuedAt: t0, 3)
        // Young head on another loop: the same-loop waiter goes first.
        #expect(q.pop(preferring: kb, now: t0 + .microseconds(100))?.element == 2)
        // Head already waited past the fairness limit: it goes first whatever the loop.
        q.append(loopKey: kb, enqueuedAt: t0, 4)
        #expect(q.pop(preferring: kb, now: t0 + .milliseconds(50))?.element == 1)
        #expect(q.pop(preferring: ka, now: t0)?.element == 3)
        #expect(q.pop(preferring: ka, now: t0)?.element == 4)
        #expect(q.isEmpty)
    }

    @Test func expiresFromTheHeadOnly() {
        var q = WaiterQueue<Int>()
        for i in 0..<4 { q.append(loopKey: ka, enqueuedAt: t0 + .milliseconds(Int64(i * 10)), i) }
        #expect(q.expire(enqueuedAtOrBefore: t0 + .milliseconds(15)).map(\.element) == [0, 1])
        #expect(q.count == 2)
        #expect(q.oldest?.element == 2)
        #expect(q.removeAll().map(\.element) == [2, 3])
    }

    @Test func holesLeftBySameLoopPicksAreSkipped() {
        var q = WaiterQueue<Int>()
        q.append(loopKey: ka, enqueuedAt: t0, 1)
        q.append(loopKey: kb, enqueuedAt: t0, 2)
        q.append(loopKey: kb, enqueuedAt: t0, 3)
        #expect(q.pop(preferring: kb, now: t0)?.element == 2)
        #expect(q.popOldest()?.element == 1)
        #expect(q.popOldest()?.element == 3)
        for i in 0..<1000 { q.append(loopKey: kb, enqueuedAt: t0, i) }
        for i in 0..<1000 { #expect(q.popOldest()?.element == i) }
        #expect(q.isEmpty)
    }
}

@Suite struct WaiterQueuePrependTests {
    @Test func prependPutsAWaiterBackAtTheHead() {
        let t0 = NIODeadline.uptimeNanoseconds(1_000)
        let key = ObjectIdentifier(WaiterQueuePrependTests.Key.shared)
        var q = WaiterQueue<Int>()
        q.append(loopKey: key, enqueuedAt: t0, 1)
        q.append(loopKey: key, enqueuedAt: t0 + .milliseconds(1), 2)
        let first = q.popOldest()
        #expect(first?.element == 1)
        q.prepend(loopKey: key, enqueuedAt: t0, 1)
        #expect(q.count == 2)
        // Still ordered for expiry.
        #expect(q.expire(enqueuedAtOrBefore: t0).map(\.element) == [1])
        q.prepend(loopKey: key, enqueuedAt: t0, 0)
        #expect(q.removeAll().map(\.element) == [0, 2])
    }

    final class Key { static let shared = Key() }
}

/// The tests' shorthand: an entry from its parts.
extension WaiterQueue {
    fileprivate mutating func append(loopKey: ObjectIdentifier, enqueuedAt: NIODeadline, _ element: Element) {
        append(Entry(loopKey: loopKey, enqueuedAt: enqueuedAt, element: element))
    }

    fileprivate mutating func prepend(loopKey: ObjectIdentifier, enqueuedAt: NIODeadline, _ element: Element) {
        prepend(Entry(loopKey: loopKey, enqueuedAt: enqueuedAt, element: element))
    }
}
