import NIOCore

/// The life of one connection to PostgreSQL as the pooler sees it: TLS negotiation, login, idle,
/// checked out by a client (`active`), running the pooler's own queries (cleanup at release, a
/// liveness check, a client's parameters), closed — and whether it may serve another client.
///
/// Pure: the handler (`ServerConnection`) feeds it what happened on the socket and runs the action it
/// gets back. While `active` the handler relays bytes without asking (the relay's cost is one
/// `isActive` test per read); every other backend message is given to `backendMessage`.
struct ServerConnectionStateMachine {
    /// The phase. Its payloads are plain values, so that the checkout and checkin transitions are
    /// single stores (an enum carrying the login machine cost an outlined destroy, ~80
    /// instructions, on each of them); the login machine lives in `login` while it runs.
    enum State: Equatable {
        case connecting
        /// Our SSLRequest is out; one byte (`S`/`N`) decides. `required`: `N` ends the attempt. The
        /// login starts once the answer allowed it.
        case negotiatingTLS(required: Bool)
        case login
        case idle
        case active
        /// Running the pooler's queries; `expected` ReadyForQuery messages are still to come.
        case cleaning(expected: Int, purpose: Purpose)
        /// Running a parameter query for a client's login (its first error in `applyError`, kept out
        /// of the enum so that the states the relay tests stay cheap to copy).
        case applying
        case closed
    }

    /// Why the pooler runs queries on an idle server.
    enum Purpose: Equatable {
        /// ROLLBACK / DISCARD ALL / RESET at release.
        case cleanup
        /// `server_idle_check_timeout`'s query before an idle server is handed out.
        case liveness
    }

    private(set) var state: State = .connecting
    /// The pooler's own login, from `connected` until it ends (nil afterwards: its parameters and
    /// SCRAM state are not kept for the connection's life).
    private var login: BackendLoginStateMachine?
    /// Set when the server must not be reused (protocol desync, an error where none is expected, a
    /// transaction left open by cleanup).
    var broken = false
    /// A client's cancel was forwarded for this backend: PostgreSQL acts on a cancel whenever it
    /// arrives, possibly after the query it was meant for, so such a backend is closed at release.
    var cancelForwarded = false
    /// RECONNECT / RELOAD generation of the pool when this connection logged in.
    let epoch: Int
    /// server_lifetime with its jitter; nil = no lifetime.
    let expiresAt: NIODeadline?
    private var applyError: ServerError?

    init(epoch: Int, expiresAt: NIODeadline?) {
        self.epoch = epoch
        self.expiresAt = expiresAt
    }

    /// True while a client owns the connection and its bytes are relayed unparsed.
    @inline(__always)
    var isActive: Bool {
        if case .active = state { return true }
        return false
    }

    var isClosed: Bool {
        if case .closed = state { return true }
        return false
    }

    /// SHOW SERVERS' state column.
    var stateName: String {
        switch state {
        case .connecting, .negotiatingTLS, .login: return "login"
        case .idle: return "idle"
        case .active: return "active"
        case .cleaning, .applying: return "used"
        case .closed: return "closed"
        }
    }

    // MARK: - Reuse: the one verdict a pool asks at checkout and checkin

    /// Why this server may or may not serve another client.
    func reuse(poolEpoch: Int, now: NIODeadline) -> ServerReuse {
        ServerReuse.verdict(broken: broken, cancelled: cancelForwarded, closed: isClosed, epoch: epoch,
                            poolEpoch: poolEpoch, expiresAt: expiresAt, now: now)
    }

    // MARK: - Login

    enum LoginStart: Equatable {
        case sendSSLRequest
        case sendStartup
    }

    /// The socket is connected: ask for TLS first (`tlsRequired` nil = no TLS) or send the startup.
    mutating func connected(login: BackendLoginStateMachine, tlsRequired: Bool?) -> LoginStart {
        self.login = login
        if let tlsRequired {
            state = .negotiatingTLS(required: tlsRequired)
            return .sendSSLRequest
        }
        state = .login
        return .sendStartup
    }

    enum TLSAnswer: Equatable {
        /// Add the TLS handler, then send the startup through it.
        case startTLS
        /// Plain connection allowed: send the startup.
        case sendStartup
        case fail(String)
    }

    /// The server's one-byte answer to our SSLRequest; `trailingBytes` arrived after it in the same read.
    mutating func tlsAnswer(_ answer: UInt8, trailingBytes: Int) -> TLSAnswer {
        guard case .negotiatingTLS(let required) = state else {
            return failLogin("unexpected data during SSL negotiation")
        }
        switch answer {
        case UInt8(ascii: "S"):
            // Bytes after `S` would have been sent in the clear by someone else (CVE-2021-23222).
            guard trailingBytes == 0 else { return failLogin("received unencrypted data after SSL response") }
            state = .login
            return .startTLS
        case UInt8(ascii: "N"):
            if required { return failLogin("server does not support SSL, but SSL was required (server_tls_mode)") }
            guard trailingBytes == 0 else { return failLogin("received unexpected data after SSL response") }
            state = .login
            return .sendStartup
        case UInt8(ascii: "E"):
            return failLogin("server rejected the SSLRequest with an error")
        default:
            return failLogin("received invalid response to SSL negotiation: \(answer)")
        }
    }

    private mutating func failLogin(_ message: String) -> TLSAnswer {
        state = .closed
        login = nil
        return .fail(message)
    }

    /// The login ended without a connection (a failure the machine reported, or one of the handler's
    /// own, such as a TLS handler that could not be added): nothing more is read.
    mutating func loginAborted() {
        state = .closed
        login = nil
    }

    // MARK: - Backend messages outside the relay

    enum MessageAction {
        case none
        /// A login reply to write.
        case send(ByteBuffer)
        /// Login complete: the connection is idle.
        case loggedIn(processID: Int32, secretKey: Int32, parameters: [(String, String)])
        case loginFailed(ServerError)
        /// Record this ParameterStatus body in the session's values.
        case parameterStatus(ByteBuffer)
        /// An idle server spoke (a FATAL error: it is going away): take it out of the pool.
        case discard
        /// The pooler's queries are done; `usable`: back at an idle ReadyForQuery with no error.
        case cleanupFinished(purpose: Purpose, usable: Bool)
        /// The parameter query finished with its first error, if any.
        case applyFinished(ServerError?)
        /// The message is not ours to read (the relay took over, or the connection closed): stop.
        case stop
    }

    /// One complete backend message while not relaying.
    mutating func backendMessage(type: UInt8, body: ByteBuffer) -> MessageAction {
        switch state {
        case .login:
            guard var machine = login else {
                state = .closed
                return .loginFailed(ServerError(code: .internalError, message: "server login lost its state"))
            }
            login = nil  // uniquely referenced while it runs
            let action = machine.receive(type: type, body: body)
            switch action {
            case .send(let out):
                login = machine
                return .send(out)
            case .wait:
                login = machine
                return .none
            case .ready:
                state = .idle
                return .loggedIn(processID: machine.processID, secretKey: machine.secretKey,
                                 parameters: machine.parameters)
            case .fail(let error):
                state = .closed
                return .loginFailed(error)
            }
        case .idle:
            // Unsolicited messages on an idle server: an error means it is going away.
            guard type == BackendMessageID.errorResponse.rawValue else { return .none }
            broken = true
            return .discard
        case .cleaning(let expected, let purpose):
            switch BackendMessageID(rawValue: type) {
            case .parameterStatus:
                return .parameterStatus(body)
            case .errorResponse:
                broken = true
                return .none
            case .readyForQuery:
                guard expected <= 1 else {
                    state = .cleaning(expected: expected - 1, purpose: purpose)
                    return .none
                }
                if body.getInteger(at: body.readerIndex, as: UInt8.self) != TransactionStatus.idle.rawValue {
                    broken = true
                }
                state = .idle
                return .cleanupFinished(purpose: purpose, usable: !broken)
            default:
                return .none
            }
        case .applying:
            switch BackendMessageID(rawValue: type) {
            case .parameterStatus:
                return .parameterStatus(body)
            case .errorResponse:
                if applyError == nil { applyError = ServerError(body: body) }
                return .none
            case .readyForQuery:
                if body.getInteger(at: body.readerIndex, as: UInt8.self) != TransactionStatus.idle.rawValue {
                    broken = true
                }
                state = .idle
                let error = applyError
                applyError = nil
                return .applyFinished(error)
            default:
                return .none
            }
        case .active, .connecting, .negotiatingTLS, .closed:
            return .stop
        }
    }

    enum FramingFailure: Equatable {
        case failLogin
        case discard
    }

    /// The server sent bytes that are not a valid message.
    mutating func framingFailed() -> FramingFailure {
        broken = true
        if case .login = state {
            state = .closed
            login = nil
            return .failLogin
        }
        return .discard
    }

    // MARK: - Checkout, checkin and the pooler's own queries

    /// A client took the connection; its bytes are relayed from now on.
    mutating func attach() {
        state = .active
    }

    /// The client let go with nothing to clean; false when the connection is no longer usable
    /// (it closed while checked out).
    mutating func detachClean() -> Bool {
        guard case .active = state else { return false }
        state = .idle
        return true
    }

    enum Detach: Equatable {
        /// Not active any more (closed): not usable.
        case unusable
        /// Nothing to run: idle and usable.
        case clean
        /// Write the cleanup queries; `cleanupFinished` follows.
        case runCleanup
    }

    /// The client let go and `queries` cleanup statements are to run first.
    mutating func detach(cleanupQueries queries: Int) -> Detach {
        guard case .active = state else { return .unusable }
        if queries == 0 {
            state = .idle
            return .clean
        }
        state = .cleaning(expected: queries, purpose: .cleanup)
        return .runCleanup
    }

    /// Whether the idle connection may run a query of the pooler's now (a parameter query or a
    /// liveness check); if so it enters that state.
    mutating func beginApply() -> Bool {
        guard case .idle = state, !broken else { return false }
        state = .applying
        applyError = nil
        return true
    }

    mutating func beginLivenessCheck() -> Bool {
        guard case .idle = state, !broken else { return false }
        state = .cleaning(expected: 1, purpose: .liveness)
        return true
    }

    /// The liveness check's time ran out: true if it was still waiting (the connection is then
    /// broken and the check fails).
    mutating func livenessTimedOut() -> Bool {
        guard case .cleaning(_, .liveness) = state else { return false }
        broken = true
        return true
    }

    // MARK: - Closing

    enum Close: Equatable {
        case alreadyClosed
        /// Idle: say Terminate first, then close.
        case terminateAndClose
        case close
    }

    /// The pooler closes the connection.
    mutating func close() -> Close {
        switch enterClosed() {
        case .closed: return .alreadyClosed
        case .idle: return .terminateAndClose
        case .connecting, .negotiatingTLS, .login, .active, .cleaning, .applying: return .close
        }
    }

    enum Inactive: Equatable {
        case loginFailed
        /// It was checked out: tell the client, then the pool.
        case ownerLost
        /// The pooler's queries will not finish: report them failed, then tell the pool.
        case cleanupFailed(Purpose)
        case applyFailed
        /// Tell the pool.
        case forget
    }

    /// The socket closed (whoever closed it).
    mutating func channelInactive() -> Inactive {
        switch enterClosed() {
        case .login, .negotiatingTLS: return .loginFailed
        case .active: return .ownerLost
        case .cleaning(_, let purpose): return .cleanupFailed(purpose)
        case .applying:
            applyError = nil
            return .applyFailed
        case .idle, .connecting, .closed: return .forget
        }
    }

    /// Closed from now on (the login machine, if any, is dropped); returns the state it was in.
    private mutating func enterClosed() -> State {
        let previous = state
        state = .closed
        login = nil
        return previous
    }

    enum Failure: Equatable {
        case failLogin
        case close
    }

    /// The channel reported an error (TLS handshake, reset, …).
    mutating func errorCaught() -> Failure {
        broken = true
        switch state {
        case .login, .negotiatingTLS:
            state = .closed
            login = nil
            return .failLogin
        case .connecting, .idle, .active, .cleaning, .applying, .closed:
            return .close
        }
    }
}
