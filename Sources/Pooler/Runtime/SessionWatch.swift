/// The logged-in clients of one event loop, for the sweep that enforces the pooler's timeouts
/// (`ClientGovernor`). A member leaves in O(1) through the slot number `add` returned. Confined to
/// its loop.
final class SessionWatch<Member: AnyObject> {
    private var slots: [Member?] = []
    private var freeSlots: [Int] = []
    var count: Int { slots.count - freeSlots.count }

    /// Watches `member` until `remove(slot:)`; returns its slot.
    func add(_ member: Member) -> Int {
        if let slot = freeSlots.popLast() {
            slots[slot] = member
            return slot
        }
        slots.append(member)
        return slots.count - 1
    }

    /// Removing a free or unknown slot is a no-op.
    func remove(slot: Int) {
        guard slot >= 0, slot < slots.count, slots[slot] != nil else { return }
        slots[slot] = nil
        freeSlots.append(slot)
    }

    /// The members now (a copy: members may leave while the caller walks it).
    var members: [Member] { slots.compactMap { $0 } }
}
