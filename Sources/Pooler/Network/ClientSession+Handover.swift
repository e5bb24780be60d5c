#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// Binary upgrade with live session migration: an idle client session leaves this process as a
/// `SessionHandover` record plus a duplicate of its socket, and the new process adopts it
/// (`restore(from:)`); the client keeps its TCP connection and notices nothing.
///
/// Handover rules (one event system per connection at a time): the old process stops reading
/// first; the record is built one loop turn later (bytes a read already under way delivered travel
/// in it); the new process starts reading only once it has adopted the connection; the old process
/// closes its descriptor only after the new one said it adopted it (closing a descriptor another
/// process still holds sends the client nothing). A refusal or any failure resumes the session here.
extension ClientSession {
    /// Why the session cannot leave the process now (nil: it can). Session mode and TLS never
    /// can; the others pass.
    var handoverBlocker: String? {
        switch phase {
        case .admin: return "admin console"
        case .startup, .authenticating, .loggingIn: return "logging in"
        case .closed: return "closing"
        case .ready: break
        }
        if usesTLS || output.socketDescriptor < 0 { return "TLS" }
        if pool?.settings.mode == .session { return "session mode" }
        if handedOver || migrating { return "moving" }
        if handoverDeclined { return "refused by the new process" }
        return canHandOver ? nil : "in a transaction"
    }

    /// Whether the session is at a point where it can leave the process: logged in, plain socket,
    /// transaction mode, no server, nothing queued or half received.
    var canHandOver: Bool {
        guard case .ready = phase, !migrating, !handedOver, !handoverDeclined, !usesTLS, output.socketDescriptor >= 0,
              server == nil, !waitingForServer, pending == nil, clientScanner.atBoundary,
              (clientAcc?.readableBytes ?? 0) == 0, clientPassThrough == 0, rawUnnamedMissing == 0,
              relay.pendingSets == 0, inbound.readableBytes == 0, !relay.terminating,
              let pool, pool.settings.mode == .transaction
        else { return false }
        return true
    }

    /// Starts handing this session over when it is idle (call on `loop`); false when it is not.
    /// `send` gets the record and a duplicate descriptor (it closes the descriptor) and must call
    /// its completion with whether the new process adopted the session, on any thread.
    @discardableResult
    func beginHandover(_ send: @escaping (SessionHandover, Int32, @escaping (Bool) -> Void) -> Void) -> Bool {
        guard canHandOver, attached else { return false }
        migrating = true
        output.setReading(false)
        loop.execute { [self] in
            guard migrating, case .ready = phase, server == nil else { return resumeAfterHandover() }
            let fd = dup(output.socketDescriptor)
            guard fd >= 0 else { return resumeAfterHandover() }
            let record = makeHandover()
            send(record, fd) { [self] adopted in
                loop.execute { [self] in adopted ? handOverDone() : resumeAfterHandover() }
            }
        }
        return true
    }

    func makeHandover() -> SessionHandover {
        var named: [SessionHandover.Statement] = []
        var unnamed: [UInt8]?
        if hasRewriter, let statements = rewriter?.handoverStatements {
            named = statements.named.map {
                SessionHandover.Statement(name: $0.0, query: String(decoding: $0.1, as: UTF8.self), parameterTypes: $0.2)
            }
            if relay.extendedClient { unnamed = statements.unnamed }
        }
        if !relay.extendedClient, let raw = rawUnnamed { unnamed = Array(raw.readableBytesView) }
        return SessionHandover(
            processID: id, secretKey: secretKey, connectedAtUptimeNanos: connectedAt.uptimeNanoseconds,
            database: database, user: user, applicationName: applicationName, peer: peer,
            transactionCount: relay.transactionCount, queryCount: relay.queryCount, parameters: parameters.values,
            baseline: parameterBaseline, extendedClient: relay.extendedClient, statements: named,
            unnamedParse: unnamed, pendingInput: migratingInput.map { Array($0.readableBytesView) } ?? [])
    }

    /// The new process refused the session or the transfer failed: it goes on here.
    func resumeAfterHandover() {
        migrating = false
        handoverDeclined = true
        guard case .ready = phase, attached else { return }
        if let held = migratingInput {
            migratingInput = nil
            relayFromClient(held)
            if attached { readComplete() }
        }
        if attached { output.setReading(true) }
    }

    /// The new process serves the client now: let go of the connection without a word.
    func handOverDone() {
        handedOver = true
        migrating = false
        close()
    }

    /// The new process's side: a session handed over by the old one, restored in place of a login.
    func restore(from h: SessionHandover) {
        database = h.database
        user = h.user
        applicationName = h.applicationName
        // (A session moved within this process keeps its pool: an auth_query user's is dynamic.)
        guard let pool = self.pool ?? runtime.pool(database: h.database, user: h.user) else { return close() }
        self.pool = pool
        relay = ClientSessionStateMachine(sessionMode: false)
        relay.extendedClient = h.extendedClient
        if pool.settings.preparedStatementsCacheSize > 0 {
            var r = PreparedStatementRewriter(cache: pool.statementCache)
            let unnamed = h.extendedClient ? h.unnamedParse.map { ByteBuffer(bytes: $0) } : nil
            r.adoptHandover(named: h.statements.map { ($0.name, Array($0.query.utf8), $0.parameterTypes) },
                            unnamed: unnamed)
            rewriter = r
            hasRewriter = true
        }
        if !h.extendedClient, let raw = h.unnamedParse { rawUnnamed = ByteBuffer(bytes: raw) }
        parameterBaseline = h.baseline
        var p = SessionParameters()
        for (k, v) in h.parameters { p[k] = v }
        parameters = p
        trackedParameters = pool.settings.trackedParameters
        watchesSets = !trackedParameters.isEmpty
            || parameters.values.keys.contains { !SessionParameters.reportedSettable.contains($0) }
        counted = true
        countedInClientLimits = true
        becomeReady()
        if !h.pendingInput.isEmpty { relayFromClient(ByteBuffer(bytes: h.pendingInput)) }
    }
}
