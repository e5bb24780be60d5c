import NIOCore
import NIOPosix
import NIOSSL

/// Something that receives a server's bytes while it is checked out (a client session).
protocol ServerOwner: AnyObject {
    var loop: EventLoop { get }
    func serverRead(_ buffer: ByteBuffer)
    func serverReadComplete()
    func serverClosed(_ server: ServerConnection)
    /// The server socket's send buffer drained (true) or filled (false): pause/resume client reads.
    func serverWritabilityChanged(_ writable: Bool)
}

/// One connection to PostgreSQL, and the NIO handler for it.
///
/// While checked out it is a plain pipe: every read goes unparsed to its owner, which does the
/// accounting on its own event loop. Before that (login) and after (cleanup) it parses messages itself.
public final class ServerConnection: ChannelInboundHandler {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    enum State {
        case connecting
        case login(BackendLoginStateMachine)
        case idle
        case active
        case cleaning(expected: Int)
        /// Running a parameter query for a client's login (`apply`; its first error in `applyError`,
        /// kept out of the enum so that the states the relay switches over stay cheap to copy).
        case applying
        case closed
    }

    public let id: Int
    let loop: EventLoop
    /// Strong: a pool is long-lived and drops a server from its idle list when the server closes; a
    /// weak reference would give every pool a side table and slow down every retain of it.
    var pool: ServerPool?
    private(set) var channel: Channel?
    private var context: ChannelHandlerContext?
    /// Writes to PostgreSQL (directly to the socket when it is plain, see `ChannelOutput`).
    private var output: ChannelOutput?
    private var state: State = .connecting
    private var accumulator: ByteBuffer
    private var loginPromise: EventLoopPromise<ServerConnection>?
    /// The client using this server: set by `attach`, cleared by `detach*` and when the server closes
    /// (strong, so the session has no side table: a weak reference slows every retain and release of
    /// it on the hot path).
    var owner: ServerOwner?

    public private(set) var processID: Int32 = 0
    public private(set) var secretKey: Int32 = 0
    public private(set) var parameters: [(String, String)] = []
    /// The session's parameter values now: what the server reported (login, then every
    /// ParameterStatus) and what the pooler set that PostgreSQL does not report. Touched by the
    /// client's loop while checked out, by `loop` otherwise.
    var parameterValues: [String: String] = [:] {
        didSet {
            atLoginParameters = parameterValues == loginParameterValues
            matchedParameterSet = 0
        }
    }
    /// The values reported at login (every server of a pool logs in with the same parameters).
    private var loginParameterValues: [String: String] = [:]
    /// The session's parameters are still those of its login: a client that wants the pool's
    /// values needs no SET (the common case, checked with one load per checkout).
    private(set) var atLoginParameters = true
    /// The client parameter set (`ServerPool.parameterSetID`) this server's values were last made
    /// to match; 0 once they changed since.
    var matchedParameterSet = 0
    public let createdAt: NIODeadline
    let expiresAt: NIODeadline?
    let epoch: Int
    var lastUsed: NIODeadline
    /// Guarded by the pool lock.
    var countedInPool = false
    /// Set when the server must not be reused (protocol desync, fatal error).
    var broken = false
    /// Set (on the owning client's loop) when a client's cancel request was forwarded for this
    /// backend. PostgreSQL acts on a cancel whenever it arrives — possibly after the query it was
    /// meant for has finished and the backend serves another client — so such a backend is closed
    /// at release instead of going back to the pool.
    var cancelForwarded = false
    public private(set) var serverAddress: String = ""
    /// DOORMAN_n statements prepared on this backend (transaction-mode statement remapping).
    public let statements: ServerStatements
    /// True once the connection runs over TLS (SHOW SERVERS, cancel requests).
    public private(set) var usesTLS = false
    /// Set while waiting for the one-byte answer to our SSLRequest.
    private var tlsNegotiation: ServerTLSAttempt?
    private var cleanupDone: ((Bool) -> Void)?
    private var applyDone: ((ServerError?) -> Void)?
    private var applyError: ServerError?

    // Per-connection counters for SHOW SERVERS (touched on the owner's loop while checked out).
    public var transactionCount = 0
    public var queryCount = 0
    public var bytesSent = 0
    public var bytesReceived = 0
    public var stateName: String {
        switch state {
        case .connecting, .login: return "login"
        case .idle: return "idle"
        case .active: return "active"
        case .cleaning, .applying: return "used"
        case .closed: return "closed"
        }
    }

    init(id: Int, loop: EventLoop, pool: ServerPool, epoch: Int, lifetimeMs: UInt64) {
        self.id = id
        self.loop = loop
        self.pool = pool
        self.epoch = epoch
        self.createdAt = .now()
        self.lastUsed = .now()
        if lifetimeMs > 0 {
            // ±20% jitter so connections created together do not expire together.
            let jitter = Double.random(in: 0.8...1.2)
            expiresAt = createdAt + .milliseconds(Int64(Double(lifetimeMs) * jitter))
        } else {
            expiresAt = nil
        }
        accumulator = ByteBufferAllocator().buffer(capacity: 0)
        statements = ServerStatements(capacity: pool.settings.serverPreparedStatementsCacheSize)
    }

    func isReusable(epoch poolEpoch: Int, now: NIODeadline) -> Bool {
        reuse(epoch: poolEpoch, now: now) == .reusable
    }

    /// Why this server may or may not serve another client (`ServerReuse.verdict`).
    func reuse(epoch poolEpoch: Int, now: NIODeadline) -> ServerReuse {
        let closed: Bool
        if case .closed = state { closed = true } else { closed = false }
        return ServerReuse.verdict(broken: broken, cancelled: cancelForwarded, closed: closed, epoch: epoch,
                                   poolEpoch: poolEpoch, expiresAt: expiresAt, now: now)
    }

    // MARK: - Login

    func startLogin(channel: Channel, settings: PoolSettings, clientKey: [UInt8]?,
                    tls: ServerTLSAttempt? = nil) -> EventLoopFuture<ServerConnection> {
        self.channel = channel
        self.serverAddress = "\(settings.serverHost):\(settings.serverPort)"
        let promise = loop.makePromise(of: ServerConnection.self)
        loginPromise = promise
        state = .login(BackendLoginStateMachine(user: settings.serverUser, credential: settings.backendCredential,
                                                clientKey: clientKey))
        let startup = BackendLoginStateMachine.startupMessage(settings: settings)
        if let tls {
            // SSLRequest first; the StartupMessage follows once the server said `S` (or `N` when allowed).
            var attempt = tls
            attempt.startup = startup
            tlsNegotiation = attempt
            var out = channel.allocator.buffer(capacity: 8)
            out.writeInteger(Int32(8))
            out.writeInteger(Int32(80_877_103))
            output?.writeAndFlush(out)
        } else {
            output?.writeAndFlush(startup)
        }
        return promise.futureResult
    }

    private func failLogin(_ error: Error) {
        state = .closed
        let p = loginPromise
        loginPromise = nil
        channel?.close(promise: nil)
        p?.fail(error)
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.output = ChannelOutput(context: context)
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        if tlsNegotiation != nil { return negotiateTLS(context: context, buffer) }
        switch state {
        case .active:
            bytesReceived &+= buffer.readableBytes
            guard let owner else { break }
            if owner.loop === loop { owner.serverRead(buffer) } else { owner.loop.execute { owner.serverRead(buffer) } }
        case .login, .idle, .cleaning, .applying:
            var b = buffer
            accumulator.writeBuffer(&b)
            processAccumulated()
        case .connecting, .closed:
            break
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        if case .active = state, let owner {
            if owner.loop === loop { owner.serverReadComplete() } else { owner.loop.execute { owner.serverReadComplete() } }
        }
    }

    private func processAccumulated() {
        do {
            while let (type, body) = try MessageFramer.next(&accumulator) {
                switch state {
                case .login(var sm):
                    let action = sm.receive(type: type, body: body)
                    state = .login(sm)
                    switch action {
                    case .send(let out):
                        output?.writeAndFlush(out)
                    case .wait:
                        break
                    case .ready:
                        processID = sm.processID
                        secretKey = sm.secretKey
                        parameters = sm.parameters
                        var values: [String: String] = [:]
                        for (name, value) in sm.parameters { values[name] = value }
                        loginParameterValues = values
                        parameterValues = values
                        state = .idle
                        let p = loginPromise
                        loginPromise = nil
                        p?.succeed(self)
                    case .fail(let e):
                        failLogin(e)
                        return
                    }
                case .idle:
                    // Unsolicited messages on an idle server: a FATAL error means it is going away.
                    if type == UInt8(ascii: "E") {
                        broken = true
                        pool?.discard(self)
                        return
                    }
                case .cleaning(let expected):
                    if type == BackendMessageID.parameterStatus.rawValue { noteParameterStatus(body) }
                    if type == UInt8(ascii: "E") { broken = true }
                    if type == UInt8(ascii: "Z") {
                        var b = body
                        let status: UInt8 = b.readInteger() ?? 0
                        if expected <= 1 {
                            if status != UInt8(ascii: "I") { broken = true }
                            state = .idle
                            let done = cleanupDone
                            cleanupDone = nil
                            done?(!broken)
                        } else {
                            state = .cleaning(expected: expected - 1)
                        }
                    }
                case .applying:
                    switch BackendMessageID(rawValue: type) {
                    case .parameterStatus:
                        noteParameterStatus(body)
                    case .errorResponse where applyError == nil:
                        applyError = ServerError(body: body)
                    case .readyForQuery:
                        if body.getInteger(at: body.readerIndex, as: UInt8.self) != TransactionStatus.idle.rawValue {
                            broken = true
                        }
                        state = .idle
                        let done = applyDone
                        applyDone = nil
                        let error = applyError
                        applyError = nil
                        done?(error)
                    default:
                        break
                    }
                case .active, .connecting, .closed:
                    return
                }
            }
            accumulator.discardReadBytes()
        } catch {
            broken = true
            if case .login = state { failLogin(error) } else { pool?.discard(self) }
        }
    }

    /// Records a ParameterStatus body (name\0value\0).
    func noteParameterStatus(_ body: ByteBuffer) {
        var b = body
        guard let name = b.readCString(), let value = b.readCString() else { return }
        parameterValues[name] = value
    }

    /// Runs `query` (setting parameters) on this idle server and calls `done` with its first error,
    /// or nil, once the server is back at ReadyForQuery; the ParameterStatus replies update
    /// `parameterValues`. Call on `loop`, with the server idle and owned by no client.
    func apply(query: String, done: @escaping (ServerError?) -> Void) {
        guard case .idle = state, !broken else {
            return done(ServerError(code: .connectionFailure, message: "server connection is not usable"))
        }
        state = .applying
        applyError = nil
        applyDone = done
        var out = ByteBufferAllocator().buffer(capacity: 6 + query.utf8.count)
        FrontendMessage.query(query, into: &out)
        output?.writeAndFlush(out)
    }

    /// The session was reset (RESET ALL / DISCARD ALL): what the pooler set and PostgreSQL does not
    /// report is back to its default. (Reported values arrive as ParameterStatus.)
    func forgetUnreportedParameters() {
        for name in parameterValues.keys where !SessionParameters.reportedSettable.contains(name)
            && !parameters.contains(where: { $0.0 == name }) {
            parameterValues.removeValue(forKey: name)
        }
    }

    // MARK: - Checkout / checkin (call on self.loop)

    /// Attaches the server to a client; from now on reads go to `owner` unparsed.
    func attach(to owner: ServerOwner) {
        self.owner = owner
        state = .active
        if readingPaused {
            readingPaused = false
            setReading(true)
        }
    }

    /// Set by the owner when it paused reads for backpressure.
    var readingPaused = false

    /// Detaches from the client with nothing to clean; false if the server is no longer usable.
    @inline(__always)
    func detachClean() -> Bool {
        owner = nil
        guard case .active = state else { return false }
        state = .idle
        return true
    }

    /// Detaches from the client. If `queries` is non-empty they are run first (ROLLBACK, DISCARD ALL),
    /// and `done(clean)` is called when the server is back at an idle ReadyForQuery.
    func detach(runningCleanup queries: [String], done: @escaping (Bool) -> Void) {
        owner = nil
        guard case .active = state else {
            done(false)
            return
        }
        if queries.isEmpty {
            state = .idle
            done(true)
            return
        }
        state = .cleaning(expected: queries.count)
        cleanupDone = done
        var out = ByteBufferAllocator().buffer(capacity: 64)
        for q in queries { FrontendMessage.query(q, into: &out) }
        output?.writeAndFlush(out)
    }

    /// Liveness check before an idle server is handed out (`server_idle_check_timeout`): runs
    /// `query` and calls `done(alive)` once the server is back at an idle ReadyForQuery — false when
    /// it answers with an error, closes, or stays silent for `timeout` (a connection a firewall or
    /// NAT dropped without a word, a frozen host). Call on `loop`, with the server idle and owned by
    /// no client.
    func checkAlive(query: String, timeout: TimeAmount, done: @escaping (Bool) -> Void) {
        guard case .idle = state, !broken else { return done(false) }
        let deadline = loop.scheduleTask(in: timeout) { [self] in
            guard let pending = cleanupDone else { return }
            cleanupDone = nil
            broken = true
            pending(false)
        }
        state = .cleaning(expected: 1)
        cleanupDone = { alive in
            deadline.cancel()
            done(alive)
        }
        var out = ByteBufferAllocator().buffer(capacity: 6 + query.utf8.count)
        FrontendMessage.query(query, into: &out)
        output?.writeAndFlush(out)
    }

    /// Writes client bytes to PostgreSQL (on the server's loop; the caller hops if needed).
    @inline(__always)
    func write(_ buffer: ByteBuffer) {
        bytesSent &+= buffer.readableBytes
        output?.write(buffer)
    }

    @inline(__always)
    func flush() {
        output?.flush()
    }

    /// Backpressure: stop (or resume) reading from PostgreSQL while the client cannot keep up.
    /// Call on `loop`.
    func setReading(_ on: Bool) {
        guard let channel = context?.channel else { return }
        channel.setOption(ChannelOptions.autoRead, value: on).whenComplete { _ in }
        if on { channel.read() }
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        guard case .active = state, let owner else { return }
        let writable = context.channel.isWritable
        if owner.loop === loop { owner.serverWritabilityChanged(writable) } else {
            owner.loop.execute { owner.serverWritabilityChanged(writable) }
        }
    }

    public func close() {
        if loop.inEventLoop { closeOnLoop() } else { loop.execute { self.closeOnLoop() } }
    }

    private func closeOnLoop() {
        if case .closed = state { return }
        if case .idle = state, let context {
            var out = context.channel.allocator.buffer(capacity: 5)
            FrontendMessage.terminate(into: &out)
            output?.writeAndFlush(out)
        }
        state = .closed
        channel?.close(promise: nil)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        let previous = state
        state = .closed
        self.context = nil
        output?.disableDirect()
        output = nil
        switch previous {
        case .login:
            failLogin(ServerError(code: .connectionFailure, message: "server closed the connection during login"))
        case .active:
            if let owner {
                self.owner = nil
                if owner.loop === loop { owner.serverClosed(self) } else { owner.loop.execute { owner.serverClosed(self) } }
            }
            pool?.serverDidClose(self)
        case .cleaning:
            let done = cleanupDone
            cleanupDone = nil
            done?(false)
            pool?.serverDidClose(self)
        case .applying:
            let done = applyDone
            applyDone = nil
            done?(ServerError(code: .connectionFailure, message: "server closed the connection unexpectedly"))
            pool?.serverDidClose(self)
        case .idle, .connecting, .closed:
            pool?.serverDidClose(self)
        }
    }

    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        broken = true
        // During login (TLS handshake included) the caller wants the reason, not "closed during login".
        if case .login = state { return failLogin(ServerTLSError.wrap(error)) }
        context.close(promise: nil)
    }
}

// MARK: - TLS towards PostgreSQL

/// What a server connection needs to ask for TLS before its StartupMessage.
struct ServerTLSAttempt {
    var context: NIOSSLContext
    /// SNI and certificate host name; nil for IP literals (the peer address is checked instead).
    var hostname: String?
    /// `N` ends the attempt (require, verify-ca, verify-full, the TLS retry of allow).
    var required: Bool
    var startup: ByteBuffer?

    init(context: NIOSSLContext, serverHost: String, required: Bool) {
        self.context = context
        self.hostname = (try? SocketAddress(ipAddress: serverHost, port: 0)) == nil ? serverHost : nil
        self.required = required
    }
}

/// A TLS failure while connecting to PostgreSQL.
struct ServerTLSError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }

    static func wrap(_ error: Error) -> Error {
        if error is ServerError || error is ServerTLSError { return error }
        if let e = error as? NIOSSLExtraError, e == .failedToValidateHostname {
            return ServerTLSError(message: "TLS handshake with the server failed: the server certificate does not "
                                  + "match the server host (server_tls_mode verify-full): \(error)")
        }
        if error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError {
            return ServerTLSError(message: "TLS handshake with the server failed: \(error)")
        }
        return error
    }
}

extension ServerConnection {
    /// Handles the one-byte answer to our SSLRequest.
    fileprivate func negotiateTLS(context: ChannelHandlerContext, _ buffer: ByteBuffer) {
        guard var attempt = tlsNegotiation else { return }
        var b = buffer
        guard let answer: UInt8 = b.readInteger() else { return }
        tlsNegotiation = nil
        let startup = attempt.startup ?? context.channel.allocator.buffer(capacity: 0)
        attempt.startup = nil
        switch answer {
        case UInt8(ascii: "S"):
            // Bytes after `S` would have been sent in the clear by someone else (CVE-2021-23222).
            guard b.readableBytes == 0 else {
                return failLoginTLS("received unencrypted data after SSL response")
            }
            output?.disableDirect()
            do {
                let handler = try NIOSSLClientHandler(context: attempt.context, serverHostname: attempt.hostname)
                try context.pipeline.syncOperations.addHandler(handler, position: .before(self))
            } catch {
                return failLoginTLS("cannot start TLS: \(error)")
            }
            usesTLS = true
            output?.writeAndFlush(startup)
        case UInt8(ascii: "N"):
            if attempt.required {
                return failLoginTLS("server does not support SSL, but SSL was required (server_tls_mode)")
            }
            guard b.readableBytes == 0 else { return failLoginTLS("received unexpected data after SSL response") }
            output?.writeAndFlush(startup)
        case UInt8(ascii: "E"):
            failLoginTLS("server rejected the SSLRequest with an error")
        default:
            failLoginTLS("received invalid response to SSL negotiation: \(answer)")
        }
    }

    private func failLoginTLS(_ message: String) {
        failLogin(ServerTLSError(message: message))
    }
}
