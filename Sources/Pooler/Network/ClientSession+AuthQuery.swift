import NIOCore

/// What a client session keeps of its auth_query login: the service, the password it is being
/// checked against, and (once logged in) its place in the service's dynamic pool.
final class AuthQueryLogin {
    let service: AuthQueryService
    var secret: AuthQuerySecret?
    /// The user counted as a client of a dynamic pool (`AuthQueryService.join`), until `end`.
    private var joined: String?

    init(service: AuthQueryService) { self.service = service }

    func didJoin(user: String) { joined = user }

    /// The session ended.
    func end() {
        if let user = joined {
            joined = nil
            service.leave(user: user)
        }
    }
}

/// Login of a user not listed under the pool, by auth_query: look its password up, run the
/// client's exchange against it (MD5 or SCRAM, as pg_hba allows), and on success give it the
/// user's dynamic pool (passthrough) or the shared `server_user` pool (dedicated).
extension ClientSession {
    func authQueryStartup(_ service: AuthQueryService, method: ClientAuthMethod) {
        let login = AuthQueryLogin(service: service)
        authQueryLogin = login
        phase = .loggingIn
        service.lookup(user: user, on: loop) { [self] outcome in
            onLoop { [self] in authQueryFetched(outcome, method: method) }
        }
    }

    private func onLoop(_ body: @escaping () -> Void) {
        if loop.inEventLoop { body() } else { loop.execute(body) }
    }

    /// The client is still there, waiting for us.
    private var awaitingAuthQuery: Bool {
        guard attached, case .loggingIn = phase, pool == nil else { return false }
        return true
    }

    private func authQueryFetched(_ outcome: AuthQueryFetch, method: ClientAuthMethod) {
        guard awaitingAuthQuery, let login = authQueryLogin else { return }
        phase = .startup
        switch outcome {
        case .unavailable:
            // The reason is in the log (`AuthQueryService`); the client learns only that it may retry.
            return refuseLogin(code: .invalidCatalogName,
                               "Auth query service temporarily unavailable for database: \(database). Please try again later.")
        case .notFound, .unusable:
            // Not a hint that the user does not exist: the same exchange and error as a wrong password.
            mockAuthentication(method: method, md5: runtime.mockAuthenticationUsesMD5)
        case .found(let secret):
            login.secret = secret
            if method == .trust { return authenticated(clientKey: nil) }
            if secret.isSCRAM {
                guard let verifier = try? ScramVerifier(parsing: secret.password) else {
                    return refuseLogin(code: .invalidPassword,
                                       "Server authentication configuration error. Please contact your database administrator.")
                }
                beginSCRAM(ScramServer.Keys(verifier))
            } else if method == .scram {
                // pg_hba asks for SCRAM and PostgreSQL has only an MD5 hash: no exchange can succeed.
                mockAuthentication(method: method, md5: false)
            } else {
                beginMD5(hash: secret.password)
            }
        }
        if attached, inbound.readableBytes > 0 { processLoginInput() }
    }

    /// The client's MD5 response does not match the cached hash: the password may have changed in
    /// PostgreSQL. Look once more (the cache's rate limit permitting) and check the same response
    /// against the same salt.
    func authQueryMD5Mismatch(salt: [UInt8], response: [UInt8]) {
        guard let login = authQueryLogin else { return authFailed() }
        phase = .loggingIn
        login.service.md5Mismatch(user: user, on: loop) { [self] outcome in
            onLoop { [self] in
                guard awaitingAuthQuery else { return }
                phase = .startup
                if case .found(let secret)? = outcome, secret.isMD5,
                   MD5Password.verify(clientResponse: response, storedHash: secret.password, salt: salt) {
                    login.secret = secret
                    authenticated(clientKey: nil)
                } else {
                    authFailed()
                }
            }
        }
    }

    /// Counts a failed auth_query login; a SCRAM proof that did not match makes the cached verifier
    /// stale (the next login looks the user up again).
    func authQueryFailed() {
        guard let login = authQueryLogin else { return }
        if login.secret?.isSCRAM == true { login.service.scramMismatch(user: user) }
        login.service.recordAuthentication(success: false)
    }

    /// Authentication succeeded: the session joins its dynamic pool. False when the login ended.
    func authQueryJoinPool() -> Bool {
        guard let login = authQueryLogin, let secret = login.secret,
              let pool = login.service.join(user: user, secret: secret)
        else {
            refuseLogin(code: .invalidCatalogName,
                        "Auth query service temporarily unavailable for database: \(database). Please try again later.")
            return false
        }
        login.didJoin(user: user)
        login.service.recordAuthentication(success: true)
        self.pool = pool
        return true
    }
}
