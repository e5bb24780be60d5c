/// The relay's view of one client session: where each stream stands (replies still due, open
/// extended-protocol batch, COPY, transaction status), what the client left in the server's
/// session, and — in one function, `releaseVerdict` — whether the server it uses may go back to the
/// pool now, and how it is cleaned first.
///
/// Pure: no channel, event loop, clock or logger. The handler (`ClientSession`) feeds it the message
/// headers its scanners find (type byte and the first body bytes) and runs what it answers. Stored
/// inline in the handler; every event is a small mutating method that the optimiser inlines into the
/// scanner's callback.
struct ClientSessionStateMachine {
    /// How client bytes reach the server: forwarded as read (raw), or message by message through the
    /// prepared-statement rewriter (rewriting; transaction mode once the client named a statement).
    enum RelayMode: Equatable {
        case raw
        case rewriting
    }

    /// Session mode keeps the server until the client leaves; transaction mode releases it at each
    /// idle ReadyForQuery.
    let sessionMode: Bool

    var mode: RelayMode = .raw
    /// The client has used named statements: each new server is relayed through the rewriter.
    var extendedClient = false

    /// ReadyForQuery replies still due for what was sent (Query, FunctionCall, Sync).
    private(set) var expectedReady = 0
    /// An extended-protocol batch is open (Parse/Bind/Describe/Execute/Close/Flush since the last Sync).
    private(set) var extendedOpen = false
    private(set) var transactionStatus: TransactionStatus = .idle
    /// The client left state in the server's session (SET, PREPARE, LISTEN, DECLARE, temp tables,
    /// named statements sent raw): the server is cleaned before its next user.
    private(set) var leftSessionState: SessionState = []
    /// The server is in COPY IN/OUT: such a server can only be closed if its client goes away.
    private(set) var serverInCopy = false
    /// The client streams COPY data (PostgreSQL ignores Sync meanwhile).
    private(set) var clientInCopy = false
    /// Raw path: Syncs sent since the last Query/Execute (a COPY FROM STDIN started by them makes
    /// PostgreSQL ignore them).
    private(set) var syncsSinceStatement = 0
    /// Raw path: extended messages sent since the last Sync/Query whose reply has not arrived, and
    /// whether the backend answered that open batch with an error (it now skips to Sync). Handed to
    /// the rewriter if the session switches to it mid-stream.
    private(set) var openMessages = 0
    private(set) var backendSkipping = false
    /// Raw path: the client parsed the unnamed statement on the current server.
    private(set) var unnamedParsed = false
    /// The client has sent Flush (asynchronous extended protocol), for SHOW POOLS_MEMORY.
    private(set) var usedFlush = false
    /// The client sent Terminate: close once the server is released.
    private(set) var terminating = false
    /// Graceful shutdown: close at the next transaction boundary.
    var closeAtBoundary = false
    /// The pooler sent the server a query of its own (the client's parameters) ahead of the
    /// client's bytes: its replies, up to its ReadyForQuery, are not the client's.
    private(set) var setupPending = false

    // Counters for SHOW CLIENTS.
    private(set) var transactionCount = 0
    private(set) var queryCount = 0
    private(set) var errorCount = 0

    init(sessionMode: Bool) {
        self.sessionMode = sessionMode
    }

    // MARK: - Server attached and released

    /// A server was checked out for this client. `rewriterAvailable`: prepared statements are
    /// remapped in this pool.
    mutating func serverAttached(rewriterAvailable: Bool) {
        mode = rewriterAvailable && extendedClient ? .rewriting : .raw
        serverInCopy = false
        unnamedParsed = false
        openMessages = 0
        backendSkipping = false
        syncsSinceStatement = 0
        clientInCopy = false
    }

    /// SETs the client ran of parameters it set at startup (PostgreSQL does not report them), held
    /// until the transaction that ran them ends well: they then become its own values and follow
    /// it to its next server. Dropped if an error comes first.
    ///
    /// The machine counts them (it stays plain data: the handler copies nothing when it asks it);
    /// the handler keeps the names and values.
    private(set) var pendingSets = 0
    private var pendingSetsFailed = false
    /// A ReadyForQuery outside a transaction block came after the pending SETs.
    private var pendingSetsSettled = false

    /// The client's statement sets one of its startup parameters.
    mutating func clientSet() {
        pendingSets += 1
        pendingSetsSettled = false
    }

    /// What became of the pending SETs: nil while their transaction goes on, else whether they took
    /// effect (their transaction ended at an idle ReadyForQuery without error). Call after a
    /// ReadyForQuery; the pending count is cleared once settled.
    mutating func settlePendingSets() -> Bool? {
        guard pendingSets > 0, pendingSetsSettled else { return nil }
        let failed = pendingSetsFailed || transactionStatus == .failedTransaction
        pendingSets = 0
        pendingSetsFailed = false
        pendingSetsSettled = false
        return !failed
    }

    /// The server may be executing something of the client's (replies due, an open batch, COPY).
    var statementMayBeRunning: Bool { clientReadyDue > 0 || extendedOpen || serverInCopy || clientInCopy }

    /// ReadyForQuery replies due for what the client sent (the pooler's own query excluded): what
    /// the rewriter is told when the session switches to it mid-stream (it never sees the
    /// pooler's query or its replies).
    var clientReadyDue: Int { expectedReady - (setupPending ? 1 : 0) }

    /// The pooler queued its own parameter query ahead of the client's bytes.
    mutating func setupSent() {
        setupPending = true
        expectedReady += 1
    }

    /// The server left this client (released, discarded or closed): nothing is due from it any more.
    mutating func serverDetached() {
        setupPending = false
        mode = .raw
        expectedReady = 0
        transactionStatus = .idle
        leftSessionState = []
    }

    /// The client sent Terminate (also a lone one with no server).
    mutating func clientTerminated() {
        terminating = true
    }

    // MARK: - Frontend messages

    /// What to do with one frontend message on the raw path.
    enum RawFrontendAction: Equatable {
        case forward
        /// Forward it, and keep a copy of this Parse of the unnamed statement (for a later switch
        /// to the rewriter, which replays it on another server).
        case forwardRememberingUnnamedParse
        /// Forward it; the unnamed statement is gone (simple Query, Close of it).
        case forwardForgettingUnnamedParse
        /// Terminate: for the pooler, never for a shared server. Nothing from here is forwarded.
        case terminate
        /// This message needs the rewriter: switch to it from this message on.
        case switchToRewriter
        /// Bind/Describe of an unnamed statement this client never parsed on this server, when the
        /// switch is impossible: refused rather than run against another client's statement.
        case refuseUnknownUnnamed
        /// A message PostgreSQL does not accept in an established session (an unknown type, or a
        /// password message outside authentication). PostgreSQL would answer FATAL 08P01 and close —
        /// possibly after its server went to another client — so the pooler answers it itself and
        /// the message never reaches a server.
        case protocolViolation
    }

    /// The frontend message types PostgreSQL accepts once a session is established (its
    /// PostgresMain loop); nil for any other byte. CopyData/CopyDone/CopyFail outside COPY are
    /// accepted and ignored by PostgreSQL, so they pass.
    @inline(__always)
    static func acceptedInSession(_ type: UInt8) -> FrontendMessageID? {
        switch type {  // (byte comparisons: the enum's init(rawValue:) is an out-of-line call)
        case FrontendMessageID.query.rawValue: return .query
        case FrontendMessageID.parse.rawValue: return .parse
        case FrontendMessageID.bind.rawValue: return .bind
        case FrontendMessageID.execute.rawValue: return .execute
        case FrontendMessageID.sync.rawValue: return .sync
        case FrontendMessageID.describe.rawValue: return .describe
        case FrontendMessageID.close.rawValue: return .close
        case FrontendMessageID.flush.rawValue: return .flush
        case FrontendMessageID.terminate.rawValue: return .terminate
        case FrontendMessageID.copyData.rawValue: return .copyData
        case FrontendMessageID.copyDone.rawValue: return .copyDone
        case FrontendMessageID.copyFail.rawValue: return .copyFail
        case FrontendMessageID.functionCall.rawValue: return .functionCall
        default: return nil  // an unknown type, or PasswordMessage outside authentication
        }
    }

    /// Whether the raw path may switch to the rewriter in this read: only with a rewriter, at a
    /// backend message boundary and outside COPY.
    func canSwitchToRewriter(rewriterAvailable: Bool, serverAtBoundary: Bool) -> Bool {
        rewriterAvailable && serverAtBoundary && !clientInCopy && !serverInCopy
    }

    /// One frontend message seen by the raw relay (`prefix`: its first body bytes, as asked by
    /// `rawPrefixLength`). `canSwitch`: the switch to the rewriter is possible at this message.
    @inline(__always)
    mutating func rawFrontend(_ type: UInt8, prefix p: UnsafeRawBufferPointer, rewriterAvailable: Bool,
                              canSwitch: Bool) -> RawFrontendAction {
        guard let id = Self.acceptedInSession(type) else { return .protocolViolation }
        if rewriterAvailable, Self.namesStatement(id), needsRewriter(id, p) {
            if canSwitch { return .switchToRewriter }
            if id != .parse && p.count >= 2 && p[1] == 0 && (id == .bind ? p[0] == 0 : true) {
                return .refuseUnknownUnnamed
            }
            leftSessionState.insert(.statements)  // a client-named statement reached the server
        }
        var action = RawFrontendAction.forward
        switch id {
        case .terminate:
            terminating = true
            return .terminate
        case .parse:
            if p.count > 0 && p[0] == 0 {
                unnamedParsed = true
                if rewriterAvailable { action = .forwardRememberingUnnamedParse }
            }
            if !rewriterAvailable && p.count > 0 && p[0] != 0 { leftSessionState.insert(.statements) }
            openMessages += 1
        case .query, .functionCall:
            unnamedParsed = false
            action = .forwardForgettingUnnamedParse
            syncsSinceStatement = 0
            openMessages = 0
        case .execute:
            syncsSinceStatement = 0
            openMessages += 1
        case .sync:
            if clientInCopy { return .forward }  // PostgreSQL ignores Sync during COPY FROM STDIN
            syncsSinceStatement += 1
            openMessages = 0
            backendSkipping = false
        case .copyDone, .copyFail:
            clientInCopy = false
        case .close:
            if p.count >= 2 && p[0] == UInt8(ascii: "S") && p[1] == 0 {
                unnamedParsed = false
                action = .forwardForgettingUnnamedParse
            }
            openMessages += 1
        case .bind, .describe:
            openMessages += 1
        case .copyData, .flush:
            break
        case .password:
            return .protocolViolation  // (never: acceptedInSession refuses it)
        }
        count(type)
        return action
    }

    /// How many body bytes the raw relay needs to see of a frontend message: the statement/portal
    /// names of Parse, Bind, Describe and Close.
    @inline(__always)
    static func rawPrefixLength(_ type: UInt8) -> Int {
        // (Byte comparisons: the hot path's first question about every message.)
        switch type {
        case FrontendMessageID.parse.rawValue, FrontendMessageID.query.rawValue:
            return 128  // names, and the start of the text (`SET ...`)
        case FrontendMessageID.bind.rawValue, FrontendMessageID.describe.rawValue, FrontendMessageID.close.rawValue:
            return 2
        default:
            return 0
        }
    }

    /// Bookkeeping for a frontend message on its way to the server (both paths): how many
    /// ReadyForQuery replies are due, whether an extended batch is open, the query count.
    @inline(__always)
    mutating func count(_ type: UInt8) {
        switch type {  // (byte comparisons: once per message on the hot path)
        case FrontendMessageID.query.rawValue, FrontendMessageID.functionCall.rawValue:
            expectedReady += 1
            queryCount &+= 1
        case FrontendMessageID.sync.rawValue:
            expectedReady += 1
            extendedOpen = false
        case FrontendMessageID.execute.rawValue:
            extendedOpen = true
            queryCount &+= 1
        case FrontendMessageID.flush.rawValue:
            extendedOpen = true
            usedFlush = true
        case FrontendMessageID.parse.rawValue, FrontendMessageID.bind.rawValue, FrontendMessageID.describe.rawValue,
             FrontendMessageID.close.rawValue:
            extendedOpen = true
        default:
            break
        }
    }

    @inline(__always)
    private static func namesStatement(_ id: FrontendMessageID) -> Bool {
        switch id {
        case .parse, .bind, .describe, .close: return true
        default: return false
        }
    }

    /// Whether a Parse/Bind/Describe/Close (first body bytes in `p`) needs the rewriter: anything
    /// naming a statement, or an unnamed statement this client has not parsed on the current server.
    @inline(__always)
    private func needsRewriter(_ id: FrontendMessageID, _ p: UnsafeRawBufferPointer) -> Bool {
        switch id {
        case .parse:
            return p.count < 1 || p[0] != 0
        case .bind:  // portal\0 statement\0 ...: only an unnamed portal lets us see the statement name
            guard p.count >= 2, p[0] == 0 else { return true }
            return p[1] != 0 || !unnamedParsed
        case .describe, .close:  // 'S'|'P', name\0
            guard p.count >= 2 else { return true }
            if p[0] == UInt8(ascii: "P") { return false }
            if p[1] == 0 { return id == .describe ? !unnamedParsed : false }
            return true
        default:
            return false
        }
    }

    // MARK: - Backend messages

    /// What a backend message means for the handler beyond the bookkeeping.
    enum BackendEffect: Equatable {
        case none
        /// ReadyForQuery idle with nothing else due: a transaction boundary.
        case transactionBoundary
        /// DISCARD ALL / DEALLOCATE ALL completed: the backend holds no prepared statements.
        case statementsDropped
        /// ParameterStatus: a parameter of the session changed (the client's own SET, or a reset).
        case parameterStatus
        /// A reply to the pooler's own parameter query: not for the client.
        case setupReply
        /// The pooler's parameter query failed (the server keeps its values; logged).
        case setupFailed
        /// The ReadyForQuery ending the pooler's parameter query: the client's replies follow.
        case setupDone
    }

    /// A backend message while the pooler's parameter query is answered: consumed, without the
    /// client's bookkeeping (its `SET`-like replies must not mark the server dirty).
    @inline(__always)
    mutating func setupBackend(_ type: UInt8) -> BackendEffect {
        guard type == BackendMessageID.readyForQuery.rawValue else {
            switch BackendMessageID(rawValue: type) {
            case .parameterStatus: return .parameterStatus
            case .errorResponse: return .setupFailed
            default: return .setupReply
            }
        }
        setupPending = false
        if expectedReady > 0 { expectedReady -= 1 }
        return .setupDone
    }

    /// ReadyForQuery with `status`; true when it ends the transaction with nothing else due.
    @inline(__always)
    mutating func readyForQuery(status: UInt8?) -> Bool {
        if expectedReady > 0 { expectedReady -= 1 }
        transactionStatus = status.flatMap(TransactionStatus.init(rawValue:)) ?? .idle
        if pendingSets > 0 && transactionStatus != .inTransaction { pendingSetsSettled = true }
        return expectedReady == 0 && transactionStatus == .idle
    }

    /// CommandComplete with the first bytes of its tag.
    @inline(__always)
    mutating func commandComplete(tag: UnsafeRawBufferPointer) {
        serverInCopy = false
        leftSessionState.formUnion(CommandTag.sessionState(tag))
    }

    @inline(__always)
    mutating func copyResponse() {
        serverInCopy = true
    }

    @inline(__always)
    mutating func errorResponse() {
        errorCount &+= 1
        serverInCopy = false
        if pendingSets > 0 { pendingSetsFailed = true }
    }

    /// One backend message seen by the raw relay (`prefix`: the first bytes asked for by
    /// `backendPrefixLength`).
    @inline(__always)
    mutating func rawBackend(_ type: UInt8, prefix: UnsafeRawBufferPointer) -> BackendEffect {
        if setupPending { return setupBackend(type) }
        var effect = BackendEffect.none
        switch Self.relayedBackend(type) {
        case .readyForQuery:
            if readyForQuery(status: prefix.count > 0 ? prefix[0] : nil) { effect = .transactionBoundary }
        case .commandComplete:
            commandComplete(tag: prefix)
            if CommandTag.dropsAllStatements(prefix) { effect = .statementsDropped }
        case .copyInResponse:
            copyResponse()
            // COPY FROM STDIN started: Syncs the client sent after the statement are ignored by
            // PostgreSQL (no ReadyForQuery will answer them), and so are later ones until
            // CopyDone/CopyFail.
            expectedReady = max(0, expectedReady - syncsSinceStatement)
            syncsSinceStatement = 0
            clientInCopy = true
        case .copyOutResponse, .copyBothResponse:
            copyResponse()
        case .parameterStatus:
            effect = .parameterStatus
        case .errorResponse:
            errorResponse()
            // After the replies to everything synced, an error answers the open batch: the backend
            // now skips to Sync.
            if expectedReady == 0 && openMessages > 0 {
                openMessages = 0
                backendSkipping = true
            }
        default:
            break
        }
        if openMessages > 0 && expectedReady == 0 && PreparedStatementRewriter.isCompletion(type) { openMessages -= 1 }
        return effect
    }

    /// The backend message types the relay acts on, by byte comparison (the enum's
    /// init(rawValue:) is an out-of-line call); nil for the others (DataRow, RowDescription, …).
    @inline(__always)
    static func relayedBackend(_ type: UInt8) -> BackendMessageID? {
        switch type {
        case BackendMessageID.dataRow.rawValue: return nil  // the common case first
        case BackendMessageID.readyForQuery.rawValue: return .readyForQuery
        case BackendMessageID.commandComplete.rawValue: return .commandComplete
        case BackendMessageID.copyInResponse.rawValue: return .copyInResponse
        case BackendMessageID.copyOutResponse.rawValue: return .copyOutResponse
        case BackendMessageID.copyBothResponse.rawValue: return .copyBothResponse
        case BackendMessageID.parameterStatus.rawValue: return .parameterStatus
        case BackendMessageID.errorResponse.rawValue: return .errorResponse
        default: return nil
        }
    }

    /// How many body bytes the relay needs to see of a backend message.
    @inline(__always)
    static func backendPrefixLength(_ type: UInt8) -> Int {
        switch type {
        case BackendMessageID.readyForQuery.rawValue: return 1
        case BackendMessageID.commandComplete.rawValue: return 15
        case BackendMessageID.parameterStatus.rawValue: return 256  // name and value (longer ones are left untracked)
        default: return 0
        }
    }

    /// The rewriter found that PostgreSQL ignored `count` Syncs (COPY FROM STDIN started by an
    /// extended Execute): no ReadyForQuery answers them.
    mutating func syncsIgnored(_ count: Int) {
        if count > 0 { expectedReady = max(0, expectedReady - count) }
    }

    /// The session switched to the rewriter mid-stream (which took over `openMessages` etc.).
    mutating func switchedToRewriter() {
        extendedClient = true
        mode = .rewriting
    }

    /// A transaction ended at an idle ReadyForQuery.
    mutating func transactionEnded() {
        transactionCount &+= 1
    }

    // MARK: - The release decision

    /// Where the relay asks whether its server can go back.
    enum ReleasePoint: Equatable {
        /// An idle ReadyForQuery with nothing else due.
        case transactionBoundary
        /// Rewriting: a read from the client sent nothing to the server (a DEALLOCATE answered
        /// locally, Terminate).
        case nothingSent
        /// The client's connection closed.
        case clientClosed
    }

    /// Facts about the byte streams that only the handler's scanners and rewriter know.
    struct Streams: Equatable {
        /// The client's stream is at a message boundary (nothing half received).
        var clientAtBoundary: Bool
        /// The server's stream is at a message boundary.
        var serverAtBoundary: Bool
        /// The rewriter still expects replies it must filter (injected Parse/Close).
        var rewriterExpectsReplies: Bool
        /// The rewriter cannot tell what the server holds (a Parse or raw message without its reply).
        var rewriterUncertain: Bool

        init(clientAtBoundary: Bool = true, serverAtBoundary: Bool = true, rewriterExpectsReplies: Bool = false,
             rewriterUncertain: Bool = false) {
            self.clientAtBoundary = clientAtBoundary
            self.serverAtBoundary = serverAtBoundary
            self.rewriterExpectsReplies = rewriterExpectsReplies
            self.rewriterUncertain = rewriterUncertain
        }
    }

    /// What the server is to run before the next client may have it.
    struct Cleanup: Equatable {
        /// A transaction is open (the client left mid-transaction): ROLLBACK.
        var rollback: Bool
        /// Session state was left behind and the pool cleans it (`cleanup_server_connections`):
        /// DISCARD ALL.
        /// What the client left in the server's session and the pool cleans
        /// (`cleanup_server_connections`): only that is reset — a backend keeps the pooler's own
        /// prepared statements and its plan cache unless the client's statements must go too.
        var reset: SessionState

        static let none = Cleanup(rollback: false, reset: [])
        var isNone: Bool { !rollback && reset.isEmpty }

        /// The statements that clean the server, in order (each its own Query).
        var queries: [String] {
            var q: [String] = []
            if rollback { q.append("ROLLBACK") }
            if reset.contains(.parameters) {
                q.append("SET SESSION AUTHORIZATION DEFAULT")
                q.append("RESET ALL")
            }
            if reset.contains(.statements) { q.append("DEALLOCATE ALL") }
            if reset.contains(.cursors) { q.append("CLOSE ALL") }
            if reset.contains(.listens) { q.append("UNLISTEN *") }
            if reset.contains(.tempTables) { q.append("DISCARD TEMP") }
            return q
        }
    }

    enum ReleaseVerdict: Equatable {
        /// The client keeps its server.
        case keep
        /// Back to the pool after `cleanup` (the pool still checks the server's own reuse verdict:
        /// broken, cancelled, epoch, lifetime).
        case release(Cleanup)
        /// Close the server: it may hold bytes or state the pooler did not account for.
        case discard
        /// The client left while its statement may still run: send PostgreSQL a CancelRequest for
        /// the server's backend (so it stops and releases its locks now), then close the server.
        case cancelAndDiscard

        /// What becomes of the server when the client lets it go; nil when it keeps it.
        var disposal: ServerDisposal? {
            switch self {
            case .keep: return nil
            case .release(let cleanup): return .release(cleanup)
            case .discard: return .discard
            case .cancelAndDiscard: return .cancelAndDiscard
            }
        }
    }

    /// What becomes of a server its client lets go.
    enum ServerDisposal: Equatable {
        case release(Cleanup)
        case discard
        /// CancelRequest for the server's backend, then close it (`cancel_on_client_disconnect`).
        case cancelAndDiscard
    }

    /// THE decision whether this client's server goes back to the pool: at a transaction boundary
    /// (transaction mode, or session mode once the client terminates), when a read sent the server
    /// nothing, or when the client's connection closes. A server that may be dirty is discarded,
    /// never handed to another client; when the client closed while its statement may still be
    /// running, the statement is cancelled first unless `cancelOnClientDisconnect` is off.
    /// (`streamsNow` is only evaluated when the relay's own state does not settle it: most reads that
    /// send the server something end at the first guard.)
    func releaseVerdict(at point: ReleasePoint, streamsNow: @autoclosure () -> Streams, cleanupEnabled: Bool,
                        cancelOnClientDisconnect: Bool) -> ReleaseVerdict {
        let streams: Streams
        switch point {
        case .transactionBoundary:
            guard !extendedOpen && (!sessionMode || terminating) else { return .keep }
            streams = streamsNow()
            guard streams.clientAtBoundary else { return .keep }
        case .nothingSent:
            guard expectedReady <= 0 && !extendedOpen && !terminating && transactionStatus == .idle else { return .keep }
            streams = streamsNow()
            guard !streams.rewriterExpectsReplies && streams.clientAtBoundary else { return .keep }
        case .clientClosed:
            streams = streamsNow()
            let quiet = expectedReady <= 0 && !extendedOpen && !serverInCopy && streams.clientAtBoundary
                && streams.serverAtBoundary && !streams.rewriterExpectsReplies
            guard quiet else { return statementMayBeRunning && cancelOnClientDisconnect ? .cancelAndDiscard : .discard }
        }
        if streams.rewriterUncertain { return .discard }
        return .release(Cleanup(rollback: transactionStatus != .idle,
                                reset: cleanupEnabled ? leftSessionState : []))
    }
}

/// Kinds of state a client can leave in a server's session; each is reset on its own before the
/// server's next user.
struct SessionState: OptionSet, Equatable {
    let rawValue: UInt8
    /// SET / RESET (and SET ROLE, SET SESSION AUTHORIZATION): RESET ALL.
    static let parameters = SessionState(rawValue: 1)
    /// SQL PREPARE, or protocol statements named by the client that reached the server raw.
    static let statements = SessionState(rawValue: 2)
    /// DECLARE CURSOR (WITH HOLD cursors outlive their transaction).
    static let cursors = SessionState(rawValue: 4)
    /// LISTEN.
    static let listens = SessionState(rawValue: 8)
    /// CREATE TABLE (temporary tables live until the session ends).
    static let tempTables = SessionState(rawValue: 16)
}

/// Recognises the CommandComplete tags the relay cares about (from the tag's first bytes).
enum CommandTag {
    /// The session state a command with this tag leaves behind (empty for most).
    @inline(__always)
    static func sessionState(_ p: UnsafeRawBufferPointer) -> SessionState {
        guard p.count >= 3 else { return [] }
        switch p[0] {
        case UInt8(ascii: "S"):  // "SET" but not "SELECT"
            let set = p[1] == UInt8(ascii: "E") && p[2] == UInt8(ascii: "T") && (p.count == 3 || p[3] == 0)
            return set ? .parameters : []
        case UInt8(ascii: "R"):  // "RESET"
            let reset = p.count >= 5 && p[1] == UInt8(ascii: "E") && p[2] == UInt8(ascii: "S") && p[3] == UInt8(ascii: "E")
                && p[4] == UInt8(ascii: "T")
            return reset ? .parameters : []
        case UInt8(ascii: "D"):  // "DECLARE CURSOR"
            return p.count >= 7 && p[1] == UInt8(ascii: "E") && p[2] == UInt8(ascii: "C") ? .cursors : []
        case UInt8(ascii: "P"):  // "PREPARE"
            let prepare = p.count >= 7 && p[1] == UInt8(ascii: "R") && p[2] == UInt8(ascii: "E")
                && p[3] == UInt8(ascii: "P")
            return prepare ? .statements : []
        case UInt8(ascii: "L"):  // "LISTEN"
            return p[1] == UInt8(ascii: "I") && p[2] == UInt8(ascii: "S") ? .listens : []
        case UInt8(ascii: "C"):  // "CREATE TABLE"
            return p.count >= 8 && p[1] == UInt8(ascii: "R") && p[7] == UInt8(ascii: "T") ? .tempTables : []
        default:
            return []
        }
    }

    /// Tags that leave state in the server session: the server is cleaned before its next user.
    @inline(__always)
    static func makesSessionState(_ p: UnsafeRawBufferPointer) -> Bool { !sessionState(p).isEmpty }

    /// `DISCARD ALL` / `DEALLOCATE ALL` completed: the backend holds no prepared statements any more.
    static func dropsAllStatements(_ p: UnsafeRawBufferPointer) -> Bool {
        func starts(_ text: StaticString) -> Bool {
            let n = text.utf8CodeUnitCount
            guard p.count >= n else { return false }
            return text.withUTF8Buffer { t in (0..<n).allSatisfy { p[$0] == t[$0] } }
        }
        return starts("DISCARD ALL") || starts("DEALLOCATE ALL")
    }
}
