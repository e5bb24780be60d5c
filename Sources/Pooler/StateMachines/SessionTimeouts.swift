import NIOCore

/// The timeouts the pooler enforces on a logged-in client (`query_timeout`,
/// `idle_transaction_timeout`, `transaction_timeout`, `client_idle_timeout`): what the client is
/// doing and since when in, at most one action out. Pure — the caller passes the clock; the
/// session's handler runs the action (`ClientSession+Timeouts`).
enum SessionTimeouts {
    /// Milliseconds; 0 turns a timeout off.
    struct Limits: Equatable, Sendable {
        var queryMs: UInt64 = 0
        var idleTransactionMs: UInt64 = 0
        var transactionMs: UInt64 = 0
        var clientIdleMs: UInt64 = 0
        /// `proxy_copy_data_timeout`: a COPY in progress with no data either way for this long.
        var copyDataMs: UInt64 = 0

        static let off = Limits()
        var isOff: Bool { self == .off }
    }

    /// What a logged-in client is doing.
    enum Activity: Equatable {
        /// Queued for a server (`query_wait_timeout` governs that).
        case waitingForServer
        /// A statement it sent has not been answered yet (since it was sent).
        case running(since: NIODeadline)
        /// Its transaction is open and everything it sent is answered (since the last answer).
        case idleInTransaction(since: NIODeadline)
        /// No transaction open, nothing running (since it was last answered or logged in).
        case idle(since: NIODeadline)
    }

    enum Action: Equatable {
        /// Ask PostgreSQL to cancel the running statement (the client keeps its connection).
        case cancelStatement
        /// Disconnect: idle inside a transaction for too long.
        case closeIdleInTransaction
        /// Disconnect: the transaction has been open for too long.
        case closeTransaction
        /// Disconnect: silent outside a transaction for too long.
        case closeIdleClient
        /// Disconnect: a COPY in progress moved no data for too long.
        case closeStalledCopy

        /// The SQLSTATE and message a disconnected client gets (PostgreSQL's own for its
        /// equivalent timeouts); nil for the cancel, whose error comes from PostgreSQL.
        var fatal: (SQLState, String)? {
            switch self {
            case .cancelStatement: return nil
            case .closeIdleInTransaction:
                return (.idleInTransactionTimeout, "terminating connection due to idle-in-transaction timeout (idle_transaction_timeout)")
            case .closeTransaction:
                return (.transactionTimeout, "terminating connection due to transaction timeout (transaction_timeout)")
            case .closeIdleClient:
                return (.idleSessionTimeout, "terminating connection due to idle-session timeout (client_idle_timeout)")
            case .closeStalledCopy:
                return (.queryCanceled, "terminating connection: the COPY moved no data for proxy_copy_data_timeout")
            }
        }

        /// The setting that fired (for logs and counters).
        var setting: String {
            switch self {
            case .cancelStatement: return "query_timeout"
            case .closeIdleInTransaction: return "idle_transaction_timeout"
            case .closeTransaction: return "transaction_timeout"
            case .closeIdleClient: return "client_idle_timeout"
            case .closeStalledCopy: return "proxy_copy_data_timeout"
            }
        }
    }

    /// The one decision: which timeout, if any, has run out for this client now.
    /// `transactionSince`: when its open transaction began (nil outside one); `cancelSent`: the
    /// running statement was already cancelled for running too long (it is not cancelled twice);
    /// `copyDataAt`: while a COPY is in progress, when data last moved (nil otherwise).
    static func check(now: NIODeadline, activity: Activity, transactionSince: NIODeadline?, cancelSent: Bool,
                      copyDataAt: NIODeadline? = nil, limits: Limits) -> Action? {
        func over(_ since: NIODeadline, _ ms: UInt64) -> Bool {
            ms > 0 && now - since >= .milliseconds(Int64(clamping: ms))
        }
        if case .waitingForServer = activity { return nil }
        if let began = transactionSince, over(began, limits.transactionMs) { return .closeTransaction }
        if let moved = copyDataAt, over(moved, limits.copyDataMs) { return .closeStalledCopy }
        switch activity {
        case .waitingForServer:
            return nil
        case .running(let since):
            return !cancelSent && over(since, limits.queryMs) ? .cancelStatement : nil
        case .idleInTransaction(let since):
            return over(since, limits.idleTransactionMs) ? .closeIdleInTransaction : nil
        case .idle(let since):
            return over(since, limits.clientIdleMs) ? .closeIdleClient : nil
        }
    }
}
