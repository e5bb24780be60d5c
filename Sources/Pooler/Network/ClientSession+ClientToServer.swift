import NIOCore
import NIOPosix

/// Relay from the client to its server: header scanning on the raw path, whole messages through
/// the prepared-statement rewriter in message mode, and checkout.
extension ClientSession {
    // MARK: - Relay: client → server

    @inline(__always)
    func relayFromClient(_ buffer: ByteBuffer) {
        let justAttached = self.server == nil
        guard let server = self.server ?? attachIdleServer(for: buffer) else {
            // A lone Terminate needs no server.
            if Self.isLoneTerminate(buffer) {
                relay.clientTerminated()
                return close()
            }
            if pending == nil {
                pending = keptWhileWaiting(buffer)  // usually the whole query arrives in one read
            } else {
                var b = buffer
                pending?.writeBuffer(&b)
            }
            if (pending?.readableBytes ?? 0) >= Self.pendingLimit { pauseClientReads() }
            if !waitingForServer { acquireServer() }
            return
        }
        if case .rewriting = relay.mode {
            return relayMessagesFromClient(buffer, server: server)
        }
        if rawUnnamedMissing > 0 { continueUnnamedParse(buffer) }
        var terminateAt = -1
        // Extended-protocol messages that only use the unnamed statement and portals this client
        // set up on this server go raw. The first message that needs the prepared-statement
        // rewriter (a named statement, or the unnamed one to be replayed on another server) switches
        // the session to rewriting from that message on, even inside a pipeline: the rewriter is
        // told what is still unanswered (`adoptRawStream`). When the switch is impossible (COPY in
        // progress, a server message half received), named statements go raw but mark the server for
        // cleanup, and a Bind of an unnamed statement this client never parsed on this server is
        // refused rather than run against another client's statement.
        let rewriterAvailable = hasRewriter
        let canSwitch = relay.canSwitchToRewriter(rewriterAvailable: rewriterAvailable,
                                                  serverAtBoundary: serverScanner.atBoundary)
        let queriesBefore = relay.queryCount
        var switchAt = -1
        var refuse = false
        var stray: UInt8?
        do {
            try clientScanner.scan(buffer, wantPrefix: ClientSessionStateMachine.rawPrefixLength) {
                type, length, prefix, start in
                if switchAt >= 0 || refuse || terminateAt >= 0 || stray != nil { return }
                switch relay.rawFrontend(type, prefix: prefix, rewriterAvailable: rewriterAvailable,
                                         canSwitch: canSwitch && start >= 0) {
                case .forward:
                    break
                case .forwardRememberingUnnamedParse:
                    rememberUnnamedParse(buffer, prefix: prefix, start: start, bodyLength: length)
                case .forwardForgettingUnnamedParse:
                    rawUnnamed = nil
                case .terminate:
                    terminateAt = start
                case .switchToRewriter:
                    switchAt = start
                case .refuseUnknownUnnamed:
                    refuse = true
                case .protocolViolation:
                    stray = type
                }
                if watchesSets { watchSet(type, prefix, complete: prefix.count == length) }
            }
            if let stray { return refuseStrayMessage(stray) }
            if refuse {
                return fatal(code: .invalidSQLStatementName, "unnamed prepared statement does not exist")
            }
        } catch {
            return fatal(code: .protocolViolation, "invalid message length from client")
        }
        let queries = relay.queryCount &- queriesBefore
        server.queryCount &+= queries
        if let pool {
            pool.stats.bytesReceived.wrappingIncrement(by: buffer.readableBytes, ordering: .relaxed)
            if queries > 0 { pool.stats.queryCount.wrappingIncrement(by: queries, ordering: .relaxed) }
        }
        if relay.expectedReady > 0 && busySince == nil {
            let since = justAttached ? attachedAt : .now()
            busySince = since
            if transactionSince == nil { transactionSince = since }
        }
        if switchAt >= 0, hasRewriter {
            if switchAt > 0, let head = buffer.getSlice(at: buffer.readerIndex, length: switchAt) {
                queueForServer(server, head)
            }
            clientScanner = MessageScanner()
            rewriter?.adoptRawStream(readyForQuery: relay.clientReadyDue, openMessages: relay.openMessages,
                              serverSkipping: relay.backendSkipping, openBatch: relay.extendedOpen,
                              unnamed: rawUnnamed, unnamedOnServer: relay.unnamedParsed)
            rawUnnamed = nil
            relay.switchedToRewriter()
            let tail = buffer.getSlice(at: buffer.readerIndex + switchAt, length: buffer.readableBytes - switchAt)
                ?? buffer
            return relayMessagesFromClient(tail, server: server)
        }
        var toSend = buffer
        if terminateAt >= 0 {
            // Terminate is for the pooler, not for a shared server.
            toSend = buffer.getSlice(at: buffer.readerIndex, length: max(0, terminateAt)) ?? buffer
        }
        if toSend.readableBytes > 0 {
            queueForServer(server, toSend)
        }
        if relay.terminating && relay.expectedReady <= 0 && !relay.extendedOpen {
            close()
        }
    }

    /// A Query or Parse whose text sets one of the client's startup parameters PostgreSQL does not
    /// report (`p`: the first bytes of its body): held until its transaction ends well.
    func watchSet(_ type: UInt8, _ p: UnsafeRawBufferPointer, complete: Bool) {
        var text = p
        switch FrontendMessageID(rawValue: type) {
        case .query:
            break
        case .parse:
            guard let nul = p.firstIndex(of: 0) else { return }
            text = UnsafeRawBufferPointer(rebasing: p[(nul + 1)...])
        default:
            return
        }
        guard let (name, value) = SessionParameters.parseSet(text, complete: complete),
              parameters[name] != nil || trackedParameters.contains(name),
              !SessionParameters.reportedSettable.contains(name) else { return }
        pendingSets.append((name, value))
        relay.clientSet()
    }

    /// The client's SETs that took effect become its own values (and the server's).
    func adoptCommittedSets() {
        guard let tookEffect = relay.settlePendingSets() else { return }
        let sets = pendingSets
        pendingSets = []
        guard tookEffect else { return }
        for (name, value) in sets {
            parameters[name] = value
            server?.parameterValues[name] = value
        }
    }

    /// A frontend message PostgreSQL would answer with FATAL: answered here, nothing of this read
    /// reaches the server, and the client is closed (its server goes back only if it is clean).
    func refuseStrayMessage(_ type: UInt8) {
        fatal(code: .protocolViolation, "invalid frontend message type \(type)")
    }

    /// Exactly one Terminate message (a client leaving while it holds no server).
    @inline(__always)
    static func isLoneTerminate(_ buffer: ByteBuffer) -> Bool {
        buffer.readableBytes == 5
            && buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) == FrontendMessageID.terminate.rawValue
    }

    /// Keeps a copy of a raw Parse of the unnamed statement (header rebuilt, body copied from this
    /// read and, when it continues, from the next ones) so the rewriter can replay it on another
    /// server if the session switches to it.
    @inline(__always)
    func rememberUnnamedParse(_ buffer: ByteBuffer, prefix: UnsafeRawBufferPointer, start: Int, bodyLength: Int) {
        let total = 5 + bodyLength
        // Moved out of `rawUnnamed` (not copied): the only reference, so `clear` keeps the storage.
        // (A bound copy left two references and every transaction allocated a new buffer.)
        var copy = rawUnnamed.take() ?? ByteBuffer()
        if copy.capacity >= total {
            copy.clear()
        } else {
            copy = allocator.buffer(capacity: max(total, 64))
        }
        copy.writeInteger(FrontendMessageID.parse.rawValue)
        copy.writeInteger(Int32(4 + bodyLength))
        // The body's first bytes are the scanner's prefix (they may have come in earlier reads); the
        // rest starts in this read right after them (the callback comes as the prefix completes).
        copy.writeBytes(prefix)
        let restStart = max(0, start + 5 + prefix.count)
        let here = max(0, min(bodyLength - prefix.count, buffer.readableBytes - restStart))
        if here > 0 {
            buffer.withUnsafeReadableBytes { p in
                _ = copy.writeBytes(UnsafeRawBufferPointer(rebasing: p[restStart..<(restStart + here)]))
            }
        }
        rawUnnamed = copy
        rawUnnamedMissing = bodyLength - prefix.count - here
    }

    /// The rest of a raw unnamed Parse that did not fit in the read it started in.
    @inline(__always)
    func continueUnnamedParse(_ buffer: ByteBuffer) {
        let n = min(rawUnnamedMissing, buffer.readableBytes)
        buffer.withUnsafeReadableBytes { p in
            _ = rawUnnamed?.writeBytes(UnsafeRawBufferPointer(rebasing: p[0..<n]))
        }
        rawUnnamedMissing -= n
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

    /// Queues bytes for the server; they are flushed at the end of the read batch.
    @inline(__always)
    func queueForServer(_ server: ServerConnection, _ buffer: ByteBuffer) {
        if serverSameLoop {
            server.write(buffer)
        } else {
            var b = buffer
            if crossLoopOut == nil { crossLoopOut = allocator.buffer(capacity: b.readableBytes) }
            crossLoopOut?.writeBuffer(&b)
        }
    }

    /// Message mode (extended protocol in transaction mode): every client message goes through the
    /// prepared statement rewriter.
    func relayMessagesFromClient(_ buffer: ByteBuffer, server: ServerConnection) {
        var input = Self.joinPartial(&clientAcc, buffer)
        // Messages the rewriter leaves unchanged are forwarded as runs of the input (no copy); an
        // edited read is built in the buffer the previous one was (once the server took it).
        var runs = ForwardRuns(input, reuse: clientEdited.take())
        // (Consumed bytes still count against the capacity until cleared.)
        if clientInject.writerIndex > 0 { clientInject.clear() }
        if clientReply.writerIndex > 0 { clientReply.clear() }
        let queriesBefore = relay.queryCount
        if clientPassThrough > 0 {
            // The rest of a message too large to hold, forwarded as it comes.
            let n = min(clientPassThrough, input.readableBytes)
            input.moveReaderIndex(forwardBy: n)
            clientPassThrough -= n
        }
        // Where the forwarded bytes end: a Terminate, never sent, ends the loop after its read.
        var forwardEnd = input.readerIndex
        do {
            while true {
                let start = input.readerIndex
                if let (type, length) = try Self.largeIncompleteMessage(
                    input, types: Self.streamedFrontend, threshold: runtime.streamThreshold, maxLength: clientScanner.maxMessageLength) {
                    // A Query or CopyData too large to hold: forwarded in pieces (the rewriter never
                    // changes them), with the bookkeeping of a whole one.
                    if type == FrontendMessageID.query.rawValue { relay.count(type) }
                    let empty = ByteBuffer()
                    if case .malformed(let why)? = rewriter?.clientMessage(
                        type: type, body: empty, server: server.statements, inject: &clientInject, toClientNow: &clientReply) {
                        return fatal(code: .protocolViolation, "malformed message from client: \(why)")
                    }
                    clientPassThrough = 1 + length - input.readableBytes
                    input.moveReaderIndex(to: input.writerIndex)
                    runs.message(at: start, end: input.readerIndex, keep: true, precededBy: &clientInject)
                    forwardEnd = input.readerIndex
                    break
                }
                guard let (type, body) = try MessageFramer.next(&input, maxLength: clientScanner.maxMessageLength) else { break }
                switch ClientSessionStateMachine.acceptedInSession(type) {
                case nil:
                    return refuseStrayMessage(type)
                case .terminate:
                    relay.clientTerminated()
                case .query:
                    // Only a short text can be DEALLOCATE/DISCARD: a long one is not turned into a String.
                    var q = body
                    let sql = body.readableBytes <= 4096 ? (q.readCString() ?? "") : ""
                    if watchesSets {
                        Array(sql.utf8.prefix(256)).withUnsafeBytes { watchSet(type, $0, complete: sql.utf8.count <= 256) }
                    }
                    let action = rewriter?.simpleQuery(sql) ?? PreparedStatementRewriter.SimpleQueryAction.none
                    switch action {
                    case .deallocate(_, false) where relay.transactionStatus != .idle:
                        // Inside a transaction the error must also fail the backend's transaction:
                        // let PostgreSQL raise it (it does not know the name either).
                        break
                    case .deallocate, .deallocateAll:
                        // The client's names never reached any server: answer here.
                        PreparedStatementRewriter.writeLocalReply(
                            action, transactionStatus: relay.transactionStatus.rawValue, into: &clientReply)
                        runs.message(at: start, end: input.readerIndex, keep: false, precededBy: &clientInject)
                        forwardEnd = input.readerIndex
                        continue
                    case .discardAll, .none:
                        break
                    }
                    relay.count(type)
                case .parse where watchesSets:
                    body.withUnsafeReadableBytes { watchSet(type, $0, complete: true) }
                    relay.count(type)
                case .sync where rewriter?.isInCopyIn == true:
                    // PostgreSQL ignores a Sync during COPY FROM STDIN: no ReadyForQuery will answer it.
                    break
                default:
                    relay.count(type)
                }
                if relay.terminating { break }
                switch rewriter?.clientMessage(
                    type: type, body: body, server: server.statements, inject: &clientInject, toClientNow: &clientReply) {
                case .malformed(let why)?:
                    return fatal(code: .protocolViolation, "malformed message from client: \(why)")
                case .forward?, nil:
                    runs.message(at: start, end: input.readerIndex, keep: true, precededBy: &clientInject)
                case .replaced?:
                    runs.message(at: start, end: input.readerIndex, keep: false, precededBy: &clientInject)
                }
                forwardEnd = input.readerIndex
            }
        } catch {
            return fatal(code: .protocolViolation, "invalid message length from client")
        }
        if input.readableBytes > 0 { clientAcc = input.keptCompact() }
        let needed = input.readableBytes > 0 ? Self.announcedSize(input) : 0
        if needed != clientMessageHeld, !runtime.memory.adjust(held: &clientMessageHeld, needed: needed) {
            return outOfMemory()
        }
        if relay.expectedReady > 0 && busySince == nil {
            let since = NIODeadline.now()
            busySince = since
            if transactionSince == nil { transactionSince = since }
        }
        let queries = relay.queryCount &- queriesBefore
        server.queryCount &+= queries
        if let pool {
            pool.stats.bytesReceived.wrappingIncrement(by: buffer.readableBytes, ordering: .relaxed)
            if queries > 0 { pool.stats.queryCount.wrappingIncrement(by: queries, ordering: .relaxed) }
        }
        if clientReply.readableBytes > 0 {
            output.writeAndFlush(clientReply)
        }
        let toServer = runs.finish(at: forwardEnd)
        if toServer.readableBytes > 0 { queueForServer(server, toServer) }
        // (Kept for the next edited read unless a large message made it large.)
        clientEdited = runs.edited ? (toServer.capacity <= Self.editedBufferLimit ? toServer : nil) : runs.takeSpare()
        // Nothing reached the server (a locally answered DEALLOCATE, or Terminate): let it go.
        // (Not while a message is half received: its rest follows and releasing drops it.)
        if relay.terminating && relay.expectedReady <= 0 && !relay.extendedOpen && !(rewriter?.needsServerFiltering ?? false)
            && input.readableBytes == 0 {
            return close()
        }
        if let disposal = releaseVerdict(at: .nothingSent).disposal, let s = self.server {
            self.server = nil
            runRelease(disposal, of: s)
        }
    }

    /// Messages the rewriter never changes that are forwarded in pieces as they arrive, instead of
    /// being collected whole, when larger than `message_size_to_be_stream` (`runtime.streamThreshold`).
    static let streamedFrontend: (UInt8, UInt8) = (FrontendMessageID.query.rawValue, FrontendMessageID.copyData.rawValue)
    static let streamedBackend: (UInt8, UInt8) = (BackendMessageID.dataRow.rawValue, BackendMessageID.copyData.rawValue)
    /// A client waiting for a server has at most this much of what it sent held; then its reads
    /// pause until it gets one (the rest waits in the kernel's socket buffers).
    static let pendingLimit = 256 << 10
    /// Largest buffer a rewriting session keeps between reads to build its next edited read in.
    static let editedBufferLimit = 16 << 10

    /// The header of a message of one of `types` at the start of `input` that is larger than
    /// `threshold` and not complete yet: (type, length field).
    static func largeIncompleteMessage(_ input: ByteBuffer, types: (UInt8, UInt8), threshold: Int,
                                       maxLength: Int) throws -> (UInt8, Int)? {
        guard input.readableBytes >= 5,
              let type = input.getInteger(at: input.readerIndex, as: UInt8.self),
              type == types.0 || type == types.1,
              let length = input.getInteger(at: input.readerIndex + 1, as: Int32.self).map(Int.init),
              length - 4 > threshold, input.readableBytes < 1 + length
        else { return nil }
        guard length <= maxLength else { throw MessageScanner.ScanError.badLength(type: type, length: length) }
        return (type, length)
    }

    /// Stops reading from the client (it waits for a server with `pendingLimit` bytes held).
    func pauseClientReads() {
        guard !clientReadsPaused, attached else { return }
        clientReadsPaused = true
        output.setReading(false)
    }

    /// Reads from the client again (it has a server now).
    func resumeClientReads() {
        guard clientReadsPaused, attached else { return }
        clientReadsPaused = false
        output.setReading(true)
    }

    /// Checkout hot path: an idle server attached synchronously (nothing queued, not a lone Terminate).
    @inline(__always)
    func attachIdleServer(for buffer: ByteBuffer) -> ServerConnection? {
        guard !waitingForServer, pending == nil, var pool else { return nil }
        if pool.isClosed, let next = pool.successor {
            // RELOAD replaced our pool: move to the new one at this transaction boundary.
            self.pool = next
            pool = next
        }
        if Self.isLoneTerminate(buffer) { return nil }
        let now = NIODeadline.now()
        guard let s = pool.tryAcquireIdle(on: loop, now: now) else { return nil }
        attach(s, now: now)
        return s
    }

    /// A copy of `buffer` (a query that waits for a server), in the session's spare buffer when
    /// it fits: a client that waits at every transaction (more clients than servers) then copies
    /// into the same small storage each time instead of allocating and freeing one.
    private func keptWhileWaiting(_ buffer: ByteBuffer) -> ByteBuffer {
        guard var spare = pendingSpare.take(), spare.capacity >= buffer.readableBytes else {
            return buffer.keptCompact()
        }
        spare.clear()
        spare.writeImmutableBuffer(buffer)
        return spare
    }

    /// The waiting query was relayed: its storage is kept for the next wait when it is small (if
    /// the server's socket still holds it, the next write copies on write: never shared).
    private func recyclePending(_ used: ByteBuffer) {
        if used.capacity <= Self.pendingSpareCapacity { pendingSpare = used }
    }

    /// The largest storage a session keeps for its waiting queries (`recyclePending`).
    static let pendingSpareCapacity = 1_024

    func acquireServer() {
        guard let pool else { return close() }
        waitingForServer = true
        // The callback captures `self` alone: its context is the session itself, not a box
        // allocated (and freed) per checkout.
        pool.acquire(on: loop) { [self] result in serverAcquired(result) }
    }

    /// The pool's answer to `acquireServer` (on `loop`).
    private func serverAcquired(_ result: Result<ServerConnection, PoolError>) {
        waitingForServer = false
        guard case .ready = phase else {
            // (To the server's own pool: after a RELOAD that may be the successor of the client's.)
            if case .success(let s) = result { (s.pool ?? pool)?.release(s) }
            return
        }
        switch result {
        case .success(let s):
            attach(s)
            if let p = pending {
                pending = nil
                relayFromClient(p)
                readComplete()
                recyclePending(p)
            }
            resumeClientReads()
        case .failure(let error):
            pool?.stats.errors.wrappingIncrement(ordering: .relaxed)
            switch error {
            case .queryWaitTimeout:
                fatal(code: .tooManyConnections, "Could not get a database connection from the pool. All servers may be busy or down. Error details: \(error). Please try again later.")
            case .serverRejected(let e):
                fatal(code: e.code, e.message)
            default:
                fatal(code: .connectionFailure, "Could not get a database connection from the pool. Error details: \(error). Please try again later.")
            }
        }
    }

    /// Queues, ahead of the client's bytes, the query that makes `s` match this client's parameters
    /// (its replies are swallowed: `ClientSessionStateMachine.setupPending`).
    func matchParameters(of s: ServerConnection) {
        let changes = parameters.changes(server: s.parameterValues, baseline: parameterBaseline)
        guard !changes.isEmpty else {
            s.matchedParameterSet = currentParameterSetID()
            return
        }
        for c in changes where !SessionParameters.reportedSettable.contains(c.name) {
            s.parameterValues[c.name] = c.value  // (PostgreSQL does not report these)
        }
        var out = allocator.buffer(capacity: 64)
        FrontendMessage.query(SessionParameters.query(for: changes), into: &out)
        queueForServer(s, out)
        relay.setupSent()
    }

    func attach(_ s: ServerConnection, now: NIODeadline = .now()) {
        server = s
        serverSameLoop = s.loop === loop
        serverScanner = MessageScanner()
        attachedAt = now
        relay.serverAttached(rewriterAvailable: hasRewriter)
        if !(parametersAtDefault && s.atLoginParameters)
            && (currentParameterSetID() == 0 || s.matchedParameterSet != parameterSetID) {
            matchParameters(of: s)
        }
        if serverSameLoop {
            s.attach(to: self)
        } else {
            s.loop.execute { s.attach(to: self) }
        }
    }

}
