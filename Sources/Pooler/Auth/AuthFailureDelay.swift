/// `auth_failure_delay`: how long the answer to a failed login waits, per client address.
///
/// PostgreSQL's `auth_delay` module waits a fixed time before reporting an authentication failure,
/// which makes password guessing slow without slowing anybody who logs in correctly. Here the
/// delay also doubles with each further failure from the same address (up to `maxFactor` times the
/// base), and an address is forgotten after a successful login from it or `forgetAfterNanos` of
/// quiet. Memory is bounded: at most `capacity` addresses, the least recently failed one dropped
/// first.
///
/// Pure: the caller passes the time (monotonic nanoseconds) and schedules the delayed answer.
struct AuthFailureDelay {
    struct Entry {
        var failures: Int
        var lastFailureNanos: UInt64
    }

    /// The configured delay for a first failure (0: off).
    var baseNanos: UInt64
    let capacity: Int
    let maxFactor: UInt64
    let forgetAfterNanos: UInt64
    private var entries: LRUMap<String, Entry>

    init(baseNanos: UInt64 = 0, capacity: Int = 10_000, maxFactor: UInt64 = 32,
         forgetAfterNanos: UInt64 = 600 * 1_000_000_000) {
        self.baseNanos = baseNanos
        self.capacity = max(1, capacity)
        self.maxFactor = max(1, maxFactor)
        self.forgetAfterNanos = forgetAfterNanos
        entries = LRUMap(capacity: self.capacity)
    }

    /// Addresses with recent failures.
    var trackedAddresses: Int { entries.count }

    /// A login from `address` failed at `now`: how long to wait before answering (0: at once).
    mutating func failed(address: String, now: UInt64) -> UInt64 {
        guard baseNanos > 0 else { return 0 }
        var entry = entries.get(address) ?? Entry(failures: 0, lastFailureNanos: now)
        if now >= entry.lastFailureNanos, now - entry.lastFailureNanos > forgetAfterNanos { entry.failures = 0 }
        entry.failures = min(entry.failures + 1, 64)
        entry.lastFailureNanos = now
        _ = entries.set(address, entry)
        let factor = min(UInt64(1) << UInt64(min(entry.failures - 1, 62)), maxFactor)
        let (delay, overflow) = baseNanos.multipliedReportingOverflow(by: factor)
        return overflow ? UInt64.max : delay
    }

    /// A login from `address` succeeded: its failures are forgiven.
    mutating func succeeded(address: String) {
        _ = entries.remove(address)
    }

    /// A new base delay (RELOAD); 0 forgets every address.
    mutating func setBase(nanos: UInt64) {
        baseNanos = nanos
        if nanos == 0 { entries.removeAll() }
    }
}
