import NIOConcurrencyHelpers

/// Maps the BackendKeyData the pooler gave each client to that client's session, so a CancelRequest
/// arriving on a new connection can find the server the client is using right now.
final class CancelRegistry {
    private struct Entry {
        var secret: Int32
        /// Strong: the session unregisters in channelInactive (a weak reference would give every
        /// session a side table, slowing each retain and release of it).
        var session: ClientSession
    }
    private let lock = NIOLock()
    private var entries: [Int32: Entry] = [:]

    func register(processID: Int32, secret: Int32, session: ClientSession) {
        lock.withLock { entries[processID] = Entry(secret: secret, session: session) }
    }

    func unregister(processID: Int32) {
        _ = lock.withLock { entries.removeValue(forKey: processID) }
    }

    /// The session for a cancel key; nil for an unknown pid or a wrong secret.
    func session(processID: Int32, secret: Int32) -> ClientSession? {
        lock.withLock {
            guard let e = entries[processID] else { return nil }
            // Compare without an early exit on the first differing bit.
            return (e.secret ^ secret) == 0 ? e.session : nil
        }
    }

    var count: Int { lock.withLock { entries.count } }
}
