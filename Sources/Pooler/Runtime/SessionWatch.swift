/// The logged-in clients of one event loop, for the sweep that enforces the pooler's timeouts
/// (`ClientGovernor`). A member leaves in O(1) through the slot number `add` returned. Confined to
/// its loop.
final class SessionWatch<Member: AnyObject> {
    private var table = SlotTable<Member>()
    var count: Int { table.count }

    /// Watches `member` until `remove(slot:)`; returns its slot.
    func add(_ member: Member) -> Int { table.add(member) }

    /// Removing a free or unknown slot is a no-op.
    func remove(slot: Int) { table.remove(slot: slot) }

    /// The members now (a copy: members may leave while the caller walks it).
    var members: [Member] { table.slots.compactMap { $0 } }
}
