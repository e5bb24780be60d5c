import ConfigKit
import NIOCore
import NIOPosix
import NIOSSL

/// Front door: startup packet, pg_hba, client authentication, and the login reply.
extension ClientSession {
    // MARK: - Startup and authentication

    func processLoginInput() {
        if tlsTurnPending {
            // Bytes before the answer to the SSLRequest would be plaintext inside a TLS session.
            if inbound.readableBytes > 0 { close() }
            return
        }
        while true {
            switch phase {
            case .startup:
                let tlsAvailable = !isUnixSocket && !usesTLS && runtime.tls.clientContext != nil
                switch ClientLoginStateMachine.firstPacket(StartupPacket.decode(&inbound), tlsAvailable: tlsAvailable) {
                case .needMore:
                    return
                case .close:
                    close()
                    return
                case .startTLS:
                    if startTLS() { return }
                    answerNo()
                case .answerNo:
                    answerNo()
                case .cancel(let pid, let secret):
                    runtime.cancel(processID: pid, secretKey: secret)
                    close()
                    return
                case .startup(let params):
                    startup(params)
                }
            case .authenticating(var login):
                guard let msg = nextMessage() else { return }
                // The machine is moved out while it runs: the phase's copy would share its buffers,
                // and the exchange's mutations would copy them.
                phase = .loggingIn
                let step = login.receive(type: msg.0, body: msg.1)
                phase = .authenticating(login)  // before the step: it may move the phase on
                switch step {
                case .protocolViolation:
                    return protocolViolation()
                case .accept:
                    return authenticated(clientKey: nil)
                case .md5Mismatch(let salt, let response):
                    if authQueryLogin?.secret != nil { return authQueryMD5Mismatch(salt: salt, response: response) }
                    return authFailed()
                case .sendSASLContinue(let serverFirst):
                    var out = allocator.buffer(capacity: 64 + serverFirst.count)
                    BackendMessage.authenticationSASL(code: 11, data: serverFirst, into: &out)
                    output.writeAndFlush(out)
                case .sendSASLFinalAndAccept(let serverFinal, let clientKey):
                    var out = allocator.buffer(capacity: 64 + serverFinal.count)
                    BackendMessage.authenticationSASL(code: 12, data: serverFinal, into: &out)
                    // One send for this and the login reply when the login goes on at once.
                    output.cork()
                    output.write(out)
                    authenticated(clientKey: clientKey)
                    return output.uncork()
                case .wrongPassword:
                    return authFailed()
                case .refuse(let code, let message):
                    return refuseLogin(code: code, message)
                }
            case .loggingIn, .ready, .admin, .closed:
                return
            }
        }
    }

    /// `N` to an SSLRequest or GSSENCRequest: the startup follows in the clear.
    func answerNo() {
        var out = allocator.buffer(capacity: 1)
        out.writeInteger(UInt8(ascii: "N"))
        output.writeAndFlush(out)
    }

    /// SSLRequest on TCP with a client-facing certificate: answers `S` and puts TLS in front of this
    /// handler; the StartupMessage then arrives encrypted. False when the answer must be `N`.
    func startTLS() -> Bool {
        guard !isUnixSocket, !usesTLS, let tlsContext = runtime.tls.clientContext else { return false }
        if output.socket != nil {
            moveToNIOForTLS()
            return true
        }
        if let limiter = runtime.tlsHandshakeLimiter, let wait = limiter.reserve() {
            // Over tls_rate_limit_per_second: the answer waits for this client's turn (the startup
            // timeout still runs).
            tlsTurnPending = true
            loop.scheduleTask(in: wait) { [self] in
                tlsTurnPending = false
                guard attached, output.isActive, !usesTLS else { return }
                beginTLS(tlsContext)
            }
        } else {
            beginTLS(tlsContext)
        }
        return true
    }

    private func beginTLS(_ tlsContext: NIOSSLContext) {
        // A client waits for the answer: anything already sent after the SSLRequest was not encrypted.
        guard inbound.readableBytes == 0 else { return close() }
        var out = allocator.buffer(capacity: 1)
        out.writeInteger(UInt8(ascii: "S"))
        output.writeAndFlush(out)
        output.disableDirect()
        do {
            try context.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tlsContext),
                                                           position: .before(self))
        } catch {
            return close()
        }
        usesTLS = true
        runtime.tls.clientTLSConnections.wrappingIncrement(ordering: .relaxed)
    }

    func nextMessage() -> (UInt8, ByteBuffer)? {
        do {
            return try MessageFramer.next(&inbound, maxLength: 10_000)
        } catch {
            protocolViolation()
            return nil
        }
    }

    func protocolViolation() {
        refuseLogin(code: .protocolViolation, "invalid message during authentication")
    }

    /// A wrong password (or the end of an unknown user's mock exchange). Under
    /// `auth_failure_delay` the answer waits, per client address (`AuthFailureDelay`): the wait is
    /// a scheduled task, never a sleep, and the client's reads stop meanwhile.
    func authFailed() {
        authQueryFailed()
        let message = MockAuthentication.failureMessage(user: user)
        let delay = runtime.authFailures.failed(address: clientAddress)
        guard delay > .zero, attached else { return refuseLogin(code: .invalidPassword, message) }
        phase = .loggingIn
        output.setReading(false)
        loop.scheduleTask(in: delay) { [self] in refuseLogin(code: .invalidPassword, message) }
    }

    /// The client's IP address (without the port), or "unix": what `auth_failure_delay` counts by.
    var clientAddress: String {
        switch remoteAddress {
        case .some(.unixDomainSocket), nil: return "unix"
        case .some(let addr): return addr.ipAddress ?? "?"
        }
    }

    /// Ends a login that failed: logged at info level (rate-limited, `FailedLoginLog`) with the
    /// client's address, user, database and the reason, as PostgreSQL logs failed connections;
    /// then the client gets `message` as FATAL.
    func refuseLogin(code: SQLState, _ message: String) {
        FailedLoginLog.shared.record(runtime.logger,
            "login failed: client \(peer) user \"\(user)\" database \"\(database)\" application_name \"\(applicationName)\": \(code) \(message)")
        fatal(code: code, message)
    }

    /// A user the pooler does not know gets the same exchange as one with a wrong password
    /// (`MockAuthentication`), then the same error: MD5 for the admin console (it uses MD5) and,
    /// unless pg_hba says scram-sha-256, where every configured user has an MD5 hash; else SCRAM
    /// (as PostgreSQL with password_encryption scram-sha-256). With trust there is no exchange for
    /// anybody, so it fails at once.
    func mockAuthentication(method: ClientAuthMethod, md5: Bool) {
        switch method {
        case .trust:
            return authFailed()
        case .md5, .scram, .password:
            if md5 && method != .scram { return beginMD5(hash: MockAuthentication.shared.md5Hash(user: user)) }
            return beginSCRAM(MockAuthentication.shared.scramKeys(user: user))
        }
    }

    func startup(_ params: [String: String]) {
        user = params["user"] ?? ""
        database = params["database"].flatMap { $0.isEmpty ? nil : $0 } ?? user
        applicationName = params["application_name"] ?? ""
        startupParameters = params
        if !usesTLS && !isUnixSocket && runtime.tls.clientMode.requiresTLS {
            return refuseLogin(code: .invalidAuthorizationSpecification, "Connection without SSL is not allowed by tls_mode.")
        }
        if runtime.isShuttingDown {
            return refuseLogin(code: .cannotConnectNow, "pg_doorman is shutting down")
        }
        if !runtime.admitClient() {
            return refuseLogin(code: .tooManyConnections, "sorry, too many clients already")
        }
        counted = true
        runtime.sessionStarted(self)

        let isAdmin = runtime.isAdminDatabase(database)
        let decision = runtime.hbaDecision(
            address: isUnixSocket ? nil : remoteAddress, tls: usesTLS, database: database, user: user)
        let method: ClientAuthMethod
        switch decision {
        case .method(let m): method = m
        case .denied(let message): return refuseLogin(code: .invalidAuthorizationSpecification, message)
        }

        if isAdmin {
            guard user == runtime.adminUsername else {
                return mockAuthentication(method: method, md5: true)
            }
            if method == .trust { return authenticated(clientKey: nil) }
            let hash = MD5Password.hash(password: runtime.adminPassword, user: user)
            return beginMD5(hash: hash)
        }

        guard let pool = runtime.pool(database: database, user: user) else {
            if !runtime.hasDatabase(database) {
                return refuseLogin(code: .invalidCatalogName, "database \"\(database)\" does not exist")
            }
            if let service = runtime.authQuery(for: database) { return authQueryStartup(service, method: method) }
            // Not configured for this database: the same exchange as a wrong password.
            return mockAuthentication(method: method, md5: runtime.mockAuthenticationUsesMD5)
        }
        self.pool = pool
        switch ClientLoginStateMachine.exchange(stored: pool.settings.clientPassword, method: method, user: user,
                                                scramKeys: { pool.clientScramKeys }) {
        case .trust: return authenticated(clientKey: nil)
        case .md5(let hash): return beginMD5(hash: hash)
        case .scram(let keys): return beginSCRAM(keys)
        case .mock(let md5): return mockAuthentication(method: method, md5: md5)
        case .refuse(let code, let message): return refuseLogin(code: code, message)
        case .fail: return authFailed()
        }
    }

    func beginMD5(hash: String) {
        let salt = MD5Password.makeSalt()
        phase = .authenticating(.md5(hash: hash, salt: salt))
        var out = allocator.buffer(capacity: 13)
        BackendMessage.authenticationMD5(salt: salt, into: &out)
        output.writeAndFlush(out)
    }

    func beginSCRAM(_ keys: ScramServer.Keys) {
        phase = .authenticating(.scram(ScramServer(keys: keys)))
        var out = allocator.buffer(capacity: 32)
        BackendMessage.authenticationSASL(mechanisms: ["SCRAM-SHA-256"], into: &out)
        output.writeAndFlush(out)
    }

    /// Authentication is over (or the connection is): the startup timeout no longer applies.
    func startupFinished() {
        if let loginWatch {
            loginWatch.remove(slot: loginSlot)
            self.loginWatch = nil
            loginSlot = -1
        }
    }

    func authenticated(clientKey: [UInt8]?) {
        startupFinished()
        runtime.authFailures.succeeded(address: clientAddress)
        if runtime.isAdminDatabase(database) {
            let admin = AdminSession(runtime: runtime, session: self)
            phase = .admin(admin)
            var out = allocator.buffer(capacity: 256)
            BackendMessage.authenticationOk(into: &out)
            for (k, v) in AdminSession.parameters(runtime: runtime) { BackendMessage.parameterStatus(k, v, into: &out) }
            BackendMessage.backendKeyData(processID: id, secretKey: secretKey, into: &out)
            BackendMessage.readyForQuery(into: &out)
            output.writeAndFlush(out)
            runtime.logClientConnection(self)
            if inbound.readableBytes > 0 { admin.receive(&inbound) }
            return
        }
        if pool == nil && authQueryLogin != nil && !authQueryJoinPool() { return }
        guard let pool else { return close() }
        if let refusal = runtime.governor.admit(database: database, user: user) {
            return refuseLogin(code: .tooManyConnections, refusal.message(database: database, user: user))
        }
        countedInClientLimits = true
        if let clientKey, case .scramPassthrough = pool.settings.backendCredential {
            pool.scramClientKey = clientKey
        }
        phase = .loggingIn
        let sessionMode = pool.settings.mode == .session
        relay = ClientSessionStateMachine(sessionMode: sessionMode)
        if !sessionMode && pool.settings.preparedStatementsCacheSize > 0 {
            rewriter = PreparedStatementRewriter(cache: pool.statementCache)
            hasRewriter = true
        }
        let pinned = Set(pool.settings.startupParameterPairs.map { SessionParameters.canonicalName($0.key) })
        let requested = SessionParameters.fromStartup(startupParameters, pinned: pinned)
        startupParameters = [:]
        guard pool.settings.syncServerParameters else {
            // sync_server_parameters: false — servers keep the pool's values; the client is only told
            // its own startup values back (the reference pooler's default).
            reportedOnly = requested.values
            return continueLogin(pool: pool, sessionMode: sessionMode)
        }
        parameters = requested
        trackedParameters = pool.settings.trackedParameters
        watchesSets = !trackedParameters.isEmpty
            || parameters.values.keys.contains { !SessionParameters.reportedSettable.contains($0) }
        checkParameters(pool: pool) { [self] in continueLogin(pool: pool, sessionMode: sessionMode) }
    }

    /// The client's startup parameters (other than application_name) are tried on a server once per
    /// distinct set and pool: PostgreSQL refuses an unknown parameter or a bad value (the client gets
    /// its error as FATAL, as from PostgreSQL itself) and reports the values in its own spelling
    /// (`DateStyle` `German, DMY`), which the client is told at login.
    func checkParameters(pool: ServerPool, then proceed: @escaping () -> Void) {
        if !parameters.values.keys.contains(where: { $0 != "application_name" }) { return proceed() }
        let key = parameters.cacheKey
        if let known = pool.validatedParameters(key) { return parametersChecked(known, then: proceed) }
        acquireForLogin(pool) { [self] s in
            let wanted = parameters.values
            let query = SessionParameters.query(for: wanted.map { SessionParameters.Change(name: $0.key, value: $0.value) })
            let run = { [self] in
                s.apply(query: query) { [self] error in
                    var reported: [String: String] = [:]
                    if error == nil {
                        for (name, value) in wanted {
                            if SessionParameters.reportedSettable.contains(name) {
                                reported[name] = s.parameterValues[name] ?? value
                            } else {
                                s.parameterValues[name] = value
                            }
                        }
                    }
                    pool.release(s)
                    let verdict: ServerPool.ValidatedParameters = error.map { .refused($0) } ?? .accepted(reported: reported)
                    pool.rememberParameters(key, verdict)
                    loop.execute { [self] in
                        guard case .loggingIn = phase else { return }
                        parametersChecked(verdict, then: proceed)
                    }
                }
            }
            if s.loop === loop { run() } else { s.loop.execute(run) }
        }
    }

    /// A server for the login itself (the pool's first, a parameter check, a session-mode client's):
    /// the pool learns its server parameters from it; a failure ends the login.
    func acquireForLogin(_ pool: ServerPool, _ use: @escaping (ServerConnection) -> Void) {
        pool.acquire(on: loop) { [self] result in
            guard case .loggingIn = phase else {
                if case .success(let s) = result { pool.release(s) }
                return
            }
            switch result {
            case .success(let s):
                pool.serverParameters = ParameterStatusBlock(s.parameters)
                use(s)
            case .failure(let error):
                loginFailed(error)
            }
        }
    }

    func parametersChecked(_ verdict: ServerPool.ValidatedParameters, then proceed: () -> Void) {
        switch verdict {
        case .refused(let e):
            refuseLogin(code: e.code, e.message)
        case .accepted(let reported):
            for (name, value) in reported { parameters[name] = value }
            proceed()
        }
    }

    func continueLogin(pool: ServerPool, sessionMode: Bool) {
        if let params = pool.serverParameters, !sessionMode {
            finishLogin(params)
            return
        }
        // The first client of a pool (or any session-mode client) needs a server now.
        acquireForLogin(pool) { [self] s in
            parameterBaseline = pool.serverParameters?.values ?? [:]
            if sessionMode {
                attach(s)
            } else {
                pool.release(s)
            }
            finishLogin(pool.serverParameters ?? ParameterStatusBlock(s.parameters))
        }
    }

    func loginFailed(_ error: PoolError) {
        switch error {
        case .serverRejected(let e):
            refuseLogin(code: e.code, e.message)
        case .queryWaitTimeout, .connectFailed, .closed:
            refuseLogin(code: .connectionFailure, "pg_doorman could not connect to the server for database \"\(database)\": \(error)")
        }
    }

    /// The client may send queries from now on (after its login, or adopted from an old process):
    /// its cancel key works and its loop's sweep enforces the timeouts on it.
    func becomeReady() {
        runtime.cancels.register(processID: id, secret: secretKey, session: self)
        phase = .ready
        quietSince = .now()
        poolKey = PoolerRuntime.key(database, user)
        if let watch = runtime.governor.watch(for: loop) {
            timeoutWatch = watch
            watchSlot = watch.add(self)
        }
    }

    func finishLogin(_ params: ParameterStatusBlock) {
        parameterBaseline = params.values
        var out = allocator.buffer(capacity: params.encoded.readableBytes + 128)
        BackendMessage.authenticationOk(into: &out)
        if let reportedOnly {
            params.write(overrides: reportedOnly, into: &out)
            self.reportedOnly = nil
        } else if parameters.values.keys.allSatisfy({ $0 == "application_name" }) {
            params.write(clientApplicationName: applicationName, into: &out)
        } else {
            params.write(overrides: parameters.values, into: &out)
        }
        BackendMessage.backendKeyData(processID: id, secretKey: secretKey, into: &out)
        BackendMessage.readyForQuery(into: &out)
        output.writeAndFlush(out)
        becomeReady()
        runtime.logClientConnection(self)
        if inbound.readableBytes > 0 {
            let rest = inbound
            inbound = allocator.buffer(capacity: 0)
            relayFromClient(rest)
            readComplete()
        } else if let relay = runtime.relayLoop(for: loop) {
            moveToRelay(relay)
        }
    }

}
