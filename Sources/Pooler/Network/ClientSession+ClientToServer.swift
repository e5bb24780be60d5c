import NIOCore
import NIOPosix

private let Z = UInt8(ascii: "Z"), Q = UInt8(ascii: "Q"), S = UInt8(ascii: "S"), P = UInt8(ascii: "P")
private let B = UInt8(ascii: "B"), D = UInt8(ascii: "D"), E = UInt8(ascii: "E"), C = UInt8(ascii: "C")
private let H = UInt8(ascii: "H"), X = UInt8(ascii: "X"), F = UInt8(ascii: "F"), I = UInt8(ascii: "I")

/// Relay from the client to its server: header scanning on the raw path, whole messages through
/// the prepared-statement rewriter in message mode, and checkout.
extension ClientSession {
    // MARK: - Relay: client → server

    @inline(__always)
    func relayFromClient(_ buffer: ByteBuffer) {
        let justAttached = self.server == nil
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
        if rawUnnamedMissing > 0 { continueUnnamedParse(buffer) }
        var terminateAt = -1
        var queries = 0
        // Extended-protocol messages that only use the unnamed statement and portals this client
        // set up on this server go raw. The first message that needs the prepared-statement
        // rewriter (a named statement, or the unnamed one to be replayed on another server) switches
        // the session to message mode from that message on, even inside a pipeline: the rewriter is
        // told what is still unanswered (`adoptRawStream`). When the switch is impossible (COPY in
        // progress, a server message half received), named statements go raw but mark the server for
        // cleanup, and a Bind of an unnamed statement this client never parsed on this server is
        // refused rather than run against another client's statement.
        let canSwitch = rewriter != nil && serverScanner.atBoundary && !clientInCopy && !serverInCopy
        var switchAt = -1
        var refuse = false
        do {
            try clientScanner.scan(buffer, wantPrefix: { t in t == P ? 1 : (t == B || t == D || t == C ? 2 : 0) }) {
                type, length, prefix, start in
                if switchAt >= 0 || refuse { return }
                if rewriter != nil && (type == P || type == B || type == D || type == C) && needsRewriter(type, prefix) {
                    if canSwitch && start >= 0 {
                        switchAt = start
                        return
                    }
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
                    if prefix.count > 0 && prefix[0] == 0 {
                        unnamedParsed = true
                        if rewriter != nil { rememberUnnamedParse(buffer, start: start, bodyLength: length) }
                    }
                    if rewriter == nil && prefix.count > 0 && prefix[0] != 0 { dirty = true }
                    rawOpen += 1
                    queries += account(type)
                case Q, F:
                    unnamedParsed = false
                    rawUnnamed = nil
                    syncsSinceStatement = 0
                    rawOpen = 0
                    queries += account(type)
                case E:
                    syncsSinceStatement = 0
                    rawOpen += 1
                    queries += account(type)
                case S where clientInCopy:
                    break  // PostgreSQL ignores Sync during COPY FROM STDIN
                case S:
                    syncsSinceStatement += 1
                    rawOpen = 0
                    rawSkipping = false
                    queries += account(type)
                case UInt8(ascii: "c"), UInt8(ascii: "f"):
                    clientInCopy = false
                case C:
                    if prefix.count >= 2 && prefix[0] == UInt8(ascii: "S") && prefix[1] == 0 {
                        unnamedParsed = false
                        rawUnnamed = nil
                    }
                    rawOpen += 1
                    queries += account(type)
                case B, D:
                    rawOpen += 1
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
        if expectedReady > 0 && busySince == nil { busySince = justAttached ? attachedAt : .now() }
        if switchAt >= 0 {
            if switchAt > 0, let head = buffer.getSlice(at: buffer.readerIndex, length: switchAt) {
                queueForServer(server, head)
            }
            clientScanner = MessageScanner()
            rewriter!.adoptRawStream(readyForQuery: expectedReady, openMessages: rawOpen, serverSkipping: rawSkipping,
                                     openBatch: extendedOpen, unnamed: rawUnnamed, unnamedOnServer: unnamedParsed)
            rawUnnamed = nil
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

    /// Keeps a copy of a raw Parse of the unnamed statement (header rebuilt, body copied from this
    /// read and, when it continues, from the next ones) so the rewriter can replay it on another
    /// server if the session switches to it.
    @inline(__always)
    func rememberUnnamedParse(_ buffer: ByteBuffer, start: Int, bodyLength: Int) {
        let total = 5 + bodyLength
        if rawUnnamed == nil || rawUnnamed!.capacity < total {
            rawUnnamed = context.channel.allocator.buffer(capacity: max(total, 64))
        }
        rawUnnamed!.clear()
        rawUnnamed!.writeInteger(P)
        rawUnnamed!.writeInteger(Int32(4 + bodyLength))
        let bodyStart = start + 5  // never negative: the callback comes once the first body byte is here
        let here = max(0, min(bodyLength, buffer.readableBytes - bodyStart))
        if here > 0 {
            buffer.withUnsafeReadableBytes { p in
                _ = rawUnnamed!.writeBytes(UnsafeRawBufferPointer(rebasing: p[bodyStart..<(bodyStart + here)]))
            }
        }
        rawUnnamedMissing = bodyLength - here
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

    /// Whether a Parse/Bind/Describe/Close (with the first body bytes in `p`) needs the prepared
    /// statement rewriter: anything naming a statement, or an unnamed statement this client has not
    /// parsed on the current server.
    @inline(__always)
    func needsRewriter(_ type: UInt8, _ p: UnsafeRawBufferPointer) -> Bool {
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
    func account(_ type: UInt8) -> Int {
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
        case H:
            extendedOpen = true
            usedFlush = true
            return 0
        case P, B, D, C:
            extendedOpen = true
            return 0
        default:
            return 0
        }
    }

    /// Queues bytes for the server; they are flushed at the end of the read batch.
    @inline(__always)
    func queueForServer(_ server: ServerConnection, _ buffer: ByteBuffer) {
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
    func relayMessagesFromClient(_ buffer: ByteBuffer, server: ServerConnection) {
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
                    case .deallocate(_, false) where txStatus != I:
                        // Inside a transaction the error must also fail the backend's transaction:
                        // let PostgreSQL raise it (it does not know the name either).
                        break
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
            output.writeAndFlush(toClient)
        }
        if toServer.readableBytes > 0 { queueForServer(server, toServer) }
        if expectedReady <= 0 && !extendedOpen && !rewriter!.needsServerFiltering && input.readableBytes == 0 {
            // Nothing reached the server (a locally answered DEALLOCATE, or Terminate): let it go.
            // (Not while a message is half received: its rest follows and releasing drops it.)
            if terminating { return close() }
            if txStatus == I, let s = self.server {
                self.server = nil
                releaseToPool(s, rollback: false)
            }
        }
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
        if buffer.readableBytes == 5, buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) == X { return nil }
        let now = NIODeadline.now()
        guard let s = pool.tryAcquireIdle(on: loop, now: now) else { return nil }
        attach(s, now: now)
        return s
    }

    func acquireServer() {
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

    func attach(_ s: ServerConnection, now: NIODeadline = .now()) {
        server = s
        serverSameLoop = s.loop === loop
        serverScanner = MessageScanner()
        attachedAt = now
        messageMode = rewriter != nil && extendedClient
        serverInCopy = false
        unnamedParsed = false
        rawOpen = 0
        rawSkipping = false
        syncsSinceStatement = 0
        clientInCopy = false
        if serverSameLoop {
            s.attach(to: self)
        } else {
            s.loop.execute { s.attach(to: self) }
        }
    }

}
