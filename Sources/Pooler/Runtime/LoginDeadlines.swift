import NIOCore

/// The clients of one event loop that have not finished logging in, with their deadlines.
///
/// One repeating task per loop sweeps it and cuts off the clients past their deadline, instead of a
/// task scheduled (and cancelled) per connection: scheduling, cancelling and freeing a `Scheduled`
/// cost about 2 µs of every short-lived connection. A member leaves in O(1) through the slot
/// number `add` returned, so no strong reference outlives the login. Confined to its loop.
final class LoginDeadlines<Member: AnyObject> {
    private var table = SlotTable<(member: Member, deadline: NIODeadline)>()
    var count: Int { table.count }

    /// Watches `member` until `remove(slot:)` or until its deadline passes; returns its slot.
    func add(_ member: Member, deadline: NIODeadline) -> Int { table.add((member, deadline)) }

    /// The member finished (or closed) before its deadline. Removing a free slot is a no-op.
    func remove(slot: Int) { table.remove(slot: slot) }

    /// Removes and returns the members whose deadline is at or before `now`.
    func expired(now: NIODeadline) -> [Member] {
        guard table.count > 0 else { return [] }
        var result: [Member] = []
        for slot in table.slots.indices {
            if let entry = table.slots[slot], entry.deadline <= now {
                result.append(entry.member)
                table.remove(slot: slot)
            }
        }
        return result
    }
}
