import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Whether a failed server connect is worth trying again, and when.
///
/// While connects fail with something that may pass (connection refused while PostgreSQL
/// restarts, "the database system is starting up", a timeout), the clients waiting for a server
/// keep waiting: one probe connect at a time is retried after a backoff that starts at
/// `initialDelay` and doubles up to `maxDelay` (jittered by ±25 %), until a connect succeeds or
/// the waiter's own query_wait_timeout deadline passes. A failure that is certain to repeat
/// (authentication, unknown database, a configuration the server refuses) fails the waiter at
/// once with PostgreSQL's own error. Pure: the pool passes the time and the jitter in, and
/// guards it with its lock.
struct ConnectRetry {
    enum Failure: Equatable {
        /// May pass: retry while someone waits. `reason` is one short line for clients and the log.
        case transient(reason: String)
        /// Certain to repeat: fail the waiter now.
        case permanent
    }

    enum Verdict: Equatable {
        /// Put the waiter back; the next attempt may start at the deadline.
        case retry(at: NIODeadline)
        /// Fail the waiter with the error.
        case fail
    }

    var initialDelay: TimeAmount = .milliseconds(50)
    var maxDelay: TimeAmount = .seconds(1)

    /// Failed attempts since the last success.
    private(set) var consecutiveFailures = 0
    /// No attempt starts before this while failing.
    private(set) var notBefore: NIODeadline?
    /// The reason of the last transient failure (while failing).
    private(set) var lastReason: String?
    /// When the last transient failure was counted.
    private(set) var lastFailureAt: NIODeadline?

    var isFailing: Bool { consecutiveFailures > 0 }

    /// May a new connect start at `now`, with `opening` connects already under way? Always while
    /// connects work; while they fail, one probe at a time once the backoff has passed.
    func mayAttempt(now: NIODeadline, opening: Int) -> Bool {
        guard isFailing else { return true }
        guard opening == 0 else { return false }
        if let notBefore, now < notBefore { return false }
        return true
    }

    /// The delay before the attempt after `failures` consecutive failures; `jitter` in [0, 1).
    static func delay(failures: Int, initial: TimeAmount, max maximum: TimeAmount, jitter: Double) -> TimeAmount {
        let exponent = Swift.min(Swift.max(failures - 1, 0), 30)
        let base = Swift.min(initial.nanoseconds << Int64(exponent), maximum.nanoseconds)
        let factor = 0.75 + 0.5 * Swift.min(Swift.max(jitter, 0), 1)
        return .nanoseconds(Int64(Double(base) * factor))
    }

    /// A connect started at `startedAt` failed with `failure`, for a waiter that may wait until
    /// `waiterDeadline`. Attempts that were already under way when an earlier failure was counted
    /// (several connects refused at once when PostgreSQL goes away) do not lengthen the backoff.
    mutating func attemptFailed(_ failure: Failure, startedAt: NIODeadline, now: NIODeadline,
                                waiterDeadline: NIODeadline, jitter: Double) -> Verdict {
        switch failure {
        case .permanent:
            // Nothing to wait for; a later attempt starts without delay (and fails the same way).
            reset()
            return .fail
        case .transient(let reason):
            lastReason = reason
            if let last = lastFailureAt, startedAt < last, let notBefore {
                // A sibling of an attempt already counted: wait for the same retry.
                return now < waiterDeadline ? .retry(at: Swift.max(notBefore, now)) : .fail
            }
            consecutiveFailures += 1
            lastFailureAt = now
            let next = now + Self.delay(failures: consecutiveFailures, initial: initialDelay, max: maxDelay,
                                        jitter: jitter)
            notBefore = next
            return now < waiterDeadline ? .retry(at: next) : .fail
        }
    }

    mutating func attemptSucceeded() {
        reset()
    }

    private mutating func reset() {
        consecutiveFailures = 0
        notBefore = nil
        lastReason = nil
        lastFailureAt = nil
    }

    // MARK: - Classifying errors

    /// Whether `error` (from `ServerConnector.connect`) may pass. PostgreSQL's own refusals are
    /// transient only for connection problems (class 08), lack of resources (53, e.g. too many
    /// connections), operator intervention (57: shutting down, starting up) and system errors
    /// (58); anything else (28P01, 28000, 3D000, a bad startup parameter, a TLS refusal) repeats.
    static func classify(_ error: Error) -> Failure {
        if let e = error as? ServerError {
            let cls = String(e.code.code.prefix(2))
            if e.code == .protocolViolation { return .permanent }
            if ["08", "53", "57", "58"].contains(cls) { return .transient(reason: e.message) }
            return .permanent
        }
        if let e = error as? PoolError {
            switch e {
            case .connectFailed(let why): return .transient(reason: why)
            case .serverRejected(let s): return classify(s)
            case .queryWaitTimeout: return .transient(reason: "timed out")
            case .closed: return .permanent
            }
        }
        if error is ServerTLSError { return .permanent }
        return .transient(reason: reason(error))
    }

    /// One short line for a network error: no type dumps (`NIOConnectionError(host: …)`).
    static func reason(_ error: Error) -> String {
        if let e = error as? NIOConnectionError {
            // The last address's failure says it best (they are usually the same).
            if let single = e.connectionErrors.last { return reason(single.error) }
            if let dns = e.dnsAError ?? e.dnsAAAAError { return "could not resolve host: \(reason(dns))" }
            return "could not connect"
        }
        if let e = error as? IOError { return errnoText(e.errnoCode) }
        if let e = error as? ChannelError {
            switch e {
            case .connectTimeout: return "connection timed out"
            case .ioOnClosedChannel, .alreadyClosed, .eof, .outputClosed, .inputClosed:
                return "connection closed by the server"
            default: return "connection failed"
            }
        }
        if let e = error as? SocketAddressError {
            switch e {
            case .unknown(let host, _): return "could not resolve host \"\(host)\""
            default: return "invalid server address"
            }
        }
        return "connection failed"
    }

    static func errnoText(_ code: Int32) -> String {
        switch code {
        case ECONNREFUSED: return "connection refused"
        case ETIMEDOUT: return "connection timed out"
        case ECONNRESET: return "connection reset by the server"
        case EHOSTUNREACH: return "no route to host"
        case ENETUNREACH: return "network is unreachable"
        case ENOENT: return "no such socket file"
        default:
            guard let s = strerror(code) else { return "error \(code)" }
            return String(cString: s).lowercased()
        }
    }
}
