/// The `DOORMAN_<n>` statements one backend connection holds, as an LRU set bounded by
/// `server_prepared_statements_cache_size` (<= 0 means unbounded), with the lookup counters shown
/// by SHOW SERVERS (prepare_cache_hit / prepare_cache_miss / prepare_cache_size).
///
/// Owned by a server connection and used only by whichever client session holds that connection,
/// so it is not locked.
///
/// Eviction does not close the statement at once: the name is queued and a rewriter sends
/// `Close('S', name)` at the start of the next batch on this server (right after a Sync, where the
/// backend is never skipping messages), and drops its CloseComplete. Until then the statement is
/// still on the backend, so a message of the current batch that needs it again simply takes it
/// back ("revives" it) — eviction can never break a batch in flight.
public final class ServerStatements {
    private var held: LRUMap<String, Void>
    private var pendingCloses: [String] = []
    /// Lookups (Parse / Bind / Describe of a remapped statement) that found the statement here.
    public private(set) var hits: UInt64 = 0
    /// Lookups that had to send a Parse.
    public private(set) var misses: UInt64 = 0

    public init(capacity: Int) {
        held = LRUMap(capacity: capacity)
    }

    /// Statements held (or being prepared) on this backend.
    public var count: Int { held.count }
    /// Evicted statements whose Close has not been sent yet.
    public var pendingCloseCount: Int { pendingCloses.count }
    /// Names in the set, most recently used first.
    public var names: [String] { held.entriesNewestFirst.map(\.key) }

    public func contains(_ name: String) -> Bool { held.contains(name) }

    /// Forget everything: call after the backend ran `DISCARD ALL` / `DEALLOCATE ALL`.
    public func removeAll() {
        held.removeAll()
        pendingCloses.removeAll()
    }

    // MARK: - used by PreparedStatementRewriter

    /// Whether the backend has `name`; counts a hit or a miss and marks it recently used. A name
    /// evicted but not yet closed is taken back (counts as a hit).
    func lookup(_ name: String) -> Bool {
        if held.get(name) != nil {
            hits &+= 1
            return true
        }
        if let i = pendingCloses.firstIndex(of: name) {
            pendingCloses.remove(at: i)
            insert(name)
            hits &+= 1
            return true
        }
        misses &+= 1
        return false
    }

    /// Records `name` as held (a Parse for it is being sent); may queue an eviction.
    func insert(_ name: String) {
        if let evicted = held.set(name, ()) {
            pendingCloses.append(evicted.key)
        }
    }

    /// Undoes `insert` after the Parse failed or was skipped by the backend.
    func remove(_ name: String) {
        held.remove(name)
    }

    /// Takes the evicted names whose Close must be sent now.
    func takePendingCloses() -> [String] {
        defer { pendingCloses.removeAll() }
        return pendingCloses
    }

    /// A Close that was sent but not executed (the backend skipped it): send it again later.
    func requeueClose(_ name: String) {
        if !held.contains(name), !pendingCloses.contains(name) { pendingCloses.append(name) }
    }
}
