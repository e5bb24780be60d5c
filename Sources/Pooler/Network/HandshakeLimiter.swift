import NIOConcurrencyHelpers
import NIOCore

/// `tls_rate_limit_per_second`: TLS handshakes start at most rate/100 per 10 ms window (the
/// reference's granularity). A client over the limit gets its `S` later, when its turn comes, so a
/// reconnect storm of TLS clients is spread out instead of taking the event loops. Shared by all loops.
final class HandshakeLimiter {
    /// The pacing, without clocks or locks: handshake slots `interval` = 10 ms / (rate/100) apart,
    /// so no 10 ms span holds more than rate/100 starts; an idle limiter starts the next one at once.
    struct Pacing: Equatable {
        let interval: Int64
        private(set) var nextSlot: Int64 = .min

        init(perSecond: Int, windowNanos: Int64 = 10_000_000) {
            let perWindow = Int64(max(1, perSecond / 100))
            interval = (windowNanos + perWindow - 1) / perWindow  // rounded up: never perWindow+1 in a window
        }

        /// Reserves the next slot for a request at `now`: 0 to start now, else the wait.
        mutating func reserve(now: Int64) -> Int64 {
            let slot = nextSlot == .min ? now : max(nextSlot, now)
            nextSlot = slot + interval
            return slot - now
        }
    }

    private let lock = NIOLock()
    private var pacing: Pacing

    init(perSecond: Int) { pacing = Pacing(perSecond: perSecond) }

    /// Nil when the handshake may start now, else the delay before it may.
    func reserve() -> TimeAmount? {
        let now = Int64(NIODeadline.now().uptimeNanoseconds)
        let wait = lock.withLock { pacing.reserve(now: now) }
        return wait > 0 ? .nanoseconds(wait) : nil
    }
}
