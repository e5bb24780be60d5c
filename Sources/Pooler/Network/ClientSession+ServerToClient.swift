import NIOCore
import NIOPosix

/// Relay from the server to its client, transaction boundaries, backpressure, and checkin.
extension ClientSession {
    // MARK: - Relay: server → client

    func serverRead(_ buffer: ByteBuffer) {
        guard server != nil else { return }
        if case .rewriting = relay.mode { return serverMessages(buffer) }
        var boundary = false
        // Replies to the pooler's own parameter query come first; the client's start after its
        // ReadyForQuery (whose callback always comes in the read that holds its last byte).
        var setupEnd = 0
        do {
            try serverScanner.scan(buffer, wantPrefix: ClientSessionStateMachine.backendPrefixLength) {
                type, length, prefix, start in
                switch relay.rawBackend(type, prefix: prefix) {
                case .none: break
                case .transactionBoundary: boundary = true
                case .statementsDropped: self.server?.statements.removeAll()
                case .parameterStatus: noteParameterStatus(prefix, bodyLength: length)
                case .setupReply: break
                case .setupFailed: parameterSetupFailed()
                case .setupDone:
                    setupEnd = start + 5 + length
                    parameterSetupDone()
                }
            }
        } catch {
            // The server sent garbage: it cannot be trusted any more, nor can this client's stream.
            return serverStreamBroken()
        }
        if relay.pendingSets > 0 { adoptCommittedSets() }
        var toClient = buffer
        if relay.setupPending {
            toClient = buffer.getSlice(at: buffer.readerIndex, length: 0) ?? buffer
        } else if setupEnd > 0 {
            toClient = buffer.getSlice(at: buffer.readerIndex + setupEnd, length: buffer.readableBytes - setupEnd) ?? buffer
        }
        let n = toClient.readableBytes
        if let pool { pool.stats.bytesSent.wrappingIncrement(by: n, ordering: .relaxed) }
        if n > 0 { output.write(toClient) }
        if relay.serverInCopy { copyDataAt = .now() }
        if relay.expectedReady == 0 {
            // One clock read for the end of the query, the transaction and the checkin.
            let now = NIODeadline.now()
            serverWentQuiet(now: now)
            if boundary { transactionBoundary(now: now) }
        }
    }

    /// The server's bytes break the protocol: neither it nor this client's stream can be trusted.
    func serverStreamBroken() {
        if let s = server { discardServer(s) }
        server = nil
        close()
    }

    /// Rewriting: whole backend messages go through the rewriter (synthetic ParseComplete, dropped
    /// replies to injected messages).
    func serverMessages(_ buffer: ByteBuffer) {
        if serverAcc == nil && serverPassThrough == 0 && !relay.setupPending
            && (rewriter?.peekRepliesArePlain() ?? true) {
            return plainServerReplies(buffer)
        }
        var input = Self.joinPartial(&serverAcc, buffer)
        // Messages the rewriter leaves unchanged are forwarded as runs of the input (no copy).
        var runs = ForwardRuns(input)
        var boundary = false
        var sawReady = false
        if serverPassThrough > 0 {
            // The rest of a DataRow/CopyData too large to hold, relayed (or dropped) as it comes.
            let start = input.readerIndex
            let n = min(serverPassThrough, input.readableBytes)
            input.moveReaderIndex(forwardBy: n)
            serverPassThrough -= n
            runs.message(at: start, end: input.readerIndex, keep: !serverPassThroughDropped, then: &serverExtra)
        }
        do {
            while serverPassThrough == 0 {
                let start = input.readerIndex
                if let (type, length) = try Self.largeIncompleteMessage(
                    input, types: Self.streamedBackend, threshold: runtime.streamThreshold,
                    maxLength: serverScanner.maxMessageLength) {
                    // A large row or COPY chunk: relayed in pieces with the bookkeeping of a whole one.
                    if serverExtra.writerIndex > 0 { serverExtra.clear() }
                    let keep = relay.setupPending ? false
                        : (rewriter?.serverReply(type: type, body: ByteBuffer(), extra: &serverExtra) ?? true)
                    serverPassThroughDropped = !keep
                    serverPassThrough = 1 + length - input.readableBytes
                    input.moveReaderIndex(to: input.writerIndex)
                    runs.message(at: start, end: input.readerIndex, keep: keep, then: &serverExtra)
                    break
                }
                guard let (type, body) = try MessageFramer.next(&input, maxLength: serverScanner.maxMessageLength) else { break }
                if relay.setupPending {
                    // A reply to the pooler's own parameter query: not for the client, nor the rewriter.
                    switch relay.setupBackend(type) {
                    case .parameterStatus:
                        body.withUnsafeReadableBytes { noteParameterStatus($0, bodyLength: body.readableBytes) }
                    case .setupFailed:
                        parameterSetupFailed(ServerError(body: body))
                    case .setupDone:
                        parameterSetupDone()
                    case .setupReply, .none, .transactionBoundary, .statementsDropped:
                        break
                    }
                    runs.message(at: start, end: input.readerIndex, keep: false, then: &serverExtra)
                    continue
                }
                if body.withUnsafeReadableBytes({ rewritingBackend(type, $0, bodyLength: $0.count, boundary: &boundary) }) {
                    sawReady = true
                }
                // (Consumed bytes still count against the capacity until cleared.)
                if serverExtra.writerIndex > 0 { serverExtra.clear() }
                let forward = rewriter?.serverReply(type: type, body: body, extra: &serverExtra) ?? true
                relay.syncsIgnored(rewriter?.takeIgnoredSyncs() ?? 0)
                runs.message(at: start, end: input.readerIndex, keep: forward, then: &serverExtra)
            }
        } catch {
            return serverStreamBroken()
        }
        let toClient = runs.finish(at: input.readerIndex)
        finishServerMessages(toClient, held: input, boundary: boundary, sawReady: sawReady)
    }

    /// Rewriting, while every reply awaited reaches the client unchanged (`peekRepliesArePlain`),
    /// and the backend's stream is at a message boundary: the read is relayed as it is, its
    /// messages found by the raw scanner, the rewriter told of each by type. A read that ends
    /// inside a message leaves its rest to `serverMessages`' own framing (the body still to come
    /// relayed as it comes; a cut header or tag held) so that the scanner is at a boundary when
    /// the next read decides.
    func plainServerReplies(_ buffer: ByteBuffer) {
        var boundary = false
        var sawReady = false
        // Where the last message the scanner reported ends, from the buffer's reader index.
        var lastEnd = 0
        do {
            try serverScanner.scan(buffer, wantPrefix: ClientSessionStateMachine.backendPrefixLength) {
                type, length, prefix, start in
                lastEnd = start + 5 + length
                if rewritingBackend(type, prefix, bodyLength: length, boundary: &boundary) { sawReady = true }
                rewriter?.plainReply(type: type, tag: prefix, bodyLength: length)
                relay.syncsIgnored(rewriter?.takeIgnoredSyncs() ?? 0)
            }
        } catch {
            return serverStreamBroken()
        }
        var held = ByteBuffer()
        var toClient = buffer
        if !serverScanner.atBoundary {
            let n = buffer.readableBytes
            if lastEnd > n {
                // Inside a reported message's body: the rest is relayed as it comes.
                serverPassThrough = lastEnd - n
                serverPassThroughDropped = false
            } else {
                // A header or tag cut short: held until the message can be framed.
                held = buffer.getSlice(at: buffer.readerIndex + lastEnd, length: n - lastEnd) ?? ByteBuffer()
                toClient = buffer.getSlice(at: buffer.readerIndex, length: lastEnd) ?? ByteBuffer()
            }
            serverScanner = MessageScanner(maxMessageLength: serverScanner.maxMessageLength)
        }
        finishServerMessages(toClient, held: held, boundary: boundary, sawReady: sawReady)
    }

    /// The relay's bookkeeping for a backend message in rewriting mode (`p`: its body, or at least
    /// the first bytes `backendPrefixLength` asks for; `bodyLength` in all). True for ReadyForQuery,
    /// whose `boundary` is set: it ends the transaction with nothing else due.
    @inline(__always)
    func rewritingBackend(_ type: UInt8, _ p: UnsafeRawBufferPointer, bodyLength: Int, boundary: inout Bool) -> Bool {
        switch BackendMessageID(rawValue: type) {
        case .readyForQuery:
            boundary = relay.readyForQuery(status: p.count > 0 ? p[0] : nil)
            return true
        case .commandComplete:
            relay.commandComplete(tag: UnsafeRawBufferPointer(rebasing: p.prefix(8)))
        case .copyInResponse, .copyOutResponse, .copyBothResponse:
            relay.copyResponse()
        case .errorResponse:
            relay.errorResponse()
        case .parameterStatus:
            noteParameterStatus(p, bodyLength: bodyLength)
        default:
            break
        }
        return false
    }

    /// The end of a rewriting read: `toClient` goes to the client, `held` (the start of a message
    /// not complete yet) waits for the next read.
    @inline(__always)
    func finishServerMessages(_ toClient: ByteBuffer, held: ByteBuffer, boundary: Bool, sawReady: Bool) {
        if relay.pendingSets > 0 { adoptCommittedSets() }
        if held.readableBytes > 0 { serverAcc = held.keptCompact() }
        let needed = held.readableBytes > 0 ? Self.announcedSize(held) : 0
        if needed != serverMessageHeld, !runtime.memory.adjust(held: &serverMessageHeld, needed: needed) {
            // A backend message too large to hold now: the client that asked for it is refused and
            // its server, left mid-message, is closed.
            if let s = server { discardServer(s) }
            server = nil
            return outOfMemory()
        }
        if let pool { pool.stats.bytesSent.wrappingIncrement(by: toClient.readableBytes, ordering: .relaxed) }
        if toClient.readableBytes > 0 { output.write(toClient) }
        if relay.serverInCopy { copyDataAt = .now() }
        let quiet = relay.expectedReady == 0
        let atBoundary = (boundary || (quiet && relay.transactionStatus == .idle && sawReady))
            && !(rewriter?.needsServerFiltering ?? false)
        if quiet || atBoundary {
            // One clock read for the end of the query, the transaction and the checkin.
            let now = NIODeadline.now()
            if quiet { serverWentQuiet(now: now) }
            if atBoundary { transactionBoundary(now: now) }
        }
    }

    /// A ParameterStatus from the server (`p`: the first bytes of its body, `bodyLength` in all):
    /// the server's value is tracked; outside the pooler's own query it is the client's value too
    /// (its own SET, or a reset it ran), which then follows it to its next server.
    func noteParameterStatus(_ p: UnsafeRawBufferPointer, bodyLength: Int) {
        guard let (name, value) = Self.parseParameterStatus(p, complete: p.count == bodyLength) else { return }
        guard let value else {
            server?.parameterValues.removeValue(forKey: name)  // too long to track: unknown now
            return
        }
        server?.parameterValues[name] = value
        if !relay.setupPending && SessionParameters.reportedSettable.contains(name) && pool?.settings.syncServerParameters != false {
            parameters[name] = value
        }
    }

    /// The query making a server match this client's parameters failed (a value the server accepted
    /// at login no longer valid, or a server configured differently): the server's tracked values
    /// are dropped so the next checkout sets them all again.
    func parameterSetupFailed(_ error: ServerError? = nil) {
        runtime.logger.warning("client \(peer) \(user)@\(database): setting its session parameters failed: \(error.map { "\($0)" } ?? "error from the server")")
        server?.parameterValues = [:]
        parameterSetupBroken = true
    }

    /// The pooler's parameter query is answered: unless it failed, the server matches this client.
    func parameterSetupDone() {
        if !parameterSetupBroken { server?.matchedParameterSet = currentParameterSetID() }
        parameterSetupBroken = false
    }

    /// name\0value\0 → (name, value); value nil when the body was cut short.
    static func parseParameterStatus(_ p: UnsafeRawBufferPointer, complete: Bool) -> (String, String?)? {
        guard let nul = p.firstIndex(of: 0) else { return nil }
        let name = String(decoding: UnsafeRawBufferPointer(rebasing: p[0..<nul]), as: UTF8.self)
        let rest = UnsafeRawBufferPointer(rebasing: p[(nul + 1)...])
        guard complete, let end = rest.firstIndex(of: 0) else { return (name, nil) }
        return (name, String(decoding: UnsafeRawBufferPointer(rebasing: rest[rest.startIndex..<end]), as: UTF8.self))
    }

    /// Everything sent has been answered: the busy interval ends (SHOW STATS total_query_time).
    @inline(__always)
    func serverWentQuiet(now: NIODeadline) {
        quietSince = now
        timeoutCancelSent = false
        guard let since = busySince, let pool else { return }
        busySince = nil
        let micros = Int((now - since).nanoseconds / 1000)
        pool.stats.queryTimeMicros.wrappingIncrement(by: micros, ordering: .relaxed)
        pool.stats.queryHistogram.record(micros: micros)
    }

    /// ReadyForQuery idle with nothing outstanding: count the transaction and, in transaction mode,
    /// give the server back.
    func transactionBoundary(now: NIODeadline) {
        relay.transactionEnded()
        transactionSince = nil
        server?.transactionCount &+= 1
        if let pool {
            pool.stats.xactCount.wrappingIncrement(ordering: .relaxed)
            let micros = Int((now - attachedAt).nanoseconds / 1000)
            pool.stats.xactTimeMicros.wrappingIncrement(by: micros, ordering: .relaxed)
            pool.stats.xactHistogram.record(micros: micros)
        }
        guard let disposal = releaseVerdict(at: .transactionBoundary).disposal else { return }
        output.flush()
        if let s = server {
            server = nil
            runRelease(disposal, of: s, now: now)
            if runtime.isMigrating { offerHandover() }
        }
        if relay.terminating { close() }
        else if relay.closeAtBoundary { fatal(code: .poolerShutdown, "pooler is shut down now") }
    }

    /// Graceful shutdown: idle clients are told now, busy ones at the end of their transaction.
    func shutdownRequested() {
        loop.execute { [self] in
            relay.closeAtBoundary = true
            switch phase {
            case .ready where server == nil && !waitingForServer:
                fatal(code: .poolerShutdown, "pooler is shut down now")
            case .startup, .authenticating:
                fatal(code: .cannotConnectNow, "pg_doorman is shutting down")
            case .ready, .loggingIn, .admin, .closed:
                break  // busy clients are told at the end of their transaction
            }
        }
    }

    func serverReadComplete() {
        guard attached else { return }  // (a cross-loop call after the client left)
        output.flush()
        // Backpressure: a client that does not read must not make us buffer a whole result set.
        // (Only NIO's queue can make the channel unwritable: nothing to ask after direct writes.)
        if output.holdsQueuedBytes, !output.isWritable, let s = server, !s.readingPaused {
            s.readingPaused = true
            if s.loop === loop { s.setReading(false) } else { s.loop.execute { s.setReading(false) } }
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        clientWritabilityChanged(context.channel.isWritable)
    }

    /// The client's socket drained below (true) or filled past (false) its high water mark.
    func clientWritabilityChanged(_ writable: Bool) {
        if writable, let s = server, s.readingPaused {
            s.readingPaused = false
            if s.loop === loop { s.setReading(true) } else { s.loop.execute { s.setReading(true) } }
        }
    }

    /// The server is not taking client bytes fast enough (large COPY FROM): pause reading the client.
    func serverWritabilityChanged(_ writable: Bool) {
        guard attached, output.isActive else { return }
        output.setReading(writable)
    }

    func serverClosed(_ s: ServerConnection) {
        guard server === s else { return }
        server = nil
        if serverScanner.atBoundary {
            fatal(code: .connectionFailure, "server closed the connection unexpectedly")
        } else {
            close()
        }
    }

    // MARK: - Checkin

    /// The streams as the release decision needs them (scanners on the raw path, partial messages
    /// and the rewriter's expectations when rewriting).
    ///
    /// The rewriter is asked through `mutating` peeks: a non-mutating call on the optional stored
    /// struct would copy the whole rewriter (measured: ~370 instructions a transaction).
    func streams() -> ClientSessionStateMachine.Streams {
        let uncertain = hasRewriter ? (rewriter?.peekReleaseIsUncertain() ?? false) : false
        switch relay.mode {
        case .raw:
            return .init(clientAtBoundary: clientScanner.atBoundary, serverAtBoundary: serverScanner.atBoundary,
                         rewriterExpectsReplies: false, rewriterUncertain: uncertain)
        case .rewriting:
            return .init(clientAtBoundary: (clientAcc?.readableBytes ?? 0) == 0 && clientPassThrough == 0,
                         serverAtBoundary: (serverAcc?.readableBytes ?? 0) == 0 && serverPassThrough == 0,
                         rewriterExpectsReplies: rewriter?.peekNeedsServerFiltering() ?? false,
                         rewriterUncertain: uncertain)
        }
    }

    func releaseVerdict(at point: ClientSessionStateMachine.ReleasePoint) -> ClientSessionStateMachine.ReleaseVerdict {
        relay.releaseVerdict(at: point, streamsNow: streams(),
                             cleanupEnabled: pool?.settings.cleanupServerConnections ?? false,
                             cancelOnClientDisconnect: pool?.settings.cancelOnClientDisconnect ?? true)
    }

    /// Runs a release verdict for server `s`, which the caller has already taken from `server`.
    func runRelease(_ disposal: ClientSessionStateMachine.ServerDisposal, of s: ServerConnection,
                    now: NIODeadline = .now()) {
        _ = rewriter?.serverReleased()
        relay.serverDetached()
        transactionSince = nil
        clientAcc = nil
        serverAcc = nil
        clientPassThrough = 0
        serverPassThrough = 0
        runtime.memory.release(clientMessageHeld + serverMessageHeld)
        clientMessageHeld = 0
        serverMessageHeld = 0
        guard let pool else { return discardServer(s) }
        switch disposal {
        case .discard:
            discardServer(s)
        case .cancelAndDiscard:
            // The client is gone in the middle of a statement: cancel it, so that its backend
            // does not run on (holding its locks) until the statement ends by itself.
            cancel(s)
            discardServer(s)
        case .release(let cleanup) where cleanup.isNone && s.loop === loop:
            // Common case: clean server on our loop, no cleanup, no closures.
            if s.detachClean() { pool.release(s, now: now) } else { pool.discard(s) }
        case .release(let cleanup):
            let queries = cleanup.queries
            if cleanup.reset.contains(.statements) { s.statements.removeAll() }
            if cleanup.reset.contains(.parameters) { s.forgetUnreportedParameters() }
            let detach = {
                s.detach(runningCleanup: queries) { clean in
                    if clean { pool.release(s) } else { pool.discard(s) }
                }
            }
            if s.loop === loop { detach() } else { s.loop.execute(detach) }
        }
    }

    func discardServer(_ s: ServerConnection) {
        s.broken = true
        if let pool { pool.discard(s) } else { s.close() }
    }

}
