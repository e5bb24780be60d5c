import Atomics
import NIOConcurrencyHelpers

/// The client sessions of this process: ids, the `max_connections` admission count, and the table
/// the admin console, shutdown and binary upgrade walk.
final class SessionRegistry {
    private let lock = NIOLock()
    /// Sessions from login to channelInactive (strong: a weak reference would give every session a side
    /// table, which slows each retain and release of it on the hot path).
    private var sessions: [Int32: ClientSession] = [:]
    /// The sessions that finished logging in: only their disconnection is logged (a refused login
    /// has its own, rate-limited line, `FailedLoginLog`, so a flood of them cannot fill the disk).
    private var loggedIn: Set<Int32> = []
    private let clientCount = ManagedAtomic<Int>(0)
    private let connectionCounter = ManagedAtomic<Int32>(0)

    /// Counts a new client against `max_connections`; false (and not counted) when it is over.
    func admit(maxConnections: Int) -> Bool {
        let now = clientCount.wrappingIncrementThenLoad(ordering: .relaxed)
        if now > maxConnections {
            clientCount.wrappingDecrement(ordering: .relaxed)
            return false
        }
        return true
    }

    /// Undoes `admit` for a client that did not become a session.
    func releaseAdmission() { clientCount.wrappingDecrement(ordering: .relaxed) }

    var currentClients: Int { clientCount.load(ordering: .relaxed) }

    func nextConnectionID() -> Int32 {
        connectionCounter.wrappingIncrementThenLoad(ordering: .relaxed) & Int32.max
    }

    /// Client ids continue after the old process's (a migrated client keeps its id and cancel key).
    func continueConnectionIDs(after last: Int32) {
        connectionCounter.store(last, ordering: .relaxed)
    }

    var lastConnectionID: Int32 { connectionCounter.load(ordering: .relaxed) }

    func started(_ s: ClientSession) {
        lock.withLock { sessions[s.id] = s }
    }

    /// A session finished logging in.
    func loggedIn(_ s: ClientSession) {
        _ = lock.withLock { loggedIn.insert(s.id) }
    }

    /// Removes a session; `wasLoggedIn` tells whether its end is worth a log line.
    func ended(_ s: ClientSession) -> (removed: Bool, wasLoggedIn: Bool) {
        let (removed, wasLoggedIn) = lock.withLock {
            (sessions.removeValue(forKey: s.id) != nil, loggedIn.remove(s.id) != nil)
        }
        if removed && s.isCounted { clientCount.wrappingDecrement(ordering: .relaxed) }
        return (removed, wasLoggedIn)
    }

    /// The sessions by id.
    var clients: [ClientSession] {
        lock.withLock { Array(sessions.values) }.sorted { $0.id < $1.id }
    }
}
