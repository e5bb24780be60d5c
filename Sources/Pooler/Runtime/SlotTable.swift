/// Members addressed by the slot number `add` returned: O(1) add and remove, freed slots reused.
/// What the per-loop watch lists (`LoginDeadlines`, `SessionWatch`) keep their members in.
struct SlotTable<Element> {
    private(set) var slots: [Element?] = []
    private var freeSlots: [Int] = []
    var count: Int { slots.count - freeSlots.count }

    /// Stores `element`; returns its slot.
    mutating func add(_ element: Element) -> Int {
        if let slot = freeSlots.popLast() {
            slots[slot] = element
            return slot
        }
        slots.append(element)
        return slots.count - 1
    }

    /// Frees `slot`. Removing a free or unknown slot is a no-op.
    mutating func remove(slot: Int) {
        guard slot >= 0, slot < slots.count, slots[slot] != nil else { return }
        slots[slot] = nil
        freeSlots.append(slot)
    }
}
