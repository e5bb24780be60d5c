import NIOCore

/// Prepared statements of one client session in transaction pooling mode.
///
/// The client speaks to "one PostgreSQL" with its own statement names; the backends behind it change
/// between transactions and are shared with other clients. The rewriter keeps the client's view
/// (named statements and the unnamed statement, as PostgreSQL would) and maps every named
/// statement to a pool-wide `DOORMAN_<n>` whose content is identical, preparing it on whichever
/// backend lacks it.
///
/// Client → server (`clientMessage`):
/// - Parse of a name: forwarded as Parse of `DOORMAN_<n>`; when the backend already holds it, not
///   sent at all and a synthetic ParseComplete is put in the reply stream at its place.
/// - Parse of the unnamed statement: forwarded unchanged; remembered so that a later Bind/Describe
///   of `""` on another backend can replay it first.
/// - Bind / Describe('S') of a known name: statement name rewritten to `DOORMAN_<n>`; a Parse is
///   injected before it when the backend lacks the statement (its ParseComplete is dropped).
///   An unknown name is forwarded unchanged, so PostgreSQL itself answers the exact
///   `26000 prepared statement "x" does not exist` error and skips to Sync as usual. For `""` with no
///   unnamed statement, a `Close('S', "")` is injected first (CloseComplete dropped) so the backend
///   cannot use another client's unnamed statement and reports `unnamed prepared statement does not exist`.
/// - Close('S', name): the client's entry is removed and a synthetic CloseComplete is answered in
///   order; nothing is sent (the `DOORMAN_<n>` may be shared and stays on the backend).
///   Close('S', "") and Close('P', …) are forwarded unchanged.
/// - Everything else is copied unchanged (header included). Sync, Execute, Query and FunctionCall
///   are tracked to keep the reply stream in step.
/// - Statements evicted from the backend's set are closed with `Close('S', DOORMAN_<n>)` at the
///   start of the next batch (before the first extended message after a Sync); CloseComplete dropped.
///
/// Server → client (`serverMessage`): drops replies to injected messages, inserts synthetic replies
/// where they belong, and follows PostgreSQL's error rule — after an ErrorResponse to an extended
/// message the backend discards everything up to Sync, so expectations for those messages are
/// discarded (their synthetic replies never emitted, their optimistic state changes undone).
///
/// Not thread-safe; one per client session.
public struct PreparedStatementRewriter {
    public enum RewriteResult: Equatable {
        /// The message was handled; send `toServer`, write `toClientNow` to the client.
        case ok
        /// The message body is malformed; the caller should end the session (protocol violation).
        case malformed(String)
    }

    /// What `clientMessage(type:body:server:inject:toClientNow:)` did with a frontend message.
    public enum ClientVerdict: Equatable {
        /// The message goes to the backend unchanged, right after what was written to `inject`.
        case forward
        /// `inject` holds everything that goes to the backend in the message's place (maybe nothing).
        case replaced
        /// The message body is malformed; the caller should end the session (protocol violation).
        case malformed(String)
    }

    /// What `simpleQuery(_:)` recognised.
    public enum SimpleQueryAction: Equatable {
        /// Not a statement this rewriter cares about.
        case none
        /// `DEALLOCATE [PREPARE] name`; `existed` says whether the client had that statement.
        case deallocate(name: String, existed: Bool)
        /// `DEALLOCATE [PREPARE] ALL`.
        case deallocateAll
        /// `DISCARD ALL`.
        case discardAll
    }

    private let cache: PreparedStatementCache
    private let keyContext: String
    /// The client's named statements.
    private var named: [String: PreparedStatement] = [:] {
        didSet { lastBound = nil }
    }
    /// The statement the last Bind/Describe named, while `named` is unchanged (most clients bind
    /// the same statement transaction after transaction: a string compare instead of a hash).
    private var lastBound: (name: String, utf8: [UInt8], statement: PreparedStatement)?
    /// The client's unnamed statement: the complete Parse message, replayed byte for byte.
    private var unnamed: ByteBuffer?
    /// Whether the attached backend's unnamed statement is the client's `unnamed`.
    private var unnamedOnServer = false
    private var server: ServerStatements?
    /// One entry per message sent to the backend whose replies must be seen, plus synthetic replies, in order.
    /// No storage until the client's first extended message (every session has a rewriter); then
    /// as many slots as its deepest pipeline has needed.
    private var expected = ReplyQueue<Expectation>()
    /// The backend reported an error and is discarding messages until the Sync we have not sent yet.
    private var serverSkipping = false
    /// An Execute started COPY FROM STDIN: the backend ignores Sync/Flush until CopyDone/CopyFail.
    private var copyInActive = false
    /// Nothing but Sync/Query/FunctionCall sent since the last Sync: the backend is not skipping,
    /// so queued Closes can be sent.
    private var atBatchStart = true
    /// Number of Syncs sent so far: tells whether a pending Parse belongs to an earlier batch.
    private var batch = 0

    /// - Parameters:
    ///   - cache: the pool's statement cache.
    ///   - keyContext: extra text that must match for two Parses to share a server statement
    ///     (e.g. the client's search_path); empty by default.
    public init(cache: PreparedStatementCache, keyContext: String = "") {
        self.cache = cache
        self.keyContext = keyContext
    }

    /// True while replies from the backend must go through `serverMessage`. When false nothing the
    /// rewriter sent is awaiting a reply and the caller may relay backend bytes unchanged.
    /// DataRow, CopyData, NoticeResponse, NotificationResponse and ParameterStatus are never edited
    /// and never change the state, so a caller may relay those raw even while this is true.
    public var needsServerFiltering: Bool { !expected.isEmpty }

    /// `releaseIsUncertain` and `needsServerFiltering` for a caller holding the rewriter in an
    /// optional stored property: `mutating` makes `rewriter?.peek…()` run in place instead of on a copy.
    public mutating func peekReleaseIsUncertain() -> Bool { expected.isEmpty ? false : releaseIsUncertain }
    public mutating func peekNeedsServerFiltering() -> Bool { needsServerFiltering }

    /// Whether the server may hold statements or portals the cache does not know of: a Parse, Close
    /// or raw message whose reply has not arrived. Such a server is closed at release.
    public var releaseIsUncertain: Bool {
        // Nothing unanswered — every transaction's release in the common case: no walk.
        if expected.isEmpty { return false }
        return expected.contains { e in
            switch e.reply {
            case .relay(.parse), .relay(.raw), .dropParseComplete, .dropCloseComplete: return true
            case .relay(.bind), .relay(.describeStatement), .relay(.describePortal), .relay(.execute),
                 .relay(.close), .relay(.sync), .relay(.simpleQuery), .relay(.functionCall), .emit:
                return false
            }
        }
    }

    /// True between a CopyInResponse to an extended Execute and the client's CopyDone/CopyFail:
    /// PostgreSQL ignores Sync (and Flush) meanwhile, so a caller counting ReadyForQuery replies
    /// must not count a Sync sent now.
    public var isInCopyIn: Bool { copyInActive }

    /// Syncs already sent that PostgreSQL ignored because an extended Execute started
    /// COPY FROM STDIN (they get no ReadyForQuery). Returns the count since the last call.
    public mutating func takeIgnoredSyncs() -> Int {
        defer { ignoredSyncs = 0 }
        return ignoredSyncs
    }
    private var ignoredSyncs = 0

    /// The caller relayed the client's messages raw so far and switches to this rewriter
    /// mid-stream, possibly inside an extended-protocol batch:
    /// - `readyForQuery`: Query/FunctionCall/Sync messages sent whose ReadyForQuery is still to come;
    /// - `openMessages`: Parse/Bind/Describe/Close/Execute sent after the last of those, whose last
    ///   reply has not arrived yet (their replies are relayed unchanged, in order);
    /// - `serverSkipping`: the backend answered the open batch with an error and discards until Sync;
    /// - `openBatch`: extended messages were sent since the last Sync (no pending Closes before it);
    /// - `unnamed`: the client's unnamed statement, the whole Parse message (empty when it exists
    ///   but its bytes are unknown: it can then not be replayed on another backend);
    ///   `unnamedOnServer`: the attached backend holds it.
    public mutating func adoptRawStream(readyForQuery: Int, openMessages: Int, serverSkipping: Bool, openBatch: Bool,
                                        unnamed: ByteBuffer?, unnamedOnServer: Bool) {
        // Replies up to each outstanding ReadyForQuery pass through, then those of the open batch.
        for _ in 0..<max(0, readyForQuery) { expected.append(Expectation(.relay(.simpleQuery))) }
        for _ in 0..<max(0, openMessages) { expected.append(Expectation(.relay(.raw))) }
        self.serverSkipping = serverSkipping && expected.isEmpty
        atBatchStart = !openBatch
        batch += max(0, readyForQuery)
        self.unnamed = unnamed
        self.unnamedOnServer = unnamed != nil && unnamedOnServer
    }

    /// The client's statements as they travel in a session handover (`SessionHandover`): each
    /// named one by its client name, query and parameter types; the unnamed one as its Parse bytes.
    public var handoverStatements: (named: [(String, [UInt8], [UInt32])], unnamed: [UInt8]?) {
        (named.sorted { $0.key < $1.key }.map { ($0.key, $0.value.query, $0.value.parameterTypes) },
         unnamed.map { Array($0.readableBytesView) })
    }

    /// A handed-over client's statements: known to this rewriter and the pool's cache, on no server
    /// yet (each is prepared on a server when the client first uses it there).
    public mutating func adoptHandover(named statements: [(String, [UInt8], [UInt32])], unnamed: ByteBuffer?) {
        for (name, query, types) in statements {
            named[name] = cache.statement(query: query, parameterTypes: types, context: keyContext)
        }
        self.unnamed = unnamed
        unnamedOnServer = false
    }

    /// Number of named statements the client has.
    public var namedStatementCount: Int { named.count }

    /// The pool statement a client name maps to.
    public func statement(named name: String) -> PreparedStatement? { named[name] }

    /// Whether the client currently has an unnamed statement.
    public var hasUnnamedStatement: Bool { unnamed != nil }

    /// Bytes of query text this client's statements hold (SHOW POOLS_MEMORY).
    public var statementBytes: Int {
        named.values.reduce(0) { $0 + $1.query.count } + (unnamed?.readableBytes ?? 0)
    }

    /// Backend messages that end the reply to one Parse/Bind/Describe/Close/Execute (outside a
    /// simple Query, whose replies end at ReadyForQuery).
    @inline(__always)
    public static func isCompletion(_ type: UInt8) -> Bool {
        switch type {
        case Msg.parseComplete, Msg.bindComplete, Msg.closeComplete, Msg.noData, Msg.rowDescription,
             Msg.commandComplete, Msg.emptyQuery, Msg.portalSuspended:
            return true
        default:
            return false
        }
    }

    // MARK: - Client → server

    /// Handles one complete frontend message (`type` plus body without the length word) while the
    /// client is attached to `server`. What must go to the backend is appended to `toServer`;
    /// replies the client must see right now (synthetic ParseComplete/CloseComplete when nothing
    /// is in flight before them) are appended to `toClientNow`, which must be written to the
    /// client before any later backend bytes.
    public mutating func clientMessage(
        type: UInt8, body: ByteBuffer, server: ServerStatements,
        toServer: inout ByteBuffer, toClientNow: inout ByteBuffer
    ) -> RewriteResult {
        switch clientMessage(type: type, body: body, server: server, inject: &toServer, toClientNow: &toClientNow) {
        case .forward:
            Self.writeMessage(type, body, into: &toServer)
            return .ok
        case .replaced:
            return .ok
        case .malformed(let why):
            return .malformed(why)
        }
    }

    /// `clientMessage(type:body:server:toServer:toClientNow:)` without copying a message that passes
    /// unchanged (most do): what must precede the message, or replace it, is appended to `inject`,
    /// and `.forward` tells the caller to send the message's own bytes right after it.
    public mutating func clientMessage(
        type: UInt8, body: ByteBuffer, server: ServerStatements,
        inject toServer: inout ByteBuffer, toClientNow: inout ByteBuffer
    ) -> ClientVerdict {
        if self.server !== server {
            if self.server != nil { serverReleased() }
            self.server = server
        }
        if serverSkipping {
            // The backend discards everything up to Sync: nothing to rewrite or expect.
            if type == Msg.sync {
                serverSkipping = false
                expected.append(Expectation(.relay(.sync)))
                batch += 1
                atBatchStart = true
            }
            return .forward
        }
        if copyInActive {
            if type == Msg.copyDone || type == Msg.copyFail { copyInActive = false }
            return .forward
        }
        switch type {
        case Msg.parse, Msg.bind, Msg.describe, Msg.close, Msg.execute, Msg.sync:
            if atBatchStart { sendPendingCloses(server, into: &toServer) }
        default:
            break
        }

        let result: ClientVerdict
        switch type {
        case Msg.parse:
            result = parse(body, server, &toServer)
        case Msg.bind:
            result = bind(body, server, &toServer)
        case Msg.describe:
            result = describe(body, server, &toServer)
        case Msg.close:
            result = close(body, &toServer)
        case Msg.execute:
            expected.append(Expectation(.relay(.execute)))
            result = .forward
        case Msg.sync:
            expected.append(Expectation(.relay(.sync)))
            batch += 1
            result = .forward
        case Msg.query:
            // A simple Query drops the unnamed statement (exec_simple_query).
            expected.append(Expectation(.relay(.simpleQuery),
                                        onSkip: [.restoreUnnamed(unnamed, onServer: unnamedOnServer)]))
            unnamed = nil
            unnamedOnServer = false
            result = .forward
        case Msg.functionCall:
            expected.append(Expectation(.relay(.functionCall)))
            result = .forward
        default:
            result = .forward
        }
        switch type {
        case Msg.sync, Msg.query, Msg.functionCall: atBatchStart = true
        case Msg.parse, Msg.bind, Msg.describe, Msg.close, Msg.execute, Msg.flush: atBatchStart = false
        default: break
        }
        // Only a Parse or Close queues a synthetic reply; one at the head is answered now. (Every
        // call leaves a non-synthetic entry, or none, at the head: the others need not look.)
        if type == Msg.parse || type == Msg.close { emitReadySynthetics(into: &toClientNow) }
        return result
    }

    private mutating func sendPendingCloses(_ server: ServerStatements, into out: inout ByteBuffer) {
        guard server.pendingCloseCount > 0 else { return }
        for name in server.takePendingCloses() {
            Self.writeCloseStatement(Array(name.utf8), into: &out)
            expected.append(Expectation(.dropCloseComplete,
                                        onFailure: [.requeueClose(name)], onSkip: [.requeueClose(name)]))
        }
    }

    private mutating func parse(_ body: ByteBuffer, _ server: ServerStatements, _ out: inout ByteBuffer) -> ClientVerdict {
        var b = body
        guard let nameBytes = b.readCStringBytes(), let query = b.readCStringBytes(),
              let count: UInt16 = b.readInteger(), b.readableBytes >= 4 * Int(count)
        else { return .malformed("malformed Parse message") }
        if nameBytes.isEmpty {
            var whole = ByteBufferAllocator().buffer(capacity: body.readableBytes + 5)
            Self.writeMessage(Msg.parse, body, into: &whole)
            // A failed Parse of "" leaves no unnamed statement (PostgreSQL drops it first).
            expected.append(Expectation(.relay(.parse),
                                        onFailure: [.restoreUnnamed(nil, onServer: false)],
                                        onSkip: [.restoreUnnamed(unnamed, onServer: unnamedOnServer)]))
            unnamed = whole
            unnamedOnServer = true
            return .forward
        }
        var oids: [UInt32] = []
        oids.reserveCapacity(Int(count))
        for _ in 0..<count { oids.append(b.readInteger()!) }
        let name = String(decoding: nameBytes, as: UTF8.self)
        if let existing = named[name], expected.allPlain || !expected.contains(where: { $0.defines == name }) {
            // PostgreSQL refuses to redefine a name (42P05 "prepared statement \"name\" already
            // exists") and skips to Sync. Let the backend raise exactly that: make sure it holds the
            // existing `DOORMAN_<n>`, then Parse it again; the error's name is put back to the client's.
            if !server.lookup(existing.name) {
                server.insert(existing.name)
                out.writeImmutableBuffer(existing.parseMessage)
                expected.append(Expectation(.dropParseComplete,
                                            onFailure: [.forgetOnServer(existing.name)],
                                            onSkip: [.forgetOnServer(existing.name)]))
            }
            out.writeImmutableBuffer(existing.parseMessage)
            // (When the Parse that defined the name is still in flight, its outcome is unknown: the
            // new definition is sent instead and wins if that Parse fails.)
            var duplicate = Expectation(.relay(.parse))
            duplicate.errorRename = (from: existing.name, to: name)
            expected.append(duplicate)
            return .replaced
        }
        let stmt = cache.statement(query: query, parameterTypes: oids, context: keyContext)
        let restore = Effect.restoreNamed(name, named[name], ifCurrent: stmt)
        named[name] = stmt
        var e: Expectation
        if server.lookup(stmt.name) {
            if let pending = pendingParseBatch(stmt.name), pending < batch {
                e = reparse(stmt, reply: .relay(.parse), extraUndo: [restore], into: &out)
            } else {
                e = Expectation(.emit(Msg.parseComplete), onSkip: [restore])
            }
        } else {
            server.insert(stmt.name)
            e = sendParse(stmt, reply: .relay(.parse), extraUndo: [restore], into: &out)
        }
        e.defines = name
        expected.append(e)
        return .replaced
    }

    /// What a Bind/Describe('S') refers to, after making sure the backend has it.
    private enum StatementTarget {
        /// The statement's server-side name, NUL-terminated.
        case rewritten([UInt8])
        case unchanged
    }

    private mutating func prepareTarget(_ clientName: String, _ server: ServerStatements, _ out: inout ByteBuffer) -> StatementTarget {
        if clientName.isEmpty {
            if let unnamed, unnamedOnServer || unnamed.readableBytes > 0 {
                if !unnamedOnServer {
                    out.writeImmutableBuffer(unnamed)
                    unnamedOnServer = true
                    expected.append(Expectation(.dropParseComplete,
                                                onFailure: [.setUnnamedOnServer(false)],
                                                onSkip: [.setUnnamedOnServer(false)]))
                }
            } else {
                // Make sure the backend has no unnamed statement (another client's), so that it
                // reports "unnamed prepared statement does not exist" itself.
                Self.writeCloseStatement([], into: &out)
                expected.append(Expectation(.dropCloseComplete))
            }
            return .unchanged
        }
        let stmt: PreparedStatement
        if let last = lastBound, last.name == clientName {
            stmt = last.statement
        } else {
            guard let found = named[clientName] else { return .unchanged }
            stmt = found
            lastBound = (clientName, Array(clientName.utf8), found)
        }
        return ensureOnServer(stmt, server, &out)
    }

    /// The statement the last Bind/Describe named, when the NUL-terminated name at the start of
    /// `b` (`length` bytes before its NUL) is that name again: compared as bytes, no String made.
    @inline(__always)
    private func lastBoundStatement(namedAtStartOf b: ByteBuffer, length: Int) -> PreparedStatement? {
        guard let last = lastBound, length > 0, last.utf8.count == length else { return nil }
        let same = b.withUnsafeReadableBytes { p in
            last.utf8.withUnsafeBufferPointer { q in
                var i = 0
                while i < length && p[i] == q[i] { i += 1 }
                return i == length
            }
        }
        return same ? last.statement : nil
    }

    /// Makes sure the backend has `stmt` (or will have it before the message that names it).
    private mutating func ensureOnServer(_ stmt: PreparedStatement, _ server: ServerStatements,
                                         _ out: inout ByteBuffer) -> StatementTarget {
        if !server.lookup(stmt.name) {
            server.insert(stmt.name)
            expected.append(sendParse(stmt, reply: .dropParseComplete, extraUndo: [], into: &out))
        } else if let pending = pendingParseBatch(stmt.name), pending < batch {
            expected.append(reparse(stmt, reply: .dropParseComplete, extraUndo: [], into: &out))
        }
        return .rewritten(stmt.nameCString)
    }

    private mutating func bind(_ body: ByteBuffer, _ server: ServerStatements, _ out: inout ByteBuffer) -> ClientVerdict {
        var b = body
        guard let portalEnd = b.readableBytesView.firstIndex(of: 0) else { return .malformed("malformed Bind message") }
        var portal = b.readSlice(length: portalEnd + 1 - b.readerIndex)!  // with its terminator
        guard let nameEnd = b.readableBytesView.firstIndex(of: 0) else { return .malformed("malformed Bind message") }
        let target: StatementTarget
        if let stmt = lastBoundStatement(namedAtStartOf: b, length: nameEnd - b.readerIndex) {
            b.moveReaderIndex(to: nameEnd + 1)
            target = ensureOnServer(stmt, server, &out)
        } else {
            guard let stmt = b.readCString() else { return .malformed("malformed Bind message") }
            target = prepareTarget(stmt, server, &out)
        }
        let verdict: ClientVerdict
        switch target {
        case .unchanged:
            verdict = .forward
        case .rewritten(let name):
            // portal\0 name\0, then the parameter formats, values and result formats verbatim.
            out.writeMultipleIntegers(Msg.bind, Int32(4 + portal.readableBytes + name.count + b.readableBytes))
            out.writeBuffer(&portal)
            out.writeBytes(name)
            out.writeImmutableBuffer(b)
            verdict = .replaced
        }
        expected.append(Expectation(.relay(.bind)))
        return verdict
    }

    private mutating func describe(_ body: ByteBuffer, _ server: ServerStatements, _ out: inout ByteBuffer) -> ClientVerdict {
        var b = body
        guard let kind: UInt8 = b.readInteger(), let name = b.readCString() else {
            return .malformed("malformed Describe message")
        }
        guard kind == UInt8(ascii: "S") else {
            expected.append(Expectation(.relay(.describePortal)))
            return .forward
        }
        let verdict: ClientVerdict
        switch prepareTarget(name, server, &out) {
        case .unchanged:
            verdict = .forward
        case .rewritten(let newName):
            out.writeMultipleIntegers(Msg.describe, Int32(4 + 1 + newName.count), kind)
            out.writeBytes(newName)
            verdict = .replaced
        }
        expected.append(Expectation(.relay(.describeStatement)))
        return verdict
    }

    private mutating func close(_ body: ByteBuffer, _ out: inout ByteBuffer) -> ClientVerdict {
        var b = body
        guard let kind: UInt8 = b.readInteger(), let nameBytes = b.readCStringBytes() else {
            return .malformed("malformed Close message")
        }
        if kind == UInt8(ascii: "S"), !nameBytes.isEmpty {
            let name = String(decoding: nameBytes, as: UTF8.self)
            let previous = named.removeValue(forKey: name)
            expected.append(Expectation(.emit(Msg.closeComplete), onSkip: [.restoreNamed(name, previous, ifCurrent: nil)]))
            return .replaced
        }
        if kind == UInt8(ascii: "S") {
            let restore = Effect.restoreUnnamed(unnamed, onServer: unnamedOnServer)
            expected.append(Expectation(.relay(.close), onFailure: [restore], onSkip: [restore]))
            unnamed = nil
            unnamedOnServer = false
        } else {
            expected.append(Expectation(.relay(.close)))
        }
        return .forward
    }

    // MARK: - Server → client

    /// Handles one complete backend message; appends what the client must see to `toClient`.
    public mutating func serverMessage(type: UInt8, body: ByteBuffer, toClient: inout ByteBuffer) {
        var extra = ByteBuffer()
        if serverReply(type: type, body: body, extra: &extra) { Self.writeMessage(type, body, into: &toClient) }
        toClient.writeBuffer(&extra)
    }

    /// Handles one complete backend message without copying it: returns true when the client must
    /// see the message unchanged (the caller forwards its original bytes), false when it is
    /// dropped or replaced. Either way, what follows it in the client's stream (a replacement,
    /// synthetic replies) is appended to `extra`.
    public mutating func serverReply(type: UInt8, body: ByteBuffer, extra: inout ByteBuffer) -> Bool {
        if type == Msg.commandComplete {
            body.withUnsafeReadableBytes { noteCommandTag($0) }
        }
        guard let head = expected.first else { return true }
        var forward = true
        if type == Msg.errorResponse, let rename = head.errorRename {
            Self.writeMessage(type, Self.renamingStatement(in: body, from: rename.from, to: rename.to), into: &extra)
            forward = false
        }
        if !advance(past: type, head: head) { forward = false }
        if let next = expected.first, case .emit = next.reply { emitReadySynthetics(into: &extra) }
        return forward
    }

    /// Whether every reply still awaited goes to the client unchanged: no synthetic reply, dropped
    /// reply, renamed error or undo is pending. While true (and it stays true as replies arrive,
    /// until the client sends more), `plainReply` may stand in for `serverReply` and the caller
    /// relay the backend's bytes as they come.
    public var repliesArePlain: Bool { expected.allPlain }
    /// `repliesArePlain` in place, for a caller holding the rewriter in an optional stored property.
    public mutating func peekRepliesArePlain() -> Bool { repliesArePlain }

    /// `serverReply` for a backend message while `repliesArePlain` holds: the message is relayed
    /// unchanged and nothing follows it. `tag` is the start of a CommandComplete's tag (its first
    /// 15 bytes at least, when it has them) and `bodyLength` its whole length.
    @inline(__always)
    public mutating func plainReply(type: UInt8, tag: UnsafeRawBufferPointer, bodyLength: Int) {
        if type == Msg.commandComplete && bodyLength <= 16 && tag.count == bodyLength { noteCommandTag(tag) }
        guard let head = expected.first else { return }
        _ = advance(past: type, head: head)
    }

    /// The queue's bookkeeping for backend message `type` answering `head` (the first entry):
    /// false when the message answers an injected one and is not for the client.
    private mutating func advance(past type: UInt8, head: Expectation) -> Bool {
        var forward = true
        switch type {
        case Msg.errorResponse:
            if head.endsOnlyAtReadyForQuery { break }
            expected.removeFirst()
            skipUntilSync(after: head)
        case Msg.readyForQuery:
            // The entry this answers is the first Sync/Query/FunctionCall; anything before it was
            // not answered, i.e. skipped by the backend.
            if head.endsOnlyAtReadyForQuery {
                expected.removeFirst()
            } else {
                var skipped: [Expectation] = []
                while let e = expected.popFirst() {
                    if e.endsOnlyAtReadyForQuery { break }
                    skipped.append(e)
                }
                for e in skipped.reversed() { apply(e.onSkip) }
            }
        default:
            if type == Msg.copyInResponse, head.mayBeExecute {
                // The backend now ignores Sync and Flush until CopyDone/CopyFail.
                copyInActive = true
                ignoredSyncs += expected.removeAllAfterFirst(where: \.isSync)
            }
            if head.isCompleted(by: type) {
                expected.removeFirst()
                switch head.reply {
                case .dropParseComplete, .dropCloseComplete: forward = false
                case .relay, .emit: break
                }
            }
        }
        return forward
    }

    /// After an ErrorResponse to `failed`: the backend discards messages up to the next Sync.
    private mutating func skipUntilSync(after failed: Expectation) {
        var skipped: [Expectation] = []
        while let e = expected.first, !e.isSync {
            skipped.append(expected.removeFirst())
        }
        // Undo newest first so that each restore sees the state its message saw.
        for e in skipped.reversed() { apply(e.onSkip) }
        apply(failed.onFailure)
        if expected.isEmpty { serverSkipping = true }
    }

    private mutating func emitReadySynthetics(into out: inout ByteBuffer) {
        while let e = expected.first, case .emit(let type) = e.reply {
            expected.removeFirst()
            out.writeInteger(type)
            out.writeInteger(Int32(4))
        }
    }

    /// A CommandComplete's whole tag (with its NUL): after DISCARD ALL or DEALLOCATE ALL the backend
    /// holds no statements, and neither does the client.
    private mutating func noteCommandTag(_ tag: UnsafeRawBufferPointer) {
        let discard = tag.elementsEqual(Self.discardAllTag)
        guard discard || tag.elementsEqual(Self.deallocateAllTag) else { return }
        server?.removeAll()
        named.removeAll()
        if discard {
            unnamed = nil
            unnamedOnServer = false
        }
    }
    private static let discardAllTag = Array("DISCARD ALL\0".utf8)
    private static let deallocateAllTag = Array("DEALLOCATE ALL\0".utf8)

    /// The batch of the oldest Parse of `name` still awaiting its reply, if any.
    /// (A pending Parse is never a plain entry: with only plain ones, no walk.)
    private func pendingParseBatch(_ name: String) -> Int? {
        if expected.allPlain { return nil }
        return expected.first(where: { $0.parsesName == name })?.batch
    }

    /// Appends a Parse of `stmt` (its reply relayed or dropped) and records it as pending.
    private mutating func sendParse(_ stmt: PreparedStatement, reply: Expectation.Reply, extraUndo: [Effect],
                                    into out: inout ByteBuffer) -> Expectation {
        out.writeImmutableBuffer(stmt.parseMessage)
        var e = Expectation(reply, onFailure: [.forgetOnServer(stmt.name)] + extraUndo,
                            onSkip: [.forgetOnServer(stmt.name)] + extraUndo)
        e.parsesName = stmt.name
        e.batch = batch
        return e
    }

    /// The backend may or may not end up with `stmt` (its Parse from an earlier batch is unanswered
    /// and could still be skipped by an error): close and parse it again within this batch.
    private mutating func reparse(_ stmt: PreparedStatement, reply: Expectation.Reply, extraUndo: [Effect],
                                  into out: inout ByteBuffer) -> Expectation {
        Self.writeCloseStatement(Array(stmt.name.utf8), into: &out)
        expected.append(Expectation(.dropCloseComplete))
        return sendParse(stmt, reply: reply, extraUndo: extraUndo, into: &out)
    }

    private mutating func apply(_ effects: [Effect]) {
        for effect in effects {
            switch effect {
            case .forgetOnServer(let name):
                // A later Parse of the same name still in flight decides instead.
                if !expected.contains(where: { $0.parsesName == name }) { server?.remove(name) }
            case .restoreNamed(let name, let stmt, let current):
                // Only if no later message redefined the name meanwhile.
                if named[name] === current { named[name] = stmt }
            case .restoreUnnamed(let parse, let onServer):
                unnamed = parse
                unnamedOnServer = onServer
            case .setUnnamedOnServer(let value): unnamedOnServer = value
            case .requeueClose(let name): server?.requeueClose(name)
            }
        }
    }

    // MARK: - Server changes

    /// The backend is released or replaced (normally at ReadyForQuery idle). Forgets everything
    /// about it. Returns true when messages were still awaiting replies (the client left
    /// mid-batch): the backend's statement set is then uncertain and the caller should run
    /// `DEALLOCATE ALL` and call `ServerStatements.removeAll()` (or close the backend).
    @discardableResult
    public mutating func serverReleased() -> Bool {
        // (The empty check first: every transaction's release, and the getter is not inlined.)
        let uncertain = expected.isEmpty ? false : releaseIsUncertain
        if !expected.isEmpty { expected.removeAll() }
        serverSkipping = false
        copyInActive = false
        atBatchStart = true
        unnamedOnServer = false
        server = nil
        return uncertain
    }

    // MARK: - Simple-query hooks

    /// Recognises `DEALLOCATE [PREPARE] name|ALL` and `DISCARD ALL` and applies them to the client's
    /// statements. A caller answers DEALLOCATE locally (`writeLocalReply`) without a backend — the
    /// backend never had the client's names. DISCARD ALL goes to the backend as usual; its
    /// CommandComplete, seen by `serverMessage`, also clears the backend's set.
    public mutating func simpleQuery(_ sql: String) -> SimpleQueryAction {
        var text = Substring(sql)
        while let last = text.last, last == ";" || last.isWhitespace { text = text.dropLast() }
        let words = text.split(whereSeparator: { $0.isWhitespace })
        guard let first = words.first else { return .none }
        switch first.lowercased() {
        case "deallocate":
            var rest = words.dropFirst()
            if rest.count == 2, rest.first!.lowercased() == "prepare" { rest = rest.dropFirst() }
            guard rest.count == 1, let word = rest.first else { return .none }
            if word.lowercased() == "all" {
                named.removeAll()
                unnamed = nil
                unnamedOnServer = false
                return .deallocateAll
            }
            guard let name = Self.identifier(word) else { return .none }
            // Any simple query drops the unnamed statement.
            unnamed = nil
            unnamedOnServer = false
            return .deallocate(name: name, existed: named.removeValue(forKey: name) != nil)
        case "discard":
            guard words.count == 2, words[1].lowercased() == "all" else { return .none }
            named.removeAll()
            unnamed = nil
            unnamedOnServer = false
            return .discardAll
        default:
            return .none
        }
    }

    /// The reply PostgreSQL gives to a DEALLOCATE (CommandComplete or 26000 error, then
    /// ReadyForQuery with `transactionStatus`, turned to 'E' after an error inside a transaction).
    public static func writeLocalReply(_ action: SimpleQueryAction, transactionStatus: UInt8, into out: inout ByteBuffer) {
        var status = transactionStatus
        switch action {
        case .deallocate(_, true):
            BackendMessage.commandComplete("DEALLOCATE", into: &out)
        case .deallocate(let name, false):
            _ = name
            BackendMessage.errorResponse(severity: "ERROR", code: .invalidSQLStatementName,
                                         message: "prepared statement \"\(name)\" does not exist", into: &out)
            if status == UInt8(ascii: "T") { status = UInt8(ascii: "E") }
        case .deallocateAll:
            BackendMessage.commandComplete("DEALLOCATE ALL", into: &out)
        case .discardAll:
            BackendMessage.commandComplete("DISCARD ALL", into: &out)
        case .none:
            return
        }
        BackendMessage.readyForQuery(status, into: &out)
    }

    /// An SQL identifier: `"Quoted ""x"""` keeps case, a bare word folds to lower case.
    static func identifier(_ word: Substring) -> String? {
        if word.hasPrefix("\"") {
            guard word.count >= 2, word.hasSuffix("\"") else { return nil }
            return word.dropFirst().dropLast().replacingOccurrences(of: "\"\"", with: "\"")
        }
        return word.lowercased()
    }

    // MARK: - Encoding

    static func writeMessage(_ type: UInt8, _ body: ByteBuffer, into out: inout ByteBuffer) {
        out.writeInteger(type)
        out.writeInteger(Int32(4 + body.readableBytes))
        out.writeImmutableBuffer(body)
    }

    /// An ErrorResponse body whose message (`M`) field has `"from"` replaced by `"to"`.
    static func renamingStatement(in body: ByteBuffer, from: String, to: String) -> ByteBuffer {
        var out = ByteBufferAllocator().buffer(capacity: body.readableBytes + to.utf8.count)
        var b = body
        while let code: UInt8 = b.readInteger(), code != 0, let value = b.readCStringBytes() {
            out.writeInteger(code)
            if code == UInt8(ascii: "M") {
                let text = String(decoding: value, as: UTF8.self)
                    .replacingOccurrences(of: "\"\(from)\"", with: "\"\(to)\"")
                out.writeString(text)
            } else {
                out.writeBytes(value)
            }
            out.writeInteger(UInt8(0))
        }
        out.writeInteger(UInt8(0))
        return out
    }

    static func writeCloseStatement(_ name: [UInt8], into out: inout ByteBuffer) {
        out.writeInteger(Msg.close)
        out.writeInteger(Int32(4 + 1 + name.count + 1))
        out.writeInteger(UInt8(ascii: "S"))
        out.writeBytes(name)
        out.writeInteger(UInt8(0))
    }
}

// MARK: - Internals

/// Message type bytes used here.
fileprivate enum Msg {
    // frontend
    static let parse = UInt8(ascii: "P")
    static let bind = UInt8(ascii: "B")
    static let describe = UInt8(ascii: "D")
    static let close = UInt8(ascii: "C")
    static let execute = UInt8(ascii: "E")
    static let sync = UInt8(ascii: "S")
    static let flush = UInt8(ascii: "H")
    static let query = UInt8(ascii: "Q")
    static let functionCall = UInt8(ascii: "F")
    static let copyDone = UInt8(ascii: "c")
    static let copyFail = UInt8(ascii: "f")
    // backend
    static let parseComplete = UInt8(ascii: "1")
    static let bindComplete = UInt8(ascii: "2")
    static let closeComplete = UInt8(ascii: "3")
    static let rowDescription = UInt8(ascii: "T")
    static let noData = UInt8(ascii: "n")
    static let commandComplete = UInt8(ascii: "C")
    static let emptyQuery = UInt8(ascii: "I")
    static let portalSuspended = UInt8(ascii: "s")
    static let errorResponse = UInt8(ascii: "E")
    static let readyForQuery = UInt8(ascii: "Z")
    static let copyInResponse = UInt8(ascii: "G")
}

/// A state change made when a message was sent, to be undone if the backend did not execute it.
private enum Effect {
    case forgetOnServer(String)
    /// Set `named[name]` back to the statement, unless something other than `ifCurrent` is there now.
    case restoreNamed(String, PreparedStatement?, ifCurrent: PreparedStatement?)
    case restoreUnnamed(ByteBuffer?, onServer: Bool)
    case setUnnamedOnServer(Bool)
    case requeueClose(String)
}

private struct Expectation: ReplyQueueEntry {
    enum Kind {
        case parse, bind, describeStatement, describePortal, execute, close, sync, simpleQuery, functionCall
        /// A Parse/Bind/Describe/Close/Execute relayed before the rewriter took over: its last reply
        /// is whichever completion comes next.
        case raw
    }
    enum Reply {
        /// A client message: its replies go to the client.
        case relay(Kind)
        /// An injected Parse: its ParseComplete is dropped.
        case dropParseComplete
        /// An injected Close: its CloseComplete is dropped.
        case dropCloseComplete
        /// A synthetic reply (ParseComplete / CloseComplete) emitted when it reaches the head.
        case emit(UInt8)
    }

    var reply: Reply
    /// The batch (Sync count) a Parse of `parsesName` was sent in.
    var batch = 0
    /// Everything else, which few entries have: one optional reference, so that the entries of a
    /// plain Bind/Execute/Sync copy and destroy without retaining arrays and strings (the queue
    /// copies its head several times per backend message).
    private var detail: Detail?

    private final class Detail {
        let onFailure: [Effect]
        let onSkip: [Effect]
        let errorRename: (from: String, to: String)?
        let defines: String?
        let parsesName: String?

        init(onFailure: [Effect], onSkip: [Effect], errorRename: (from: String, to: String)?, defines: String?,
             parsesName: String?) {
            self.onFailure = onFailure
            self.onSkip = onSkip
            self.errorRename = errorRename
            self.defines = defines
            self.parsesName = parsesName
        }
    }

    init(_ reply: Reply, onFailure: [Effect] = [], onSkip: [Effect] = []) {
        self.reply = reply
        if !onFailure.isEmpty || !onSkip.isEmpty {
            detail = Detail(onFailure: onFailure, onSkip: onSkip, errorRename: nil, defines: nil, parsesName: nil)
        }
    }

    /// A copy of the detail with one field changed (the detail is shared between copies, so it is
    /// never mutated in place).
    private mutating func updateDetail(errorRename: (from: String, to: String)?? = nil, defines: String?? = nil,
                                       parsesName: String?? = nil) {
        detail = Detail(onFailure: onFailure, onSkip: onSkip, errorRename: errorRename ?? self.errorRename,
                        defines: defines ?? self.defines, parsesName: parsesName ?? self.parsesName)
    }

    /// Undo when the backend answered this message with an ErrorResponse.
    var onFailure: [Effect] { detail?.onFailure ?? [] }
    /// Undo when the backend discarded this message (an earlier error in the batch).
    var onSkip: [Effect] { detail?.onSkip ?? [] }
    /// An ErrorResponse to this message names statement `from`; the client knows it as `to`.
    var errorRename: (from: String, to: String)? {
        get { detail?.errorRename }
        set { updateDetail(errorRename: .some(newValue)) }
    }
    /// A named Parse (sent or answered synthetically): the client name it defines.
    var defines: String? {
        get { detail?.defines }
        set { updateDetail(defines: .some(newValue)) }
    }
    /// A Parse of `DOORMAN_<n>` sent to the backend (its batch is `batch`).
    var parsesName: String? {
        get { detail?.parsesName }
        set { updateDetail(parsesName: .some(newValue)) }
    }

    /// Answered by replies the client sees unchanged, with nothing to undo or rename.
    var isPlain: Bool {
        guard detail == nil else { return false }
        switch reply {
        case .relay: return true
        case .dropParseComplete, .dropCloseComplete, .emit: return false
        }
    }

    var isSync: Bool {
        if case .relay(.sync) = reply { return true }
        return false
    }

    /// An Execute (or a raw message that may be one): a CopyInResponse may answer it.
    var mayBeExecute: Bool {
        switch reply {
        case .relay(.execute), .relay(.raw): return true
        case .relay(.parse), .relay(.bind), .relay(.describeStatement), .relay(.describePortal), .relay(.close),
             .relay(.sync), .relay(.simpleQuery), .relay(.functionCall), .dropParseComplete, .dropCloseComplete, .emit:
            return false
        }
    }

    /// Sync, Query and FunctionCall end with ReadyForQuery, and an error inside them does not
    /// start skipping.
    var endsOnlyAtReadyForQuery: Bool {
        switch reply {
        case .relay(.sync), .relay(.simpleQuery), .relay(.functionCall): return true
        case .relay(.parse), .relay(.bind), .relay(.describeStatement), .relay(.describePortal), .relay(.execute),
             .relay(.close), .relay(.raw), .dropParseComplete, .dropCloseComplete, .emit:
            return false
        }
    }

    /// Whether backend message `type` is the last reply to this message (ErrorResponse and
    /// ReadyForQuery are handled separately).
    func isCompleted(by type: UInt8) -> Bool {
        switch reply {
        case .relay(.parse), .dropParseComplete: return type == Msg.parseComplete
        case .relay(.bind): return type == Msg.bindComplete
        case .relay(.close), .dropCloseComplete: return type == Msg.closeComplete
        case .relay(.describeStatement), .relay(.describePortal):
            return type == Msg.rowDescription || type == Msg.noData
        case .relay(.execute):
            return type == Msg.commandComplete || type == Msg.emptyQuery || type == Msg.portalSuspended
        case .relay(.raw):
            return PreparedStatementRewriter.isCompletion(type)
        case .relay(.sync), .relay(.simpleQuery), .relay(.functionCall), .emit: return false
        }
    }
}

extension ByteBuffer {
    /// Reads a NUL-terminated byte string (without the NUL); nil when there is no terminator.
    fileprivate mutating func readCStringBytes() -> [UInt8]? {
        guard let end = self.readableBytesView.firstIndex(of: 0) else { return nil }
        let bytes = self.readBytes(length: end - self.readerIndex)
        self.moveReaderIndex(forwardBy: 1)
        return bytes
    }
}
