import Testing
@testable import Pooler

struct SlotTableTests {
    @Test func slotsAreReusedAndRemovalIsIdempotent() {
        var t = SlotTable<String>()
        let a = t.add("a"), b = t.add("b")
        #expect((a, b) == (0, 1) && t.count == 2)
        t.remove(slot: a)
        t.remove(slot: a)  // already free
        t.remove(slot: 7)  // unknown
        t.remove(slot: -1)
        #expect(t.count == 1 && t.slots.compactMap { $0 } == ["b"])
        #expect(t.add("c") == a)  // the freed slot first
        #expect(t.add("d") == 2 && t.count == 3)
    }
}
