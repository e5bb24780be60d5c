/// When a dynamic (auth_query) pool may be removed: it has had no clients, no server connections
/// (open, opening) and no waiters for `delay` milliseconds in a row, and it is not PAUSEd (a paused
/// pool is kept, so RESUME finds it, whatever its emptiness). Pure; `now` in milliseconds.
struct DynamicPoolGC: Equatable {
    /// When the pool was first seen empty (nil: in use at the last look).
    private(set) var emptySince: UInt64?

    init() {}

    /// One look at the pool; true when it should be collected now.
    mutating func collectable(clients: Int, servers: Int, waiting: Int, paused: Bool, now: UInt64,
                              delay: UInt64) -> Bool {
        guard clients == 0, servers == 0, waiting == 0, !paused else {
            emptySince = nil
            return false
        }
        guard let since = emptySince else {
            emptySince = now
            return delay == 0
        }
        return now &- since >= delay
    }
}
