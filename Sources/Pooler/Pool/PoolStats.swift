import Atomics

/// Cumulative counters of one pool, updated from any event loop without locks.
public final class PoolStats {
    public let xactCount = ManagedAtomic<Int>(0)
    public let queryCount = ManagedAtomic<Int>(0)
    public let bytesReceived = ManagedAtomic<Int>(0)
    public let bytesSent = ManagedAtomic<Int>(0)
    public let xactTimeMicros = ManagedAtomic<Int>(0)
    public let queryTimeMicros = ManagedAtomic<Int>(0)
    public let waitTimeMicros = ManagedAtomic<Int>(0)
    public let errors = ManagedAtomic<Int>(0)
    public let waitTimeouts = ManagedAtomic<Int>(0)
    /// Clients the pooler's own timeouts acted on (`SessionTimeouts`), by setting.
    public let queryTimeouts = ManagedAtomic<Int>(0)
    public let idleTransactionTimeouts = ManagedAtomic<Int>(0)
    public let transactionTimeouts = ManagedAtomic<Int>(0)
    public let clientIdleTimeouts = ManagedAtomic<Int>(0)
    public let copyDataTimeouts = ManagedAtomic<Int>(0)
    public let xactHistogram = LatencyHistogram()
    public let queryHistogram = LatencyHistogram()

    public init() {}

    func recordWait(micros: UInt64) {
        if micros > 0 { waitTimeMicros.wrappingIncrement(by: Int(micros), ordering: .relaxed) }
    }

    func recordWaitTimeout() {
        waitTimeouts.wrappingIncrement(ordering: .relaxed)
        errors.wrappingIncrement(ordering: .relaxed)
    }

    func recordTimeout(_ action: SessionTimeouts.Action) {
        let counter: ManagedAtomic<Int>
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
