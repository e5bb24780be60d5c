import Testing
@testable import Pooler

/// A numbered entry; odd numbers count as not plain.
private struct Entry: ReplyQueueEntry, Equatable {
    let n: Int
    var isPlain: Bool { n % 2 == 0 }
}

struct ReplyQueueTests {
    /// Random appends, removals and filters, checked step by step against a plain array.
    @Test(arguments: 0..<20)
    func behavesAsAFIFOArray(seed: Int) {
        var rng = FuzzRNG(seed: UInt64(seed) &* 104_729 &+ 7)
        var queue = ReplyQueue<Entry>()
        var model: [Int] = []
        var next = 0
        for _ in 0..<2_000 {
            switch Int.random(in: 0..<10, using: &rng) {
            case 0..<5:
                queue.append(Entry(n: next))
                model.append(next)
                next += 1
            case 5..<8:
                if model.isEmpty {
                    #expect(queue.popFirst() == nil)
                } else {
                    #expect(queue.removeFirst().n == model.removeFirst())
                }
            case 8:
                let removed = queue.removeAllAfterFirst { $0.n % 3 == 0 }
                let before = model.count
                if let head = model.first { model = [head] + model.dropFirst().filter { $0 % 3 != 0 } }
                #expect(removed == before - model.count)
            default:
                if Int.random(in: 0..<20, using: &rng) == 0 {
                    queue.removeAll()
                    model.removeAll()
                }
            }
            #expect(queue.count == model.count)
            #expect(queue.isEmpty == model.isEmpty)
            #expect(queue.first?.n == model.first)
            #expect(queue.allPlain == model.allSatisfy { $0 % 2 == 0 })
            let probe = Int.random(in: 0..<max(1, next), using: &rng)
            #expect(queue.contains { $0.n == probe } == model.contains(probe))
            #expect(queue.first { $0.n >= probe }?.n == model.first { $0 >= probe })
        }
    }

    /// A queue that never empties keeps its storage near what is live.
    @Test func aQueueThatNeverEmptiesStaysSmall() {
        var queue = ReplyQueue<Entry>()
        for i in 0..<100_000 {
            queue.append(Entry(n: i))
            queue.append(Entry(n: i))
            queue.removeFirst()
            if i % 2 == 0 { queue.removeFirst() }
        }
        #expect(queue.count == 50_000)
        var drained = 0
        while queue.popFirst() != nil { drained += 1 }
        #expect(drained == 50_000)
    }
}
