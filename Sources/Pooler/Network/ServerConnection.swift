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

/// One connection to PostgreSQL, and the NIO handler for it: it feeds what happens on the socket
/// to its `ServerConnectionStateMachine` and runs the actions it gets back.
///
/// While checked out it is a plain pipe: every read goes unparsed to its owner, which does the
/// accounting on its own event loop. Before that (login) and after (cleanup) the machine reads the
/// messages.
public final class ServerConnection: ChannelInboundHandler {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    public let id: Int
    /// Set once more when the connection moves to a RelayLoop after its login (`moveToRelay`),
    /// before any pool or client knows it.
    private(set) var loop: EventLoop
    /// `loop`'s identity (what a checkout compares with the client's loop).
    private(set) var loopKey: ObjectIdentifier
    /// Strong: a pool is long-lived and drops a server from its idle list when the server closes; a
    /// weak reference would give every pool a side table and slow down every retain of it.
    var pool: ServerPool?
    private(set) var channel: Channel?
    private var context: ChannelHandlerContext?
    /// Writes to PostgreSQL (directly to the socket when it is plain, see `Transport`).
    private var output: Transport?
    private var machine: ServerConnectionStateMachine
    private var accumulator: ByteBuffer
    private var loginPromise: EventLoopPromise<ServerConnection>?
    /// The client using this server: set by `attach`, cleared by `detach*` and when the server closes
    /// (strong, so the session has no side table: a weak reference slows every retain and release of
    /// it on the hot path).
    var owner: ServerOwner?
    /// `owner.loop === loop`, worked out at `attach` (asking on every read retains both loops).
    private var ownerOnLoop = true

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
    var expiresAt: NIODeadline? { machine.expiresAt }
    var epoch: Int { machine.epoch }
    var lastUsed: NIODeadline
    /// Guarded by the pool lock.
    var countedInPool = false
    /// Set when the server must not be reused (protocol desync, fatal error).
    var broken: Bool {
        get { machine.broken }
        set { machine.broken = newValue }
    }
    /// Set (on the owning client's loop) when a client's cancel request was forwarded for this
    /// backend (see `ServerConnectionStateMachine.cancelForwarded`).
    var cancelForwarded: Bool {
        get { machine.cancelForwarded }
        set { machine.cancelForwarded = newValue }
    }
    public private(set) var serverAddress: String = ""
    /// DOORMAN_n statements prepared on this backend (transaction-mode statement remapping).
    public let statements: ServerStatements
    /// True once the connection runs over TLS (SHOW SERVERS, cancel requests).
    public private(set) var usesTLS = false
    /// Set while waiting for the one-byte answer to our SSLRequest.
    private var tlsNegotiation: ServerTLSAttempt?
    private var cleanupDone: ((Bool) -> Void)?
    private var applyDone: ((ServerError?) -> Void)?

    // Per-connection counters for SHOW SERVERS (touched on the owner's loop while checked out).
    public var transactionCount = 0
    public var queryCount = 0
    public var bytesSent = 0
    public var bytesReceived = 0
    public var stateName: String { machine.stateName }

    init(id: Int, loop: EventLoop, pool: ServerPool, epoch: Int, lifetimeMs: UInt64) {
        self.id = id
        self.loop = loop
        self.loopKey = ObjectIdentifier(loop)
        self.pool = pool
        let createdAt = NIODeadline.now()
        self.createdAt = createdAt
        self.lastUsed = createdAt
        var expiresAt: NIODeadline?
        if lifetimeMs > 0 {
            // ±20% jitter so connections created together do not expire together.
            let jitter = Double.random(in: 0.8...1.2)
            expiresAt = createdAt + .milliseconds(Int64(Double(lifetimeMs) * jitter))
        }
        machine = ServerConnectionStateMachine(epoch: epoch, expiresAt: expiresAt)
        accumulator = ByteBufferAllocator().buffer(capacity: 0)
        statements = ServerStatements(capacity: pool.settings.serverPreparedStatementsCacheSize)
    }

    /// Why this server may or may not serve another client (`ServerReuse.verdict`).
    func reuse(epoch poolEpoch: Int, now: NIODeadline) -> ServerReuse {
        machine.reuse(poolEpoch: poolEpoch, now: now)
    }

    // MARK: - Login

    func startLogin(channel: Channel, settings: PoolSettings, clientKey: [UInt8]?,
                    tls: ServerTLSAttempt? = nil) -> EventLoopFuture<ServerConnection> {
        self.channel = channel
        self.serverAddress = "\(settings.serverHost):\(settings.serverPort)"
        let promise = loop.makePromise(of: ServerConnection.self)
        loginPromise = promise
        let login = BackendLoginStateMachine(user: settings.serverUser, credential: settings.backendCredential,
                                             clientKey: clientKey)
        let startup = BackendLoginStateMachine.startupMessage(settings: settings)
        switch machine.connected(login: login, tlsRequired: tls?.required) {
        case .sendSSLRequest:
            // The StartupMessage follows once the server said `S` (or `N` when allowed).
            var attempt = tls
            attempt?.startup = startup
            tlsNegotiation = attempt
            var out = channel.allocator.buffer(capacity: 8)
            out.writeInteger(Int32(8))
            out.writeInteger(Int32(80_877_103))
            output?.writeAndFlush(out)
        case .sendStartup:
            output?.writeAndFlush(startup)
        }
        return promise.futureResult
    }

    /// Ends a login that failed: the caller gets `error`.
    private func failLogin(_ error: Error) {
        machine.loginAborted()
        let p = loginPromise
        loginPromise = nil
        closeTransport()
        p?.fail(error)
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.output = Transport(context: context)
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received(unwrapInboundIn(data))
    }

    /// Bytes from PostgreSQL (through NIO or a `RelaySocket`).
    @inline(__always)
    func received(_ buffer: ByteBuffer) {
        if machine.isActive {
            bytesReceived &+= buffer.readableBytes
            guard let owner else { return }
            if ownerOnLoop { owner.serverRead(buffer) } else { owner.loop.execute { owner.serverRead(buffer) } }
            return
        }
        switch machine.state {
        case .negotiatingTLS:
            guard let context else { return }  // (TLS is negotiated through NIO only)
            negotiateTLS(context: context, buffer)
        case .login, .idle, .cleaning, .applying:
            var b = buffer
            accumulator.writeBuffer(&b)
            processAccumulated()
        case .active, .connecting, .closed:
            break
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        readComplete()
    }

    @inline(__always)
    func readComplete() {
        if machine.isActive, let owner {
            if ownerOnLoop { owner.serverReadComplete() } else { owner.loop.execute { owner.serverReadComplete() } }
        }
    }

    private func processAccumulated() {
        do {
            while let (type, body) = try MessageFramer.next(&accumulator) {
                switch machine.backendMessage(type: type, body: body) {
                case .none:
                    break
                case .send(let out):
                    output?.writeAndFlush(out)
                case .loggedIn(let pid, let secret, let reported):
                    processID = pid
                    secretKey = secret
                    parameters = reported
                    var values: [String: String] = [:]
                    for (name, value) in reported { values[name] = value }
                    loginParameterValues = values
                    parameterValues = values
                    let p = loginPromise
                    loginPromise = nil
                    p?.succeed(self)
                case .loginFailed(let e):
                    return failLogin(e)
                case .parameterStatus(let body):
                    noteParameterStatus(body)
                case .discard:
                    pool?.discard(self)
                    return
                case .cleanupFinished(_, let usable):
                    let done = cleanupDone
                    cleanupDone = nil
                    done?(usable)
                case .applyFinished(let error):
                    let done = applyDone
                    applyDone = nil
                    done?(error)
                case .stop:
                    return
                }
            }
            accumulator.discardReadBytes()
        } catch {
            switch machine.framingFailed() {
            case .failLogin: failLogin(error)
            case .discard: pool?.discard(self)
            }
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
        guard machine.beginApply() else {
            return done(ServerError(code: .connectionFailure, message: "server connection is not usable"))
        }
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

    // MARK: - Moving to a RelayLoop (`ServerConnection+Relay`)

    var transport: Transport? { output }
    var isIdleAfterLogin: Bool { machine.state == .idle && accumulator.readableBytes == 0 && loginPromise == nil }

    /// Leaves the NIO channel (moving to a RelayLoop): out of its pipeline first, so that nothing NIO
    /// reports for it from now on — its close above all — reaches this connection; then closed.
    func leaveChannel() {
        output?.detach()
        output = nil
        let channel = self.channel
        if let context {
            context.pipeline.syncOperations.removeHandler(context: context).whenComplete { _ in
                channel?.close(promise: nil)
            }
        } else {
            channel?.close(promise: nil)
        }
        context = nil
        self.channel = nil
    }

    func useTransport(_ t: Transport) { output = t }

    /// The connection's loop from now on (set before anyone else knows the connection).
    func adopt(loop new: EventLoop) {
        loop = new
        loopKey = ObjectIdentifier(new)
    }

    // MARK: - Checkout / checkin (call on self.loop)

    /// Attaches the server to a client; from now on reads go to `owner` unparsed.
    func attach(to owner: ServerOwner) {
        self.owner = owner
        ownerOnLoop = owner.loop === loop
        machine.attach()
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
        return machine.detachClean()
    }

    /// Detaches from the client. If `queries` is non-empty they are run first (ROLLBACK, DISCARD ALL),
    /// and `done(clean)` is called when the server is back at an idle ReadyForQuery.
    func detach(runningCleanup queries: [String], done: @escaping (Bool) -> Void) {
        owner = nil
        switch machine.detach(cleanupQueries: queries.count) {
        case .unusable: return done(false)
        case .clean: return done(true)
        case .runCleanup: break
        }
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
        guard machine.beginLivenessCheck() else { return done(false) }
        let deadline = loop.scheduleTask(in: timeout) { [self] in
            guard machine.livenessTimedOut(), let pending = cleanupDone else { return }
            cleanupDone = nil
            pending(false)
        }
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
        output?.setReading(on)
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        writabilityChanged(context.channel.isWritable)
    }

    /// The socket to PostgreSQL drained below (true) or filled past (false) its high water mark.
    func writabilityChanged(_ writable: Bool) {
        guard machine.isActive, let owner else { return }
        if owner.loop === loop { owner.serverWritabilityChanged(writable) } else {
            owner.loop.execute { owner.serverWritabilityChanged(writable) }
        }
    }

    public func close() {
        if loop.inEventLoop { closeOnLoop() } else { loop.execute { self.closeOnLoop() } }
    }

    private func closeOnLoop() {
        switch machine.close() {
        case .alreadyClosed:
            return
        case .terminateAndClose:
            if let output {
                var out = Transport.allocator.buffer(capacity: 5)
                FrontendMessage.terminate(into: &out)
                output.writeAndFlush(out)
            }
        case .close:
            break
        }
        closeTransport()
    }

    /// Closes the socket: through the transport once there is one, else the channel being set up.
    private func closeTransport() {
        if let output { output.close() } else { channel?.close(promise: nil) }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        closed()
    }

    /// The connection to PostgreSQL is gone (through NIO or a `RelaySocket`).
    func closed() {
        let what = machine.channelInactive()
        self.context = nil
        output?.disableDirect()
        output = nil
        switch what {
        case .loginFailed:
            failLogin(ServerError(code: .connectionFailure, message: "server closed the connection during login"))
        case .ownerLost:
            if let owner {
                self.owner = nil
                if owner.loop === loop { owner.serverClosed(self) } else { owner.loop.execute { owner.serverClosed(self) } }
            }
            pool?.serverDidClose(self)
        case .cleanupFailed:
            let done = cleanupDone
            cleanupDone = nil
            done?(false)
            pool?.serverDidClose(self)
        case .applyFailed:
            let done = applyDone
            applyDone = nil
            done?(ServerError(code: .connectionFailure, message: "server closed the connection unexpectedly"))
            pool?.serverDidClose(self)
        case .forget:
            pool?.serverDidClose(self)
        }
    }

    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        switch machine.errorCaught() {
        case .failLogin:
            // During login (TLS handshake included) the caller wants the reason, not "closed during login".
            failLogin(ServerTLSError.wrap(error))
        case .close:
            context.close(promise: nil)
        }
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
        var b = buffer
        guard let answer: UInt8 = b.readInteger() else { return }
        let startup = tlsNegotiation?.startup ?? context.channel.allocator.buffer(capacity: 0)
        let attempt = tlsNegotiation
        tlsNegotiation = nil
        switch machine.tlsAnswer(answer, trailingBytes: b.readableBytes) {
        case .startTLS:
            guard let attempt else { return failLoginTLS("TLS negotiation lost its settings") }
            output?.disableDirect()
            do {
                let handler = try NIOSSLClientHandler(context: attempt.context, serverHostname: attempt.hostname)
                try context.pipeline.syncOperations.addHandler(handler, position: .before(self))
            } catch {
                return failLoginTLS("cannot start TLS: \(error)")
            }
            usesTLS = true
            output?.writeAndFlush(startup)
        case .sendStartup:
            output?.writeAndFlush(startup)
        case .fail(let message):
            failLoginTLS(message)
        }
    }

    private func failLoginTLS(_ message: String) {
        failLogin(ServerTLSError(message: message))
    }
}

extension ServerConnection: PooledServer {}

/// Leaves its channel when it moves to a RelayLoop (`leaveChannel`).
extension ServerConnection: RemovableChannelHandler {}
