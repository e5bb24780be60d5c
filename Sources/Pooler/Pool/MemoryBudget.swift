import Atomics

/// `max_memory_usage`: the bytes of large messages the pooler holds whole at once, across all
/// clients. Messages it can forward in pieces never count; a message it must hold (a Parse or Bind
/// the prepared-statement rewriter needs whole, a backend message in rewriting mode) counts from the
/// moment its header announces it until it is complete. A message that would go over the budget is
/// refused (53200) — its client is the one that asked for too much, nobody else.
final class MemoryBudget: @unchecked Sendable {
    /// Messages smaller than this are not counted (no atomic operation on the common path).
    static let threshold = 64 << 10

    private let used = ManagedAtomic<Int>(0)
    private let limit: ManagedAtomic<Int>

    init(limit: Int) {
        self.limit = ManagedAtomic(limit)
    }

    /// RELOAD: the new budget applies to the next reservations.
    func setLimit(_ bytes: Int) {
        limit.store(bytes, ordering: .relaxed)
    }

    var inUse: Int { used.load(ordering: .relaxed) }

    /// Takes `bytes` from the budget; false (and nothing taken) when that would exceed it.
    func reserve(_ bytes: Int) -> Bool {
        let after = used.wrappingIncrementThenLoad(by: bytes, ordering: .relaxed)
        if after > limit.load(ordering: .relaxed) {
            used.wrappingDecrement(by: bytes, ordering: .relaxed)
            return false
        }
        return true
    }

    func release(_ bytes: Int) {
        if bytes > 0 { used.wrappingDecrement(by: bytes, ordering: .relaxed) }
    }

    /// The size a partial message at the start of `header` announces (type byte included), or 0
    /// when its header is not complete yet.
    static func announcedSize(typeAndLength header: (UInt8?, Int32?)) -> Int {
        guard header.0 != nil, let length = header.1, length >= 4 else { return 0 }
        return 1 + Int(length)
    }

    /// Keeps `held` (what a session has reserved for the partial message it holds) in line with
    /// `needed` (that message's announced size, 0 for none): false when the budget refuses it.
    func adjust(held: inout Int, needed: Int) -> Bool {
        let needed = needed >= Self.threshold ? needed : 0
        if needed == held { return true }
        release(held)
        held = 0
        guard needed > 0 else { return true }
        guard reserve(needed) else { return false }
        held = needed
        return true
    }
}
