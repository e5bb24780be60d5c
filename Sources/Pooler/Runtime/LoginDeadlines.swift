import NIOCore

/// The clients of one event loop that have not finished logging in, with their deadlines.
///
/// One repeating task per loop sweeps it and cuts off the clients past their deadline, instead of a
/// task scheduled (and cancelled) per connection: scheduling, cancelling and freeing a `Scheduled`
/// cost about 2 µs of every short-lived connection. A member leaves in O(1) through the slot
/// number `add` returned, so no strong reference outlives the login. Confined to its loop.
final class LoginDeadlines<Member: AnyObject> {
    private var slots: [(member: Member, deadline: NIODeadline)?] = []
    private var freeSlots: [Int] = []
    var count: Int { slots.count - freeSlots.count }

    /// Watches `member` until `remove(slot:)` or until its deadline passes; returns its slot.
    func add(_ member: Member, deadline: NIODeadline) -> Int {
        if let slot = freeSlots.popLast() {
            slots[slot] = (member, deadline)
            return slot
        }
        slots.append((member, deadline))
        return slots.count - 1
    }

    /// The member finished (or closed) before its deadline. Removing a free slot is a no-op.
    func remove(slot: Int) {
        guard slot >= 0, slot < slots.count, slots[slot] != nil else { return }
        slots[slot] = nil
        freeSlots.append(slot)
    }

    /// Removes and returns the members whose deadline is at or before `now`.
    func expired(now: NIODeadline) -> [Member] {
        guard count > 0 else { return [] }
        var result: [Member] = []
        for slot in slots.indices {
            if let entry = slots[slot], entry.deadline <= now {
                result.append(entry.member)
                remove(slot: slot)
            }
        }
        return result
    }
}
