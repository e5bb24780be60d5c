import NIOCore
import NIOPosix
import NIOSSL

/// One client connection: front door (startup, auth), then the relay to a checked-out server.
///
/// Confined to its channel's event loop. The relay looks only at message headers (and the first
/// bytes of ReadyForQuery, CommandComplete and Parse) and forwards read buffers unchanged.
final class ClientSession: ChannelInboundHandler, ServerOwner {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Phase {
        case startup
        /// The password exchange (`ClientLoginStateMachine`: MD5 or SCRAM).
        case authenticating(ClientLoginStateMachine)
        case loggingIn
        case ready
        case admin(AdminSession)
        case closed
    }

    let runtime: PoolerRuntime
    let loop: EventLoop
    let id: Int32
    let secretKey: Int32
    let connectedAt: NIODeadline
    var context: ChannelHandlerContext!
    /// Writes to the client (directly to the socket when it is plain, see `Transport`).
    var output: Transport!
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
    /// Accepted on a RelayLoop, whose SSLRequest is to be answered with TLS here, on SwiftNIO.
    var tlsOnArrival = false

    /// Set for a user looked up by auth_query (`ClientSession+AuthQuery`).
    var authQueryLogin: AuthQueryLogin?

    // Relay state.
    var pool: ServerPool?
    var server: ServerConnection?
    var serverSameLoop = true
    var waitingForServer = false
    var pending: ByteBuffer?
    /// Storage of an earlier waiting query, reused for the next (`keptWhileWaiting`).
    var pendingSpare: ByteBuffer?
    var crossLoopOut: ByteBuffer?
    var clientScanner = MessageScanner()
    var serverScanner = MessageScanner()
    /// Where the streams stand and whether the server may go back (`ClientSessionStateMachine`).
    var relay = ClientSessionStateMachine(sessionMode: false)
    /// The client's own session parameters (startup keys, then what its SETs changed), which every
    /// server it gets is made to match.
    var parameters = SessionParameters() {
        didSet {
            parametersAtDefault = parameters.values.allSatisfy { parameterBaseline[$0.key] == $0.value }
            parameterSetID = -1  // worked out at the next checkout that needs it
        }
    }
    /// This client's parameter values as an id shared by every client with the same values (0: none;
    /// -1: not worked out since they last changed).
    var parameterSetID = 0

    /// `parameterSetID`, worked out when stale (one pool lookup per change of the client's values).
    func currentParameterSetID() -> Int {
        if parameterSetID < 0 {
            parameterSetID = parameters.isEmpty ? 0 : (pool?.parameterSetID(parameters.cacheKey) ?? 0)
        }
        return parameterSetID
    }
    /// The pooler's parameter query on the current server failed (its values are unknown now).
    var parameterSetupBroken = false
    /// The pool's server values at this client's login (what it follows where it set nothing).
    var parameterBaseline: [String: String] = [:] {
        didSet { parametersAtDefault = parameters.values.allSatisfy { parameterBaseline[$0.key] == $0.value } }
    }
    /// The client wants exactly the pool's values: a server still at its login values needs no SET.
    var parametersAtDefault = true
    /// The client set parameters at startup that PostgreSQL does not report: its SETs of them are
    /// watched for (`SessionParameters.parseSet`).
    var watchesSets = false
    /// `track_extra_parameters`: further parameters whose SETs are watched.
    var trackedParameters: Set<String> = []
    /// SETs of tracked parameters whose transaction has not ended yet (`relay.pendingSets` counts them).
    var pendingSets: [(String, String)] = []
    /// sync_server_parameters off: the startup values the client is told back at login (nothing is set).
    var reportedOnly: [String: String]?
    /// The client's startup packet, kept until its parameters are taken at login.
    var startupParameters: [String: String] = [:]
    var counted = false
    var attachedAt = NIODeadline.now()
    /// When the server started working on what the client sent (for total_query_time).
    var busySince: NIODeadline?
    /// The pooler's own timeouts (`SessionTimeouts`): when everything the client sent was last
    /// answered (or it logged in), when its open transaction began, whether the running statement
    /// was already cancelled by query_timeout, how many were.
    var quietSince = NIODeadline.now()
    var transactionSince: NIODeadline?
    var timeoutCancelSent = false
    /// While a COPY is in progress: when data last moved either way (proxy_copy_data_timeout).
    var copyDataAt = NIODeadline.now()
    var queryTimeouts = 0
    /// This client's slot in its loop's `SessionWatch` (-1: not watched) and whether it counts
    /// against max_db/user_client_connections.
    var timeoutWatch: SessionWatch<ClientSession>?
    var watchSlot = -1
    var countedInClientLimits = false
    /// Binary upgrade: a session being handed to the new process (reads paused; what still arrives
    /// is kept for the record), the one that came from the old process (restored in handlerAdded),
    /// and one the new process adopted (its connection closes here without a word).
    var migrating = false
    var migratingInput: ByteBuffer?
    var adoptedFrom: SessionHandover?
    var handedOver = false
    /// The new process refused this session (or the transfer failed): it is not offered again.
    var handoverDeclined = false
    /// `PoolerRuntime.key(database, user)`, set at login (the timeouts are looked up by it).
    var poolKey = ""

    // Prepared statements in transaction mode: the rewriter (nil in session mode or without a
    // statement cache); `relay.mode` says whether the current attachment relays through it.
    var rewriter: PreparedStatementRewriter?
    /// `rewriter != nil`, set with it at login: comparing the optional struct with nil copies it.
    var hasRewriter = false
    /// Raw path, for a later switch to the rewriter: the client's unnamed statement (its whole
    /// Parse message; nil when there is none) and how many of its body bytes are still to come.
    var rawUnnamed: ByteBuffer?
    var rawUnnamedMissing = 0
    /// Rewriting: a partial message from the client and from the server, kept for the next read.
    var clientAcc: ByteBuffer?
    var serverAcc: ByteBuffer?
    /// Rewriting: bytes of a large Query/CopyData still to forward as they come (never collected).
    var clientPassThrough = 0
    /// Rewriting: bytes of a large DataRow/CopyData from the server still to relay as they come
    /// (dropped instead when the rewriter filters that reply).
    var serverPassThrough = 0
    var serverPassThroughDropped = false
    /// What this session has reserved of `max_memory_usage` for the partial client / server message
    /// it holds whole (rewriting mode).
    var clientMessageHeld = 0
    var serverMessageHeld = 0
    /// Reads from the client are paused while it waits for a server with `pendingLimit` held.
    var clientReadsPaused = false
    /// Rewriting: what the rewriter puts after a backend message (reused between messages).
    var serverExtra = ByteBuffer()
    /// Rewriting: what the rewriter puts before or in place of a client message (reused).
    var clientInject = ByteBuffer()
    /// Rewriting: replies the rewriter answers a client read with itself (reused).
    var clientReply = ByteBuffer()
    /// Rewriting: the buffer the last edited client read was built in, reused for the next.
    var clientEdited: ByteBuffer?

    var stateName: String {
        if waitingForServer { return "waiting" }
        return server == nil ? "idle" : "active"
    }

    init(runtime: PoolerRuntime, loop: EventLoop, id: Int32, secretKey: Int32? = nil, connectedAt: NIODeadline? = nil) {
        self.runtime = runtime
        self.loop = loop
        self.id = id
        self.secretKey = secretKey ?? Int32.random(in: Int32.min...Int32.max)
        self.connectedAt = connectedAt ?? .now()
        self.inbound = ByteBufferAllocator().buffer(capacity: 0)
    }

    // MARK: - Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.output = Transport(context: context)
        remoteAddress = context.channel.remoteAddress
        if case .some(.unixDomainSocket) = remoteAddress { isUnixSocket = true }
        if let handover = adoptedFrom {
            adoptedFrom = nil
            return restore(from: handover)
        }
        watchStartup()
        if tlsOnArrival {
            // Came from a RelayLoop with its SSLRequest read there: answered once the channel is
            // registered (closing it inside its initializer breaks NIO).
            tlsOnArrival = false
            loop.execute { [self] in
                guard attached, output.isActive else { return }
                if !startTLS() { answerNo() }
            }
        }
    }

    /// A client that never finishes its startup is cut off by its loop's login sweep.
    func watchStartup() {
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
        case .startup, .authenticating:
            fatal(code: .protocolViolation, "client did not complete startup within \(runtime.startupTimeout.nanoseconds / 1_000_000_000) seconds")
        case .loggingIn, .ready, .admin, .closed:
            break
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received(unwrapInboundIn(data))
    }

    /// Bytes from the client (through NIO or a `RelaySocket`).
    func received(_ buffer: ByteBuffer) {
        switch phase {
        case .ready:
            if migrating {
                var b = buffer
                if migratingInput == nil { migratingInput = b.keptCompact() } else { migratingInput?.writeBuffer(&b) }
                return
            }
            if relay.serverInCopy { copyDataAt = .now() }
            relayFromClient(buffer)
        case .admin(let admin):
            var b = buffer
            admin.receive(&b)
        case .startup, .authenticating:
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
        readComplete()
    }

    /// The reads of one event are delivered: what was written to the server goes out.
    func readComplete() {
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
        closed()
    }

    /// The client's connection is gone (through NIO or a `RelaySocket`).
    func closed() {
        let wasAdmin: Bool
        if case .admin = phase { wasAdmin = true } else { wasAdmin = false }
        phase = .closed
        runtime.memory.release(clientMessageHeld + serverMessageHeld)
        clientMessageHeld = 0
        serverMessageHeld = 0
        startupFinished()
        if let timeoutWatch {
            timeoutWatch.remove(slot: watchSlot)
            self.timeoutWatch = nil
            watchSlot = -1
        }
        output.disableDirect()
        runtime.cancels.unregister(processID: id)
        runtime.sessionEnded(self, admin: wasAdmin)
        authQueryLogin?.end()
        if let server {
            self.server = nil
            guard let disposal = releaseVerdict(at: .clientClosed).disposal else { return }
            runRelease(disposal, of: server)
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
            guard let s = server else { return }
            cancel(s)
        }
    }

    /// Sends PostgreSQL a CancelRequest for `s`'s backend. Such a server is never reused
    /// (`ServerConnection.cancelForwarded`).
    func cancel(_ s: ServerConnection) {
        guard let pool else { return }
        s.cancelForwarded = true
        runtime.sendCancel(host: pool.settings.serverHost, port: pool.settings.serverPort,
                           processID: s.processID, secretKey: s.secretKey,
                           tls: s.usesTLS ? pool.settings.serverTLS : nil)
    }

    // MARK: - Errors and closing

    /// The size a partial message at the start of `buffer` announces (0 when its header is not complete).
    static func announcedSize(_ buffer: ByteBuffer) -> Int {
        MemoryBudget.announcedSize(typeAndLength: (buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
                                                   buffer.getInteger(at: buffer.readerIndex + 1, as: Int32.self)))
    }

    /// The client would make the pooler hold more than `max_memory_usage`: refused, as the
    /// reference pooler does.
    func outOfMemory() {
        fatal(code: .outOfMemory, "Server is temporarily out of memory (max_memory_usage): the message is too "
              + "large to hold now. Please try again later.")
    }

    /// Sends an error to the client and closes the connection.
    func fatal(code: SQLState, _ message: String) {
        guard output != nil, output.isActive else { return }
        if case .closed = phase { return }
        var out = allocator.buffer(capacity: 64 + message.utf8.count)
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
        output?.close()
    }

    var allocator: ByteBufferAllocator { Transport.allocator }

    /// Still tied to the client's connection (a late callback — a server handed over, a cross-loop
    /// read — finds it false once the connection is gone).
    var attached: Bool { output?.isAttached ?? false }

    /// Call on `loop`.
    func snapshot() -> SessionSnapshot {
        var isAdmin = false
        if case .admin = phase { isAdmin = true }
        return SessionSnapshot(
            id: id, database: database, user: user, applicationName: applicationName, peer: peer, tls: usesTLS,
            state: stateName, transactionCount: relay.transactionCount, queryCount: relay.queryCount,
            errorCount: relay.errorCount,
            ageSeconds: ageSeconds, pool: pool, server: server?.snapshot(state: "active"), isAdmin: isAdmin,
            namedStatements: rewriter?.namedStatementCount ?? 0,
            unnamedStatements: (rewriter?.hasUnnamedStatement ?? false) || (!relay.extendedClient && rawUnnamed != nil) ? 1 : 0,
            statementBytes: (rewriter?.statementBytes ?? 0) + (relay.extendedClient ? 0 : rawUnnamed?.readableBytes ?? 0),
            usedFlush: relay.usedFlush,
            parameters: parameters.values.filter { parameterBaseline[$0.key] != $0.value }
                .sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", "),
            queryTimeouts: queryTimeouts)
    }
    var ageSeconds: Int64 { (NIODeadline.now() - connectedAt).nanoseconds / 1_000_000_000 }
    var isCounted: Bool { counted }
}
