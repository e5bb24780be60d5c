import NIOCore
import NIOPosix

private let Z = UInt8(ascii: "Z"), Q = UInt8(ascii: "Q"), S = UInt8(ascii: "S"), P = UInt8(ascii: "P")
private let B = UInt8(ascii: "B"), D = UInt8(ascii: "D"), E = UInt8(ascii: "E"), C = UInt8(ascii: "C")
private let H = UInt8(ascii: "H"), X = UInt8(ascii: "X"), F = UInt8(ascii: "F"), I = UInt8(ascii: "I")

/// Relay from the server to its client, transaction boundaries, backpressure, and checkin.
extension ClientSession {
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
                case UInt8(ascii: "G"):
                    serverInCopy = true
                    // COPY FROM STDIN started: Syncs the client sent after the statement are ignored
                    // by PostgreSQL (no ReadyForQuery will answer them), and so are later ones until
                    // CopyDone/CopyFail.
                    expectedReady = max(0, expectedReady - syncsSinceStatement)
                    syncsSinceStatement = 0
                    clientInCopy = true
                case UInt8(ascii: "H"), UInt8(ascii: "W"):
                    serverInCopy = true
                case E:
                    errorCount += 1
                    serverInCopy = false
                    // After the replies to everything synced, an error answers the open batch:
                    // the backend now skips to Sync.
                    if expectedReady == 0 && rawOpen > 0 {
                        rawOpen = 0
                        rawSkipping = true
                    }
                default:
                    break
                }
                if rawOpen > 0 && expectedReady == 0 && PreparedStatementRewriter.isCompletion(type) { rawOpen -= 1 }
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
        output.write(buffer)
        if expectedReady == 0 {
            // One clock read for the end of the query, the transaction and the checkin.
            let now = NIODeadline.now()
            serverWentQuiet(now: now)
            if boundary { transactionBoundary(now: now) }
        }
    }

    /// Message mode: whole backend messages go through the rewriter (synthetic ParseComplete,
    /// dropped replies to injected messages).
    func serverMessages(_ buffer: ByteBuffer) {
        var input = Self.joinPartial(&serverAcc, buffer)
        // Messages the rewriter leaves unchanged are forwarded as runs of the input (no copy).
        var runs = ForwardRuns(input)
        var boundary = false
        var sawReady = false
        do {
            while true {
                let start = input.readerIndex
                guard let (type, body) = try MessageFramer.next(&input, maxLength: serverScanner.maxMessageLength) else { break }
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
                // (Consumed bytes still count against the capacity until cleared.)
                if serverExtra.writerIndex > 0 { serverExtra.clear() }
                let forward = rewriter!.serverReply(type: type, body: body, extra: &serverExtra)
                let ignored = rewriter!.takeIgnoredSyncs()
                if ignored > 0 { expectedReady = max(0, expectedReady - ignored) }
                runs.message(at: start, end: input.readerIndex, keep: forward, then: &serverExtra)
            }
        } catch {
            if let s = server { discardServer(s) }
            server = nil
            close()
            return
        }
        let toClient = runs.finish(at: input.readerIndex)
        if input.readableBytes > 0 { serverAcc = input }
        if let pool { pool.stats.bytesSent.wrappingIncrement(by: toClient.readableBytes, ordering: .relaxed) }
        if toClient.readableBytes > 0 { output.write(toClient) }
        let quiet = expectedReady == 0
        let atBoundary = (boundary || (quiet && txStatus == I && sawReady)) && !rewriter!.needsServerFiltering
        if quiet || atBoundary {
            // One clock read for the end of the query, the transaction and the checkin.
            let now = NIODeadline.now()
            if quiet { serverWentQuiet(now: now) }
            if atBoundary { transactionBoundary(now: now) }
        }
    }

    /// Everything sent has been answered: the busy interval ends (SHOW STATS total_query_time).
    @inline(__always)
    func serverWentQuiet(now: NIODeadline) {
        guard let since = busySince, let pool else { return }
        busySince = nil
        let micros = Int((now - since).nanoseconds / 1000)
        pool.stats.queryTimeMicros.wrappingIncrement(by: micros, ordering: .relaxed)
        pool.stats.queryHistogram.record(micros: micros)
    }

    /// ReadyForQuery idle with nothing outstanding: count the transaction and, in transaction mode,
    /// give the server back.
    func transactionBoundary(now: NIODeadline) {
        transactionCount += 1
        server?.transactionCount &+= 1
        if let pool {
            pool.stats.xactCount.wrappingIncrement(ordering: .relaxed)
            let micros = Int((now - attachedAt).nanoseconds / 1000)
            pool.stats.xactTimeMicros.wrappingIncrement(by: micros, ordering: .relaxed)
            pool.stats.xactHistogram.record(micros: micros)
        }
        let clientQuiet = messageMode ? (clientAcc?.readableBytes ?? 0) == 0 : clientScanner.atBoundary
        if !extendedOpen && clientQuiet && (!sessionMode || terminating) {
            output.flush()
            if let s = server {
                server = nil
                releaseToPool(s, rollback: false, now: now)
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
        guard context != nil else { return }  // (a cross-loop call after the client left)
        output.flush()
        // Backpressure: a client that does not read must not make us buffer a whole result set.
        // (Only NIO's queue can make the channel unwritable: nothing to ask after direct writes.)
        if output.holdsQueuedBytes, !context.channel.isWritable, let s = server, !s.readingPaused {
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

    func releaseToPool(_ s: ServerConnection, rollback: Bool, now: NIODeadline = .now()) {
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
            if s.detachClean() { pool.release(s, now: now) } else { pool.discard(s) }
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

    func discardServer(_ s: ServerConnection) {
        s.broken = true
        if let pool { pool.discard(s) } else { s.close() }
    }

}
