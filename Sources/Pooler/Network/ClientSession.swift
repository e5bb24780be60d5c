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
    private var context: ChannelHandlerContext!
    private var phase: Phase = .startup
    private var inbound: ByteBuffer
    private(set) var database = ""
    private(set) var user = ""
    private(set) var applicationName = ""
    private(set) var peer = ""
    private(set) var isUnixSocket = false
    private(set) var usesTLS = false

    // Relay state.
    private(set) var pool: ServerPool?
    private(set) var server: ServerConnection?
    private var serverSameLoop = true
    private var waitingForServer = false
    private var pending: ByteBuffer?
    private var crossLoopOut: ByteBuffer?
    private var clientScanner = MessageScanner()
    private var serverScanner = MessageScanner()
    private var expectedReady = 0
    private var extendedOpen = false
    private var txStatus: UInt8 = I
    private var dirty = false
    /// The server is in COPY IN/OUT (CopyInResponse/CopyOutResponse seen, no CommandComplete yet):
    /// such a server can only be closed if its client goes away.
    private var serverInCopy = false
    private var releaseAfterRead = false
    private var sessionMode = false
    private var terminating = false
    private var counted = false
    private var attachedAt = NIODeadline.now()
    /// When the server started working on what the client sent (for total_query_time).
    private var busySince: NIODeadline?
    private var pendingRelease = false
    /// Graceful shutdown: close at the next transaction boundary.
    private var closeAtBoundary = false

    // Prepared statements in transaction mode: the rewriter, and whether the current attachment
    // relays whole messages through it (set at attach once the client has used the extended protocol).
    private var rewriter: PreparedStatementRewriter?
    private var extendedClient = false
    /// The client sent Parse of the unnamed statement on the current server (raw path).
    private var unnamedParsed = false
    private var messageMode = false
    private var clientAcc: ByteBuffer?
    private var serverAcc: ByteBuffer?

    // Counters for SHOW CLIENTS.
    private(set) var transactionCount = 0
    private(set) var queryCount = 0
    private(set) var errorCount = 0
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
        if let addr = context.channel.remoteAddress {
            switch addr {
            case .unixDomainSocket:
                isUnixSocket = true
                peer = "unix"
            default:
                peer = "\(addr.ipAddress ?? "?"):\(addr.port ?? 0)"
            }
        }
        // A client that never finishes its startup is cut off.
        let timeout = runtime.startupTimeout
        loop.scheduleTask(in: timeout) { [weak self] in
            guard let self else { return }
            switch self.phase {
            case .startup, .authMD5, .authSCRAMFirst, .authSCRAMFinal:
                self.fatal(code: "08P01", "client did not complete startup within \(timeout.nanoseconds / 1_000_000_000) seconds")
            default: break
            }
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

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    // MARK: - Startup and authentication

    private func processLoginInput() {
        while true {
            switch phase {
            case .startup:
                guard let result = StartupPacket.decode(&inbound) else { return }
                switch result {
                case .failure:
                    // Bad length or unknown code: close without a reply (nothing sensible to say).
                    close()
                    return
                case .success(.sslRequest):
                    if startTLS() { return }
                    var out = context.channel.allocator.buffer(capacity: 1)
                    out.writeInteger(UInt8(ascii: "N"))
                    context.writeAndFlush(NIOAny(out), promise: nil)
                case .success(.gssEncRequest):
                    var out = context.channel.allocator.buffer(capacity: 1)
                    out.writeInteger(UInt8(ascii: "N"))
                    context.writeAndFlush(NIOAny(out), promise: nil)
                case .success(.cancel(let pid, let secret)):
                    runtime.cancel(processID: pid, secretKey: secret)
                    close()
                    return
                case .success(.startup(let params, _)):
                    startup(params)
                }
            case .authMD5(let salt, let hash):
                guard let msg = nextMessage() else { return }
                guard msg.0 == UInt8(ascii: "p") else { return protocolViolation() }
                var body = msg.1
                let response = Array(body.readableBytesView.prefix { $0 != 0 })
                _ = body
                if MD5Password.verify(clientResponse: response, storedHash: hash, salt: salt) {
                    authenticated(clientKey: nil)
                } else {
                    authFailed()
                }
                return
            case .authSCRAMFirst(var scram):
                guard let msg = nextMessage() else { return }
                guard msg.0 == UInt8(ascii: "p") else { return protocolViolation() }
                var body = msg.1
                guard body.readCString() == "SCRAM-SHA-256", let n: Int32 = body.readInteger(), n >= 0,
                      let data = body.readBytes(length: Int(n))
                else {
                    return fatal(code: "28P01", "Authentication protocol error. Your client may not support SCRAM authentication properly.")
                }
                switch scram.receiveClientFirst(data) {
                case .success(let serverFirst):
                    phase = .authSCRAMFinal(scram)
                    var out = context.channel.allocator.buffer(capacity: 64 + serverFirst.count)
                    BackendMessage.authenticationSASL(code: 11, data: serverFirst, into: &out)
                    context.writeAndFlush(NIOAny(out), promise: nil)
                case .failure:
                    return fatal(code: "28P01", "Authentication protocol error. Your client may not support SCRAM authentication properly.")
                }
            case .authSCRAMFinal(var scram):
                guard let msg = nextMessage() else { return }
                guard msg.0 == UInt8(ascii: "p") else { return protocolViolation() }
                switch scram.receiveClientFinal(Array(msg.1.readableBytesView)) {
                case .success(let (serverFinal, clientKey)):
                    var out = context.channel.allocator.buffer(capacity: 64 + serverFinal.count)
                    BackendMessage.authenticationSASL(code: 12, data: serverFinal, into: &out)
                    context.write(NIOAny(out), promise: nil)
                    authenticated(clientKey: clientKey)
                case .failure:
                    authFailed()
                }
                return
            default:
                return
            }
        }
    }

    /// SSLRequest on TCP with a client-facing certificate: answers `S` and puts TLS in front of this
    /// handler; the StartupMessage then arrives encrypted. False when the answer must be `N`.
    private func startTLS() -> Bool {
        guard !isUnixSocket, !usesTLS, let tlsContext = runtime.tls.clientContext else { return false }
        // A client waits for the answer: anything already sent after the SSLRequest was not encrypted.
        guard inbound.readableBytes == 0 else {
            close()
            return true
        }
        var out = context.channel.allocator.buffer(capacity: 1)
        out.writeInteger(UInt8(ascii: "S"))
        context.writeAndFlush(NIOAny(out), promise: nil)
        do {
            try context.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tlsContext),
                                                           position: .before(self))
        } catch {
            close()
            return true
        }
        usesTLS = true
        runtime.tls.clientTLSConnections.wrappingIncrement(ordering: .relaxed)
        return true
    }

    private func nextMessage() -> (UInt8, ByteBuffer)? {
        do {
            return try MessageFramer.next(&inbound, maxLength: 10_000)
        } catch {
            protocolViolation()
            return nil
        }
    }

    private func protocolViolation() {
        fatal(code: "08P01", "invalid message during authentication")
    }

    private func authFailed() {
        fatal(code: "28P01", "password authentication failed for user \"\(user)\"")
    }

    private func startup(_ params: [String: String]) {
        user = params["user"] ?? ""
        database = params["database"].flatMap { $0.isEmpty ? nil : $0 } ?? user
        applicationName = params["application_name"] ?? ""
        if !usesTLS && !isUnixSocket && runtime.tls.clientMode.requiresTLS {
            return fatal(code: "28000", "Connection without SSL is not allowed by tls_mode.")
        }
        if runtime.isShuttingDown {
            return fatal(code: "57P03", "pg_doorman is shutting down")
        }
        if !runtime.admitClient() {
            return fatal(code: "53300", "sorry, too many clients already")
        }
        counted = true
        runtime.sessionStarted(self)

        let isAdmin = runtime.isAdminDatabase(database)
        let decision = runtime.hbaDecision(
            address: isUnixSocket ? nil : context.channel.remoteAddress, tls: usesTLS, database: database, user: user)
        let method: ClientAuthMethod
        switch decision {
        case .method(let m): method = m
        case .denied(let message): return fatal(code: "28000", message)
        }

        if isAdmin {
            guard user == runtime.adminUsername else {
                return fatal(code: "28P01", "password authentication failed for user \"\(user)\"")
            }
            if method == .trust { return authenticated(clientKey: nil) }
            let hash = MD5Password.hash(password: runtime.adminPassword, user: user)
            return beginMD5(hash: hash)
        }

        guard let pool = runtime.pool(database: database, user: user) else {
            if !runtime.hasDatabase(database) {
                return fatal(code: "3D000", "database \"\(database)\" does not exist")
            }
            return fatal(code: "28P01", "password authentication failed for user \"\(user)\"")
        }
        self.pool = pool
        let stored = pool.settings.clientPassword
        if method == .trust { return authenticated(clientKey: nil) }
        if stored.hasPrefix("SCRAM-SHA-256$") {
            guard let verifier = try? ScramVerifier(parsing: stored) else {
                return fatal(code: "28P01", "Server authentication configuration error. Please contact your database administrator.")
            }
            return beginSCRAM(verifier)
        }
        if stored.hasPrefix("md5") && stored.count == 35 {
            if method == .scram {
                // PostgreSQL cannot run SCRAM against an MD5 hash either.
                return authFailed()
            }
            return beginMD5(hash: stored)
        }
        if stored.isEmpty {
            return fatal(code: "28P01", "password authentication failed for user \"\(user)\": no password is configured and pg_hba does not trust this connection")
        }
        // Plaintext password in the config: SCRAM with a verifier derived once per pool.
        return beginSCRAM(runtime.derivedVerifier(for: pool))
    }

    private func beginMD5(hash: String) {
        var salt = [UInt8](repeating: 0, count: 4)
        for i in 0..<4 { salt[i] = UInt8.random(in: 0...255) }
        phase = .authMD5(salt: salt, hash: hash)
        var out = context.channel.allocator.buffer(capacity: 13)
        BackendMessage.authenticationMD5(salt: salt, into: &out)
        context.writeAndFlush(NIOAny(out), promise: nil)
    }

    private func beginSCRAM(_ verifier: ScramVerifier) {
        phase = .authSCRAMFirst(ScramServer(verifier: verifier))
        var out = context.channel.allocator.buffer(capacity: 32)
        BackendMessage.authenticationSASL(mechanisms: ["SCRAM-SHA-256"], into: &out)
        context.writeAndFlush(NIOAny(out), promise: nil)
    }

    private func authenticated(clientKey: [UInt8]?) {
        if runtime.isAdminDatabase(database) {
            let admin = AdminSession(runtime: runtime, session: self)
            phase = .admin(admin)
            var out = context.channel.allocator.buffer(capacity: 256)
            BackendMessage.authenticationOk(into: &out)
            for (k, v) in AdminSession.parameters(runtime: runtime) { BackendMessage.parameterStatus(k, v, into: &out) }
            BackendMessage.backendKeyData(processID: id, secretKey: secretKey, into: &out)
            BackendMessage.readyForQuery(into: &out)
            context.writeAndFlush(NIOAny(out), promise: nil)
            runtime.logClientConnection(self)
            if inbound.readableBytes > 0 { admin.receive(&inbound) }
            return
        }
        guard let pool else { return close() }
        if let clientKey, case .scramPassthrough = pool.settings.backendCredential {
            pool.scramClientKey = clientKey
        }
        phase = .loggingIn
        sessionMode = pool.settings.mode == .session
        if !sessionMode && pool.settings.preparedStatementsCacheSize > 0 {
            rewriter = PreparedStatementRewriter(cache: pool.statementCache)
        }
        if let params = pool.serverParameters, !sessionMode {
            finishLogin(params)
            return
        }
        // The first client of a pool (or any session-mode client) needs a server now.
        pool.acquire(on: loop) { [self] result in
            guard case .loggingIn = phase else {
                if case .success(let s) = result { pool.release(s) }
                return
            }
            switch result {
            case .success(let s):
                pool.serverParameters = s.parameters
                if sessionMode {
                    attach(s)
                } else {
                    pool.release(s)
                }
                finishLogin(pool.serverParameters ?? s.parameters)
            case .failure(let error):
                loginFailed(error)
            }
        }
    }

    private func loginFailed(_ error: PoolError) {
        switch error {
        case .serverRejected(let e):
            fatal(code: e.code, e.message)
        default:
            fatal(code: "08006", "pg_doorman could not connect to the server for database \"\(database)\": \(error)")
        }
    }

    private func finishLogin(_ params: [(String, String)]) {
        var out = context.channel.allocator.buffer(capacity: 512)
        BackendMessage.authenticationOk(into: &out)
        for (k, v) in params {
            if k == "application_name" && !applicationName.isEmpty { continue }
            BackendMessage.parameterStatus(k, v, into: &out)
        }
        if !applicationName.isEmpty { BackendMessage.parameterStatus("application_name", applicationName, into: &out) }
        BackendMessage.backendKeyData(processID: id, secretKey: secretKey, into: &out)
        BackendMessage.readyForQuery(into: &out)
        context.writeAndFlush(NIOAny(out), promise: nil)
        runtime.cancels.register(processID: id, secret: secretKey, session: self)
        phase = .ready
        runtime.logClientConnection(self)
        if inbound.readableBytes > 0 {
            let rest = inbound
            inbound = context.channel.allocator.buffer(capacity: 0)
            relayFromClient(rest)
            channelReadComplete(context: context)
        }
    }

    // MARK: - Relay: client → server

    @inline(__always)
    private func relayFromClient(_ buffer: ByteBuffer) {
        guard let server = self.server ?? attachIdleServer(for: buffer) else {
            // A lone Terminate needs no server.
            if buffer.readableBytes == 5, buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) == X {
                terminating = true
                return close()
            }
            if pending == nil {
                pending = buffer  // no copy: usually the whole query arrives in one read
            } else {
                var b = buffer
                pending!.writeBuffer(&b)
            }
            if !waitingForServer { acquireServer() }
            return
        }
        if messageMode {
            return relayMessagesFromClient(buffer, server: server)
        }
        var terminateAt = -1
        var queries = 0
        // The extended protocol goes through the rewriter (message mode). The switch happens at the
        // first Parse/Bind/Describe/Close when nothing sent earlier is still unanswered, so the bytes
        // before it go raw and the rest through the rewriter. When the switch is impossible (deep
        // pipelining), named statements go raw but mark the server for cleanup, and a Bind of an
        // unnamed statement this client never parsed on this server is refused rather than run.
        let quietAtStart = rewriter != nil && expectedReady == 0 && serverScanner.atBoundary && clientScanner.atBoundary
        var switchAt = -1
        var refuse = false
        do {
            try clientScanner.scan(buffer, wantPrefix: { t in t == P ? 1 : (t == B || t == D || t == C ? 2 : 0) }) {
                type, _, prefix, start in
                if switchAt >= 0 || refuse { return }
                if rewriter != nil && (type == P || type == B || type == D || type == C) {
                    if quietAtStart && !extendedOpen {
                        switchAt = start
                        return
                    }
                }
                if rewriter != nil && (type == P || type == B || type == D || type == C) && needsRewriter(type, prefix) {
                    if type != P && prefix.count >= 2 && prefix[1] == 0 && (type == B ? prefix[0] == 0 : true) {
                        // Bind/Describe of an unnamed statement this client did not Parse on this server.
                        refuse = true
                        return
                    }
                    dirty = true  // a client-named statement reached the server: clean it before reuse
                }
                switch type {
                case X:
                    terminateAt = start
                case P:
                    if prefix.count > 0 && prefix[0] == 0 { unnamedParsed = true }
                    if rewriter == nil && prefix.count > 0 && prefix[0] != 0 { dirty = true }
                    queries += account(type)
                case Q:
                    unnamedParsed = false
                    queries += account(type)
                case C:
                    if prefix.count >= 2 && prefix[0] == UInt8(ascii: "S") && prefix[1] == 0 { unnamedParsed = false }
                    queries += account(type)
                default:
                    queries += account(type)
                }
            }
            if refuse {
                return fatal(code: "26000", "unnamed prepared statement does not exist")
            }
        } catch {
            return fatal(code: "08P01", "invalid message length from client")
        }
        queryCount &+= queries
        server.queryCount &+= queries
        if let pool {
            pool.stats.bytesReceived.wrappingIncrement(by: buffer.readableBytes, ordering: .relaxed)
            if queries > 0 { pool.stats.queryCount.wrappingIncrement(by: queries, ordering: .relaxed) }
        }
        if expectedReady > 0 && busySince == nil { busySince = .now() }
        if switchAt >= 0 {
            if switchAt > 0, let head = buffer.getSlice(at: buffer.readerIndex, length: switchAt) {
                queueForServer(server, head)
            }
            clientScanner = MessageScanner()
            rewriter!.expectRawReplies(readyForQuery: expectedReady)
            extendedClient = true
            messageMode = true
            let tail = buffer.getSlice(at: buffer.readerIndex + switchAt, length: buffer.readableBytes - switchAt)!
            return relayMessagesFromClient(tail, server: server)
        }
        var toSend = buffer
        if terminateAt >= 0 {
            // Terminate is for the pooler, not for a shared server.
            terminating = true
            toSend = buffer.getSlice(at: buffer.readerIndex, length: max(0, terminateAt)) ?? buffer
        }
        if toSend.readableBytes > 0 {
            queueForServer(server, toSend)
        }
        if terminating && expectedReady <= 0 && !extendedOpen {
            close()
        }
    }

    /// The bytes to frame: the read itself when no partial message is pending (no copy), else the
    /// pending partial message with the read appended. Leaves `partial` empty.
    @inline(__always)
    static func joinPartial(_ partial: inout ByteBuffer?, _ buffer: ByteBuffer) -> ByteBuffer {
        guard var pending = partial else { return buffer }
        partial = nil
        var b = buffer
        pending.writeBuffer(&b)
        return pending
    }

    /// Whether a Parse/Bind/Describe/Close (with the first body bytes in `p`) needs the prepared
    /// statement rewriter: anything naming a statement, or an unnamed statement this client has not
    /// parsed on the current server.
    @inline(__always)
    private func needsRewriter(_ type: UInt8, _ p: UnsafeRawBufferPointer) -> Bool {
        switch type {
        case P:
            return p.count < 1 || p[0] != 0
        case B:  // portal\0 statement\0 ...: only an unnamed portal lets us see the statement name
            guard p.count >= 2, p[0] == 0 else { return true }
            return p[1] != 0 || !unnamedParsed
        case D, C:  // 'S'|'P', name\0
            guard p.count >= 2 else { return true }
            if p[0] == UInt8(ascii: "P") { return false }
            if p[1] == 0 { return type == D ? !unnamedParsed : false }
            return true
        default:
            return false
        }
    }

    /// Bookkeeping for one frontend message on its way to the server: how many ReadyForQuery replies
    /// are due, whether an extended-protocol batch is open (until Sync). Returns 1 for a query.
    @inline(__always)
    private func account(_ type: UInt8) -> Int {
        switch type {
        case Q, F:
            expectedReady += 1
            return 1
        case S:
            expectedReady += 1
            extendedOpen = false
            return 0
        case E:
            extendedOpen = true
            return 1
        case P, B, D, C, H:
            extendedOpen = true
            return 0
        default:
            return 0
        }
    }

    /// Queues bytes for the server; they are flushed at the end of the read batch.
    @inline(__always)
    private func queueForServer(_ server: ServerConnection, _ buffer: ByteBuffer) {
        if serverSameLoop {
            server.write(buffer)
        } else {
            var b = buffer
            if crossLoopOut == nil { crossLoopOut = context.channel.allocator.buffer(capacity: b.readableBytes) }
            crossLoopOut!.writeBuffer(&b)
        }
    }

    /// Message mode (extended protocol in transaction mode): every client message goes through the
    /// prepared statement rewriter.
    private func relayMessagesFromClient(_ buffer: ByteBuffer, server: ServerConnection) {
        var input = Self.joinPartial(&clientAcc, buffer)
        var toServer = context.channel.allocator.buffer(capacity: buffer.readableBytes + 64)
        var toClient = context.channel.allocator.buffer(capacity: 0)
        var queries = 0
        do {
            while let (type, body) = try MessageFramer.next(&input, maxLength: clientScanner.maxMessageLength) {
                switch type {
                case X:
                    terminating = true
                case Q:
                    var q = body
                    let sql = q.readCString() ?? ""
                    let action = rewriter!.simpleQuery(sql)
                    switch action {
                    case .deallocate, .deallocateAll:
                        // The client's names never reached any server: answer here.
                        PreparedStatementRewriter.writeLocalReply(action, transactionStatus: txStatus, into: &toClient)
                        continue
                    case .discardAll, .none:
                        break
                    }
                    queries += account(type)
                case S where rewriter!.isInCopyIn:
                    // PostgreSQL ignores a Sync during COPY FROM STDIN: no ReadyForQuery will answer it.
                    break
                default:
                    queries += account(type)
                }
                if terminating { break }
                if case .malformed(let why) = rewriter!.clientMessage(
                    type: type, body: body, server: server.statements, toServer: &toServer, toClientNow: &toClient)
                {
                    return fatal(code: "08P01", "malformed message from client: \(why)")
                }
            }
        } catch {
            return fatal(code: "08P01", "invalid message length from client")
        }
        if input.readableBytes > 0 { clientAcc = input }
        if expectedReady > 0 && busySince == nil { busySince = .now() }
        queryCount &+= queries
        server.queryCount &+= queries
        if let pool {
            pool.stats.bytesReceived.wrappingIncrement(by: buffer.readableBytes, ordering: .relaxed)
            if queries > 0 { pool.stats.queryCount.wrappingIncrement(by: queries, ordering: .relaxed) }
        }
        if toClient.readableBytes > 0 {
            context.write(NIOAny(toClient), promise: nil)
            context.flush()
        }
        if toServer.readableBytes > 0 { queueForServer(server, toServer) }
        if expectedReady <= 0 && !extendedOpen && !rewriter!.needsServerFiltering {
            // Nothing reached the server (a locally answered DEALLOCATE, or Terminate): let it go.
            if terminating { return close() }
            if txStatus == I, let s = self.server {
                self.server = nil
                releaseToPool(s, rollback: false)
            }
        }
    }

    /// Checkout hot path: an idle server attached synchronously (nothing queued, not a lone Terminate).
    @inline(__always)
    private func attachIdleServer(for buffer: ByteBuffer) -> ServerConnection? {
        guard !waitingForServer, pending == nil, var pool else { return nil }
        if pool.isClosed, let next = pool.successor {
            // RELOAD replaced our pool: move to the new one at this transaction boundary.
            self.pool = next
            pool = next
        }
        if buffer.readableBytes == 5, buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) == X { return nil }
        guard let s = pool.tryAcquireIdle(on: loop, now: .now()) else { return nil }
        attach(s)
        return s
    }

    private func acquireServer() {
        guard let pool else { return close() }
        waitingForServer = true
        pool.acquire(on: loop) { [self] result in
            waitingForServer = false
            guard case .ready = phase else {
                if case .success(let s) = result { pool.release(s) }
                return
            }
            switch result {
            case .success(let s):
                attach(s)
                if let p = pending {
                    pending = nil
                    relayFromClient(p)
                    channelReadComplete(context: context)
                }
            case .failure(let error):
                pool.stats.errors.wrappingIncrement(ordering: .relaxed)
                switch error {
                case .queryWaitTimeout:
                    fatal(code: "53300", "Could not get a database connection from the pool. All servers may be busy or down. Error details: \(error). Please try again later.")
                case .serverRejected(let e):
                    fatal(code: e.code, e.message)
                default:
                    fatal(code: "08006", "Could not get a database connection from the pool. Error details: \(error). Please try again later.")
                }
            }
        }
    }

    private func attach(_ s: ServerConnection) {
        server = s
        serverSameLoop = s.loop === loop
        serverScanner = MessageScanner()
        attachedAt = .now()
        messageMode = rewriter != nil && extendedClient
        serverInCopy = false
        unnamedParsed = false
        if serverSameLoop {
            s.attach(to: self)
        } else {
            s.loop.execute { s.attach(to: self) }
        }
    }

    // MARK: - Relay: server → client

    func serverRead(_ buffer: ByteBuffer) {
        guard server != nil else { return }
        if messageMode { return serverMessages(buffer) }
        var boundary = false
        do {
            try serverScanner.scan(buffer, wantPrefix: { t in t == Z ? 1 : (t == C ? 15 : 0) }) { type, _, prefix, _ in
                switch type {
                case Z:
                    if expectedReady > 0 { expectedReady -= 1 }
                    txStatus = prefix.count > 0 ? prefix[0] : I
                    if expectedReady == 0 && txStatus == I { boundary = true }
                case C:
                    serverInCopy = false
                    if Self.tagMakesSessionState(prefix) { dirty = true }
                    if Self.tagDropsAllStatements(prefix) { self.server?.statements.removeAll() }
                case UInt8(ascii: "G"), UInt8(ascii: "H"), UInt8(ascii: "W"):
                    serverInCopy = true
                case E:
                    errorCount += 1
                    serverInCopy = false
                default:
                    break
                }
            }
        } catch {
            // The server sent garbage: it cannot be trusted any more, nor can this client's stream.
            if let s = server { discardServer(s) }
            server = nil
            close()
            return
        }
        let n = buffer.readableBytes
        if let pool { pool.stats.bytesSent.wrappingIncrement(by: n, ordering: .relaxed) }
        context.write(NIOAny(buffer), promise: nil)
        if expectedReady == 0 { serverWentQuiet() }
        if boundary { transactionBoundary() }
    }

    /// Message mode: whole backend messages go through the rewriter (synthetic ParseComplete,
    /// dropped replies to injected messages).
    private func serverMessages(_ buffer: ByteBuffer) {
        var input = Self.joinPartial(&serverAcc, buffer)
        var out = context.channel.allocator.buffer(capacity: buffer.readableBytes + 16)
        var boundary = false
        var sawReady = false
        do {
            while let (type, body) = try MessageFramer.next(&input, maxLength: serverScanner.maxMessageLength) {
                switch type {
                case Z:
                    if expectedReady > 0 { expectedReady -= 1 }
                    txStatus = body.getInteger(at: body.readerIndex, as: UInt8.self) ?? I
                    boundary = expectedReady == 0 && txStatus == I
                    sawReady = true
                case C:
                    serverInCopy = false
                    let tag = body.getBytes(at: body.readerIndex, length: min(8, body.readableBytes)) ?? []
                    if tag.withUnsafeBytes({ Self.tagMakesSessionState($0) }) { dirty = true }
                case UInt8(ascii: "G"), UInt8(ascii: "H"), UInt8(ascii: "W"):
                    serverInCopy = true
                case E:
                    errorCount += 1
                    serverInCopy = false
                default:
                    break
                }
                rewriter!.serverMessage(type: type, body: body, toClient: &out)
                let ignored = rewriter!.takeIgnoredSyncs()
                if ignored > 0 { expectedReady = max(0, expectedReady - ignored) }
            }
        } catch {
            if let s = server { discardServer(s) }
            server = nil
            close()
            return
        }
        if input.readableBytes > 0 { serverAcc = input }
        if let pool { pool.stats.bytesSent.wrappingIncrement(by: out.readableBytes, ordering: .relaxed) }
        context.write(NIOAny(out), promise: nil)
        if expectedReady == 0 { serverWentQuiet() }
        if (boundary || (expectedReady == 0 && txStatus == I && sawReady)) && !rewriter!.needsServerFiltering {
            transactionBoundary()
        }
    }

    /// Everything sent has been answered: the busy interval ends (SHOW STATS total_query_time).
    @inline(__always)
    private func serverWentQuiet() {
        guard let since = busySince, let pool else { return }
        busySince = nil
        let micros = Int((NIODeadline.now() - since).nanoseconds / 1000)
        pool.stats.queryTimeMicros.wrappingIncrement(by: micros, ordering: .relaxed)
        pool.stats.queryHistogram.record(micros: micros)
    }

    /// ReadyForQuery idle with nothing outstanding: count the transaction and, in transaction mode,
    /// give the server back.
    private func transactionBoundary() {
        transactionCount += 1
        server?.transactionCount &+= 1
        if let pool {
            pool.stats.xactCount.wrappingIncrement(ordering: .relaxed)
            let micros = Int((NIODeadline.now() - attachedAt).nanoseconds / 1000)
            pool.stats.xactTimeMicros.wrappingIncrement(by: micros, ordering: .relaxed)
            pool.stats.xactHistogram.record(micros: micros)
        }
        let clientQuiet = messageMode ? (clientAcc?.readableBytes ?? 0) == 0 : clientScanner.atBoundary
        if !extendedOpen && clientQuiet && (!sessionMode || terminating) {
            context.flush()
            if let s = server {
                server = nil
                releaseToPool(s, rollback: false)
            }
            if terminating { close() }
            else if closeAtBoundary { fatal(code: "58006", "pooler is shut down now") }
        }
    }

    /// Graceful shutdown: idle clients are told now, busy ones at the end of their transaction.
    func shutdownRequested() {
        loop.execute { [self] in
            closeAtBoundary = true
            switch phase {
            case .ready where server == nil && !waitingForServer:
                fatal(code: "58006", "pooler is shut down now")
            case .startup, .authMD5, .authSCRAMFirst, .authSCRAMFinal:
                fatal(code: "57P03", "pg_doorman is shutting down")
            default:
                break
            }
        }
    }

    func serverReadComplete() {
        context.flush()
        // Backpressure: a client that does not read must not make us buffer a whole result set.
        if !context.channel.isWritable, let s = server, !s.readingPaused {
            s.readingPaused = true
            if s.loop === loop { s.setReading(false) } else { s.loop.execute { s.setReading(false) } }
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, let s = server, s.readingPaused {
            s.readingPaused = false
            if s.loop === loop { s.setReading(true) } else { s.loop.execute { s.setReading(true) } }
        }
    }

    /// The server is not taking client bytes fast enough (large COPY FROM): pause reading the client.
    func serverWritabilityChanged(_ writable: Bool) {
        guard context != nil, context.channel.isActive else { return }
        context.channel.setOption(ChannelOptions.autoRead, value: writable).whenComplete { _ in }
        if writable { context.read() }
    }

    func serverClosed(_ s: ServerConnection) {
        guard server === s else { return }
        server = nil
        if serverScanner.atBoundary {
            fatal(code: "08006", "server closed the connection unexpectedly")
        } else {
            close()
        }
    }

    /// `DISCARD ALL` / `DEALLOCATE ALL` completed: the backend holds no prepared statements any more.
    static func tagDropsAllStatements(_ p: UnsafeRawBufferPointer) -> Bool {
        func starts(_ text: StaticString) -> Bool {
            let n = text.utf8CodeUnitCount
            guard p.count >= n else { return false }
            return text.withUTF8Buffer { t in (0..<n).allSatisfy { p[$0] == t[$0] } }
        }
        return starts("DISCARD ALL") || starts("DEALLOCATE ALL")
    }

    /// CommandComplete tags that leave state in the server session (SET, DECLARE, PREPARE, LISTEN,
    /// CREATE TABLE for temporary tables): the server is cleaned before its next user.
    @inline(__always)
    static func tagMakesSessionState(_ p: UnsafeRawBufferPointer) -> Bool {
        guard p.count >= 3 else { return false }
        switch p[0] {
        case UInt8(ascii: "S"):  // "SET" but not "SELECT"
            return p[1] == UInt8(ascii: "E") && p[2] == UInt8(ascii: "T") && (p.count == 3 || p[3] == 0)
        case UInt8(ascii: "D"):  // "DECLARE CURSOR"
            return p.count >= 7 && p[1] == UInt8(ascii: "E") && p[2] == UInt8(ascii: "C")
        case UInt8(ascii: "P"):  // "PREPARE"
            return p.count >= 7 && p[1] == UInt8(ascii: "R") && p[2] == UInt8(ascii: "E") && p[3] == UInt8(ascii: "P")
        case UInt8(ascii: "L"):  // "LISTEN"
            return p[1] == UInt8(ascii: "I") && p[2] == UInt8(ascii: "S")
        case UInt8(ascii: "C"):  // "CREATE TABLE"
            return p.count >= 8 && p[1] == UInt8(ascii: "R") && p[7] == UInt8(ascii: "T")
        default:
            return false
        }
    }

    // MARK: - Checkin

    private func releaseToPool(_ s: ServerConnection, rollback: Bool) {
        guard let pool else { return discardServer(s) }
        if rewriter != nil {
            let uncertain = rewriter!.serverReleased()
            messageMode = false
            clientAcc = nil
            serverAcc = nil
            if uncertain { return discardServer(s) }
        }
        if !rollback && txStatus == I && !dirty && s.loop === loop {
            // Common case: clean server on our loop, no cleanup, no closures.
            expectedReady = 0
            if s.detachClean() { pool.release(s) } else { pool.discard(s) }
            return
        }
        var queries: [String] = []
        if rollback || txStatus != I { queries.append("ROLLBACK") }
        if dirty && pool.settings.cleanupServerConnections {
            queries.append("DISCARD ALL")
            s.statements.removeAll()
        }
        dirty = false
        txStatus = I
        expectedReady = 0
        let detach = {
            s.detach(runningCleanup: queries) { clean in
                if clean { pool.release(s) } else { pool.discard(s) }
            }
        }
        if s.loop === loop { detach() } else { s.loop.execute(detach) }
    }

    private func discardServer(_ s: ServerConnection) {
        s.broken = true
        if let pool { pool.discard(s) } else { s.close() }
    }

    // MARK: - Cancel

    /// Forwards a cancel to the server this client is using right now (no-op when idle).
    func cancelCurrentQuery() {
        loop.execute { [self] in
            guard let s = server, let pool else { return }
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
        context.writeAndFlush(NIOAny(out), promise: nil)
        close()
    }

    func write(_ buffer: ByteBuffer, flush: Bool = true) {
        context.write(NIOAny(buffer), promise: nil)
        if flush { context.flush() }
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
            ageSeconds: ageSeconds, pool: pool, server: server?.snapshot(state: "active"), isAdmin: isAdmin)
    }
    var ageSeconds: Int64 { (NIODeadline.now() - connectedAt).nanoseconds / 1_000_000_000 }
    var isCounted: Bool { counted }
}
