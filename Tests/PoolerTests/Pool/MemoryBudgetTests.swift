import Testing
@testable import Pooler

struct MemoryBudgetTests {
    @Test func reservationsStayWithinTheLimit() {
        let b = MemoryBudget(limit: 1 << 20)
        #expect(b.reserve(600 << 10))
        #expect(!b.reserve(600 << 10), "over the limit: refused, nothing taken")
        #expect(b.inUse == 600 << 10)
        b.release(600 << 10)
        #expect(b.reserve(1 << 20))
        b.setLimit(2 << 20)
        #expect(b.reserve(1 << 20))
        #expect(b.inUse == 2 << 20)
    }

    @Test func adjustCountsOnlyLargeMessagesAndFollowsTheHeldOne() {
        let b = MemoryBudget(limit: 1 << 20)
        var held = 0
        #expect(b.adjust(held: &held, needed: 1000))
        #expect(held == 0 && b.inUse == 0, "small messages are not counted")
        #expect(b.adjust(held: &held, needed: 200 << 10))
        #expect(held == 200 << 10 && b.inUse == 200 << 10)
        #expect(b.adjust(held: &held, needed: 300 << 10))
        #expect(held == 300 << 10 && b.inUse == 300 << 10, "the next held message replaces the last one")
        var other = 0
        #expect(!b.adjust(held: &other, needed: 800 << 10), "another session's message over the budget")
        #expect(other == 0)
        #expect(b.adjust(held: &held, needed: 0))
        #expect(held == 0 && b.inUse == 0)
    }

    @Test func announcedSizeNeedsAWholeHeader() {
        #expect(MemoryBudget.announcedSize(typeAndLength: (UInt8(ascii: "B"), 100)) == 101)
        #expect(MemoryBudget.announcedSize(typeAndLength: (UInt8(ascii: "B"), nil)) == 0)
        #expect(MemoryBudget.announcedSize(typeAndLength: (nil, nil)) == 0)
        #expect(MemoryBudget.announcedSize(typeAndLength: (UInt8(ascii: "B"), 2)) == 0)
    }
}
