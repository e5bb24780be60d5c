import ConfigKit

/// How a client must prove its identity, after pg_hba (or the legacy list) has been consulted.
public enum ClientAuthMethod: Equatable {
    /// Admit without a password.
    case trust
    /// pg_hba said md5: MD5 for MD5 hashes, SCRAM for SCRAM verifiers (as PostgreSQL does).
    case md5
    /// pg_hba said scram-sha-256: MD5-hashed users cannot log in.
    case scram
    /// No pg_hba configured: whatever the stored password allows.
    case password
}

public enum HbaDecision: Equatable {
    case method(ClientAuthMethod)
    case denied(String)
}

extension PoolSettings {
    /// Resolves one (pool, user) pair of the configuration into runtime settings.
    public static func resolve(poolName: String, pool: Pool, user: User, general: General) -> PoolSettings {
        let credential: BackendCredential
        var serverUser = user.username
        if let serverPassword = user.serverPassword {
            serverUser = user.serverUsername ?? user.username
            credential = .plaintext(serverPassword)
        } else if let su = user.serverUsername, su != user.username {
            // A different backend role without a password: only trust on the server can work.
            serverUser = su
            credential = .none
        } else if user.password.hasPrefix("md5") && user.password.count == 35 {
            credential = .md5Hash(user.password)
        } else if user.password.hasPrefix("SCRAM-SHA-256$") {
            credential = .scramPassthrough(verifier: user.password)
        } else if user.password.isEmpty || user.jwtPublicKeyPath != nil {
            credential = .none
        } else {
            credential = .plaintext(user.password)
        }
        let mode = pool.effectivePoolMode(for: user)
        var s = PoolSettings(
            database: poolName, user: user.username, clientPassword: user.password,
            serverHost: pool.serverHost, serverPort: Int(pool.serverPort),
            serverDatabase: pool.serverDatabaseName(poolName), serverUser: serverUser,
            backendCredential: credential, applicationName: pool.effectiveApplicationName, mode: mode,
            poolSize: user.poolSize, minPoolSize: user.minPoolSize ?? 0,
            connectTimeoutMs: pool.connectTimeout ?? general.connectTimeout, queryWaitTimeoutMs: general.queryWaitTimeout,
            idleTimeoutMs: pool.effectiveIdleTimeout(general),
            serverLifetimeMs: user.serverLifetime ?? pool.effectiveServerLifetime(general),
            cleanupServerConnections: pool.cleanupServerConnections, serverRoundRobin: general.serverRoundRobin)
        s.startupParameters = pool.effectiveStartupParameters(general).map { ($0.key, $0.value) }
        s.preparedStatementsCacheSize = pool.effectivePreparedStatementsCacheSize(general)
        s.serverPreparedStatementsCacheSize = max(1, pool.effectiveServerPreparedStatementsCacheSize(general))
        s.serverTLS = ServerTLSSettings.resolve(pool: pool, general: general)
        s.serverIdleCheckMs = general.serverIdleCheckTimeout
        s.checkQuery = general.poolerCheckQuery.isEmpty ? ";" : general.poolerCheckQuery
        s.syncServerParameters = general.syncServerParameters
        s.trackedParameters = Set(general.trackExtraParameters.map(SessionParameters.canonicalName))
        return s
    }
}

extension General {
    /// pg_hba (`pgHba`), or the legacy CIDR list (`hba`) when it is unset, applied to one connection
    /// attempt. Static over just the two settings it reads, so a connection does not copy all of
    /// `General`; the texts for a refusal are only built for a refusal.
    static func hbaDecision(pgHba: PgHba?, legacyNetworks: [String], transport: HbaTransport,
                            database: String, user: String) -> HbaDecision {
        var hostText: String {
            switch transport {
            case .unix: return "[local]"
            case .tcp(let address, _): return "host \"\(address)\""
            }
        }
        var encryption: String {
            if case .tcp(_, let tls) = transport, tls { return "SSL encryption" } else { return "no encryption" }
        }
        guard let pgHba else {
            if General.legacyHbaAllows(networks: legacyNetworks, transport) { return .method(.password) }
            return .denied("no allowed network in general.hba for \(hostText), user \"\(user)\", database \"\(database)\"")
        }
        guard let rule = pgHba.match(transport: transport, database: database, user: user) else {
            return .denied("no pg_hba.conf entry for \(hostText), user \"\(user)\", database \"\(database)\", \(encryption)")
        }
        switch rule.method {
        case .trust: return .method(.trust)
        case .md5: return .method(.md5)
        case .scramSha256: return .method(.scram)
        case .reject:
            return .denied("pg_hba.conf rejects connection for \(hostText), user \"\(user)\", database \"\(database)\", \(encryption)")
        case .other(let name):
            return .denied("authentication method \"\(name)\" of pg_hba line \(rule.line) is not supported by pg_doorman")
        }
    }
}
