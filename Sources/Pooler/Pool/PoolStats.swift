import Atomics

/// Cumulative counters of one pool, updated from any event loop without locks.
///
/// `UnsafeAtomic`s (freed in `deinit`), not `ManagedAtomic`s: each of those is an object of its own,
/// and the relay's per-transaction increments retained and released every one they touched.
public final class PoolStats {
    public let xactCount = UnsafeAtomic<Int>.create(0)
    public let queryCount = UnsafeAtomic<Int>.create(0)
    public let bytesReceived = UnsafeAtomic<Int>.create(0)
    public let bytesSent = UnsafeAtomic<Int>.create(0)
    public let xactTimeMicros = UnsafeAtomic<Int>.create(0)
    public let queryTimeMicros = UnsafeAtomic<Int>.create(0)
    public let waitTimeMicros = UnsafeAtomic<Int>.create(0)
    public let errors = UnsafeAtomic<Int>.create(0)
    public let waitTimeouts = UnsafeAtomic<Int>.create(0)
    /// Clients the pooler's own timeouts acted on (`SessionTimeouts`), by setting.
    public let queryTimeouts = UnsafeAtomic<Int>.create(0)
    public let idleTransactionTimeouts = UnsafeAtomic<Int>.create(0)
    public let transactionTimeouts = UnsafeAtomic<Int>.create(0)
    public let clientIdleTimeouts = UnsafeAtomic<Int>.create(0)
    public let copyDataTimeouts = UnsafeAtomic<Int>.create(0)
    public let xactHistogram = LatencyHistogram()
    public let queryHistogram = LatencyHistogram()

    public init() {}

    deinit {
        xactCount.destroy()
        queryCount.destroy()
        bytesReceived.destroy()
        bytesSent.destroy()
        xactTimeMicros.destroy()
        queryTimeMicros.destroy()
        waitTimeMicros.destroy()
        errors.destroy()
        waitTimeouts.destroy()
        queryTimeouts.destroy()
        idleTransactionTimeouts.destroy()
        transactionTimeouts.destroy()
        clientIdleTimeouts.destroy()
        copyDataTimeouts.destroy()
    }

    func recordWait(micros: UInt64) {
        if micros > 0 { waitTimeMicros.wrappingIncrement(by: Int(micros), ordering: .relaxed) }
    }

    func recordWaitTimeout() {
        waitTimeouts.wrappingIncrement(ordering: .relaxed)
        errors.wrappingIncrement(ordering: .relaxed)
    }

    func recordTimeout(_ action: SessionTimeouts.Action) {
        let counter: UnsafeAtomic<Int>
        switch action {
        case .cancelStatement: counter = queryTimeouts
        case .closeIdleInTransaction: counter = idleTransactionTimeouts
        case .closeTransaction: counter = transactionTimeouts
        case .closeIdleClient: counter = clientIdleTimeouts
        case .closeStalledCopy: counter = copyDataTimeouts
        }
        counter.wrappingIncrement(ordering: .relaxed)
    }

    /// The timeout counters as (setting, count), in SHOW STATS order.
    public var timeoutCounts: [(String, Int)] {
        [("query_timeouts", queryTimeouts.load(ordering: .relaxed)),
         ("idle_transaction_timeouts", idleTransactionTimeouts.load(ordering: .relaxed)),
         ("transaction_timeouts", transactionTimeouts.load(ordering: .relaxed)),
         ("client_idle_timeouts", clientIdleTimeouts.load(ordering: .relaxed)),
         ("copy_data_timeouts", copyDataTimeouts.load(ordering: .relaxed))]
    }

    /// A snapshot of all totals, in SHOW STATS order.
    public struct Snapshot: Equatable {
        public var xactCount = 0, queryCount = 0, received = 0, sent = 0
        public var xactTime = 0, queryTime = 0, waitTime = 0, errors = 0
    }

    public func snapshot() -> Snapshot {
        Snapshot(
            xactCount: xactCount.load(ordering: .relaxed), queryCount: queryCount.load(ordering: .relaxed),
            received: bytesReceived.load(ordering: .relaxed), sent: bytesSent.load(ordering: .relaxed),
            xactTime: xactTimeMicros.load(ordering: .relaxed), queryTime: queryTimeMicros.load(ordering: .relaxed),
            waitTime: waitTimeMicros.load(ordering: .relaxed), errors: errors.load(ordering: .relaxed))
    }
}
