import Atomics

/// Keeps query_wait_timeout checks running only while some client waits for a server.
///
/// The first client to queue in any pool starts the checks; a check that finds nobody waiting
/// stops them. An idle pooler is then not woken 20 times a second, and a configuration with many
/// pools does not lock each of them 20 times a second. Costs a waiting client one relaxed atomic
/// load while the checks already run.
final class WaiterAlarm {
    private let armed = ManagedAtomic<Bool>(false)
    /// Starts the checks; set once by the runtime before any client connects.
    var onStart: () -> Void = {}

    var isArmed: Bool { armed.load(ordering: .sequentiallyConsistent) }

    /// A client started waiting (call after it is queued, outside the pool's lock).
    func waiterQueued() {
        if armed.load(ordering: .relaxed) { return }
        if armed.compareExchange(expected: false, desired: true, ordering: .sequentiallyConsistent).exchanged {
            onStart()
        }
    }

    /// A check found no waiter. Returns true when the checks should stop; false when a client
    /// queued meanwhile (the caller keeps checking). `stillWaiting` must read the pools afresh.
    func checksFoundNobody(stillWaiting: () -> Bool) -> Bool {
        armed.store(false, ordering: .sequentiallyConsistent)
        // A client that queued before the store may have seen `armed` still true and not started
        // the checks: look again. One that queues after it sees false and starts them itself.
        if stillWaiting(),
           armed.compareExchange(expected: false, desired: true, ordering: .sequentiallyConsistent).exchanged {
            return false
        }
        return true
    }
}
