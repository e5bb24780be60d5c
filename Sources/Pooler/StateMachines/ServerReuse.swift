import NIOCore

/// Whether a server connection may serve another client — the one decision a pool asks at every
/// checkout and checkin (the client's side, whether it lets the server go and how it is cleaned, is
/// `ClientSessionStateMachine.releaseVerdict`).
enum ServerReuse: Equatable {
    case reusable
    /// Its stream broke or it answered something the pooler did not expect.
    case broken
    /// A client's cancel was forwarded for it: PostgreSQL may still act on it later.
    case cancelled
    /// RECONNECT or a RELOAD that changed its pool happened after it logged in.
    case staleEpoch
    /// Older than server_lifetime (with its jitter).
    case expired
    /// The connection is closed.
    case closed

    /// The verdict, from the connection's facts; time is given.
    static func verdict(broken: Bool, cancelled: Bool, closed: Bool, epoch: Int, poolEpoch: Int,
                        expiresAt: NIODeadline?, now: NIODeadline) -> ServerReuse {
        if closed { return .closed }
        if broken { return .broken }
        if cancelled { return .cancelled }
        if epoch < poolEpoch { return .staleEpoch }
        if let expiresAt, now > expiresAt { return .expired }
        return .reusable
    }
}
