import Atomics
import NIOConcurrencyHelpers
import NIOCore

/// `auth_failure_delay` for the whole process: one `AuthFailureDelay` behind a lock, shared by
/// every event loop (failures from one address count wherever its connections land).
final class AuthFailureGate: @unchecked Sendable {  // state guarded by `lock`
    private let lock = NIOLock()
    private var tracker = AuthFailureDelay()
    /// `auth_failure_delay` > 0: with it off (the default) a login takes no lock here.
    private let enabled = ManagedAtomic<Bool>(false)

    /// Sets the base delay (start and RELOAD).
    func configure(delayMs: UInt64) {
        let nanos = delayMs.multipliedReportingOverflow(by: 1_000_000)
        lock.withLock { tracker.setBase(nanos: nanos.overflow ? UInt64.max : nanos.partialValue) }
        enabled.store(delayMs > 0, ordering: .relaxed)
    }

    /// A failed login from `address`: how long its answer waits (`.zero`: answer now).
    func failed(address: String, now: NIODeadline = .now()) -> TimeAmount {
        guard enabled.load(ordering: .relaxed) else { return .zero }
        let nanos = lock.withLock { tracker.failed(address: address, now: now.uptimeNanoseconds) }
        return .nanoseconds(Int64(clamping: nanos))
    }

    /// A successful login from `address`.
    func succeeded(address: @autoclosure () -> String) {
        guard enabled.load(ordering: .relaxed) else { return }
        let address = address()
        lock.withLock { tracker.succeeded(address: address) }
    }
}
