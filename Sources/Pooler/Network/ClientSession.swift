import NIOCore
import NIOPosix
import NIOSSL

private let Z = UInt8(ascii: "Z"), Q = UInt8(ascii: "Q"), S = UInt8(ascii: "S"), P = UInt8(ascii: "P")
private let B = UInt8(ascii: "B"), D = UInt8(ascii: "D"), E = UInt8(ascii: "E"), C = UInt8(ascii: "C")
private let H = UInt8(ascii: "H"), X = UInt8(ascii: "X"), F = UInt8(ascii: "F"), I = UInt8(ascii: "I")

/// One client connection: front door (startup, auth), then the relay to a checked-out server.
///
/// Confined to its channel's event loop. The relay looks only at message headers (and the first
/// bytes of ReadyForQuery, CommandComplete and Parse) and forwards read buffers unchanged.
final class ClientSession: ChannelInboundHandler, ServerOwner {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Phase {
        case startup
        case authMD5(salt: [UInt8], hash: String)
        case authSCRAMFirst(ScramServer)
        case authSCRAMFinal(ScramServer)
        case loggingIn
        case ready
        case admin(AdminSession)
        case closed
    }

    let runtime: PoolerRuntime
    let loop: EventLoop
    let id: Int32
    let secretKey: Int32 = Int32.random(in: Int32.min...Int32.max)
    let connectedAt = NIODeadline.now()
    var context: ChannelHandlerContext!
    /// Writes to the client (directly to the socket when it is plain, see `ChannelOutput`).
    var output: ChannelOutput!
    var phase: Phase = .startup
    /// The loop's watch of clients still logging in, and this client's slot in it (-1: not watched).
    var loginWatch: LoginDeadlines<ClientSession>?
    var loginSlot = -1
    var inbound: ByteBuffer
    var database = ""
    var user = ""
    var applicationName = ""
    var remoteAddress: SocketAddress?
    /// "address:port" or "unix", for logs and SHOW CLIENTS (formatted on first use, on `loop`).
    lazy var peer: String = {
        switch remoteAddress {
        case .some(.unixDomainSocket): return "unix"
        case .some(let addr): return "\(addr.ipAddress ?? "?"):\(addr.port ?? 0)"
        case nil: return ""
        }
    }()
    var isUnixSocket = false
    var usesTLS = false
    /// An SSLRequest waits for its turn under tls_rate_limit_per_second: the client must send
    /// nothing before its answer.
    var tlsTurnPending = false

    // Relay state.
    var pool: ServerPool?
    var server: ServerConnection?
    var serverSameLoop = true
    var waitingForServer = false
    var pending: ByteBuffer?
    var crossLoopOut: ByteBuffer?
    var clientScanner = MessageScanner()
    var serverScanner = MessageScanner()
    var expectedReady = 0
    var extendedOpen = false
    var txStatus: UInt8 = I
    var dirty = false
    /// The server is in COPY IN/OUT (CopyInResponse/CopyOutResponse seen, no CommandComplete yet):
    /// such a server can only be closed if its client goes away.
    var serverInCopy = false
    /// The client has sent Flush (asynchronous extended protocol), for SHOW POOLS_MEMORY.
    var usedFlush = false
    /// Raw path: Syncs sent since the last Query/Execute, and whether the client is streaming COPY data.
    var syncsSinceStatement = 0
    var clientInCopy = false
    var sessionMode = false
    var terminating = false
    var counted = false
    var attachedAt = NIODeadline.now()
    /// When the server started working on what the client sent (for total_query_time).
    var busySince: NIODeadline?
    /// Graceful shutdown: close at the next transaction boundary.
    var closeAtBoundary = false

    // Prepared statements in transaction mode: the rewriter, and whether the current attachment
    // relays whole messages through it (set at attach once the client has used the extended protocol).
    var rewriter: PreparedStatementRewriter?
    var extendedClient = false
    /// The client sent Parse of the unnamed statement on the current server (raw path).
    var unnamedParsed = false
    /// Raw path, for a later switch to the rewriter: the client's unnamed statement (its whole
    /// Parse message; empty when it did not fit in one read; nil when there is none), the
    /// Parse/Bind/Describe/Close/Execute messages sent since the last Sync/Query whose last reply
    /// has not arrived, and whether the backend answered that open batch with an error.
    var rawUnnamed: ByteBuffer?
    var rawUnnamedMissing = 0
    var rawOpen = 0
    var rawSkipping = false
    var messageMode = false
    var clientAcc: ByteBuffer?
    var serverAcc: ByteBuffer?
    /// Message mode: what the rewriter puts after a backend message (reused between messages).
    var serverExtra = ByteBuffer()

    // Counters for SHOW CLIENTS.
    var transactionCount = 0
    var queryCount = 0
    var errorCount = 0
    var stateName: String {
        if waitingForServer { return "waiting" }
        return server == nil ? "idle" : "active"
    }

    init(runtime: PoolerRuntime, loop: EventLoop, id: Int32) {
        self.runtime = runtime
        self.loop = loop
        self.id = id
        self.inbound = ByteBufferAllocator().buffer(capacity: 0)
    }

    // MARK: - Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.output = ChannelOutput(context: context)
        remoteAddress = context.channel.remoteAddress
        if case .some(.unixDomainSocket) = remoteAddress { isUnixSocket = true }
        // A client that never finishes its startup is cut off by its loop's login sweep.
        if let watch = runtime.loginWatch(for: loop) {
            loginWatch = watch
            loginSlot = watch.add(self, deadline: connectedAt + runtime.startupTimeout)
        }
    }

    /// The login sweep found this client past the startup timeout (its watch already let go of it).
    func startupTimedOut() {
        loginSlot = -1
        loginWatch = nil
        switch phase {
        case .startup, .authMD5, .authSCRAMFirst, .authSCRAMFinal:
            fatal(code: "08P01", "client did not complete startup within \(runtime.startupTimeout.nanoseconds / 1_000_000_000) seconds")
        default: break
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        switch phase {
        case .ready:
            relayFromClient(buffer)
        case .admin(let admin):
            var b = buffer
            admin.receive(&b)
        case .startup, .authMD5, .authSCRAMFirst, .authSCRAMFinal:
            var b = buffer
            inbound.writeBuffer(&b)
            processLoginInput()
        case .loggingIn:
            var b = buffer
            inbound.writeBuffer(&b)
        case .closed:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        guard let server, case .ready = phase else { return }
        if serverSameLoop {
            server.flush()
        } else if let out = crossLoopOut {
            crossLoopOut = nil
            server.loop.execute {
                server.write(out)
                server.flush()
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        let wasAdmin: Bool
        if case .admin = phase { wasAdmin = true } else { wasAdmin = false }
        phase = .closed
        startupFinished()
        output.disableDirect()
        runtime.cancels.unregister(processID: id)
        runtime.sessionEnded(self, admin: wasAdmin)
        if let server {
            self.server = nil
            let clientQuiet = messageMode ? (clientAcc?.readableBytes ?? 0) == 0 : clientScanner.atBoundary
            let serverQuiet = messageMode ? (serverAcc?.readableBytes ?? 0) == 0 && !(rewriter?.needsServerFiltering ?? false)
                : serverScanner.atBoundary
            let clean = expectedReady <= 0 && !extendedOpen && !serverInCopy && clientQuiet && serverQuiet
            if clean {
                releaseToPool(server, rollback: txStatus != I)
            } else {
                discardServer(server)
            }
        }
    }

    /// Last call from the pipeline (after channelInactive): drop the references to the context, which
    /// holds this handler strongly — a reference cycle that kept every closed session in memory.
    /// Callbacks that arrive later (a server handed over, a cross-loop read) check `phase`/`server`
    /// or `context` first.
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        output?.detach()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }


    // MARK: - Cancel

    /// Forwards a cancel to the server this client is using right now (no-op when idle). That
    /// server is not reused after this client releases it (`ServerConnection.cancelForwarded`).
    func cancelCurrentQuery() {
        loop.execute { [self] in
            guard let s = server, let pool else { return }
            s.cancelForwarded = true
            runtime.sendCancel(host: pool.settings.serverHost, port: pool.settings.serverPort,
                               processID: s.processID, secretKey: s.secretKey,
                               tls: s.usesTLS ? pool.settings.serverTLS : nil)
        }
    }

    // MARK: - Errors and closing

    /// Sends an error to the client and closes the connection.
    func fatal(code: String, _ message: String) {
        guard context != nil, context.channel.isActive else { return }
        if case .closed = phase { return }
        var out = context.channel.allocator.buffer(capacity: 64 + message.utf8.count)
        BackendMessage.errorResponse(severity: "FATAL", code: code, message: message, into: &out)
        runtime.logger.debug("client \(peer) \(user)@\(database): FATAL \(code) \(message)")
        output.writeAndFlush(out)
        close()
    }

    func write(_ buffer: ByteBuffer, flush: Bool = true) {
        output.write(buffer)
        if flush { output.flush() }
    }

    func close() {
        guard let context else { return }
        context.close(promise: nil)
    }

    var allocator: ByteBufferAllocator { context.channel.allocator }

    /// Call on `loop`.
    func snapshot() -> SessionSnapshot {
        var isAdmin = false
        if case .admin = phase { isAdmin = true }
        return SessionSnapshot(
            id: id, database: database, user: user, applicationName: applicationName, peer: peer, tls: usesTLS,
            state: stateName, transactionCount: transactionCount, queryCount: queryCount, errorCount: errorCount,
            ageSeconds: ageSeconds, pool: pool, server: server?.snapshot(state: "active"), isAdmin: isAdmin,
            namedStatements: rewriter?.namedStatementCount ?? 0,
            unnamedStatements: (rewriter?.hasUnnamedStatement ?? false) || (!extendedClient && rawUnnamed != nil) ? 1 : 0,
            statementBytes: (rewriter?.statementBytes ?? 0) + (extendedClient ? 0 : rawUnnamed?.readableBytes ?? 0),
            usedFlush: usedFlush)
    }
    var ageSeconds: Int64 { (NIODeadline.now() - connectedAt).nanoseconds / 1_000_000_000 }
    var isCounted: Bool { counted }
}
