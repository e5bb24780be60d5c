// Runtime resolution rules (config-spec §8): the pooler asks these instead of re-deriving cascades.

extension Pool {
    /// user.pool_mode ?? pool.pool_mode.
    public func effectivePoolMode(for user: User) -> PoolMode { user.poolMode ?? poolMode }

    /// Real database name on the server: server_database ?? pool name.
    public func serverDatabaseName(_ poolName: String) -> String { serverDatabase ?? poolName }

    /// pool.idle_timeout ?? general.idle_timeout (ms; 0 disables).
    public func effectiveIdleTimeout(_ general: General) -> UInt64 { idleTimeout ?? general.idleTimeout }

    /// pool.server_lifetime ?? general.server_lifetime (ms; 0 disables).
    public func effectiveServerLifetime(_ general: General) -> UInt64 { serverLifetime ?? general.serverLifetime }

    /// Application name sent to the backend.
    public var effectiveApplicationName: String { applicationName ?? "pg_doorman" }

    /// Prepared statement cache size of the pool (0 when prepared statements are disabled).
    public func effectivePreparedStatementsCacheSize(_ general: General) -> Int {
        guard general.preparedStatements else { return 0 }
        return preparedStatementsCacheSize ?? general.preparedStatementsCacheSize
    }

    /// pool.server_… ?? general.server_… ?? resolved pool cache size.
    public func effectiveServerPreparedStatementsCacheSize(_ general: General) -> Int {
        serverPreparedStatementsCacheSize ?? general.serverPreparedStatementsCacheSize
            ?? effectivePreparedStatementsCacheSize(general)
    }

    /// general.client_anonymous_prepared_cache_size ?? resolved pool cache size (0 = unbounded).
    public func effectiveClientAnonymousPreparedCacheSize(_ general: General) -> Int {
        general.clientAnonymousPreparedCacheSize ?? effectivePreparedStatementsCacheSize(general)
    }

    public func effectiveScalingWarmPoolRatio(_ general: General) -> Int {
        scalingWarmPoolRatio ?? general.scalingWarmPoolRatio
    }

    public func effectiveScalingFastRetries(_ general: General) -> Int {
        scalingFastRetries ?? general.scalingFastRetries
    }

    public var effectiveMinConnectionLifetime: UInt64 { minConnectionLifetime ?? 30_000 }
    public var effectiveReservePoolTimeout: UInt64 { reservePoolTimeout ?? 3_000 }
    public var effectiveReservePoolSize: Int { reservePoolSize ?? 0 }
    public var effectiveMinGuaranteedPoolSize: Int { minGuaranteedPoolSize ?? 0 }
    /// Coordinator is on when max_db_connections > 0.
    public var coordinatorEnabled: Bool { (maxDbConnections ?? 0) > 0 }

    /// Server TLS settings: pool override ?? general.
    public func effectiveServerTlsMode(_ general: General) -> String { serverTlsMode ?? general.serverTlsMode }
    public func effectiveServerTlsCaCert(_ general: General) -> String? { serverTlsCaCert ?? general.serverTlsCaCert }
    public func effectiveServerTlsCertificate(_ general: General) -> String? {
        serverTlsCertificate ?? general.serverTlsCertificate
    }
    public func effectiveServerTlsPrivateKey(_ general: General) -> String? {
        serverTlsPrivateKey ?? general.serverTlsPrivateKey
    }

    /// general → pool startup parameters, keys canonicalized, later wins. Sorted by key.
    public func effectiveStartupParameters(_ general: General) -> [(key: String, value: String)] {
        var merged: [String: String] = [:]
        for (k, v) in general.startupParameters { merged[StartupParameters.canonicalName(k)] = v }
        for (k, v) in startupParameters { merged[StartupParameters.canonicalName(k)] = v }
        return merged.keys.sorted().map { ($0, merged[$0]!) }
    }

    /// Patroni: pool urls ?? general urls (nil ⇒ feature off).
    public func effectivePatroniApiUrls(_ general: General) -> [String]? { patroniApiUrls ?? general.patroniApiUrls }
    public func effectiveFallbackCooldown(_ general: General) -> UInt64 {
        fallbackCooldown ?? general.fallbackCooldown ?? 30_000
    }
    public func effectivePatroniApiTimeout(_ general: General) -> UInt64 {
        patroniApiTimeout ?? general.patroniApiTimeout ?? 5_000
    }
    public func effectiveFallbackConnectTimeout(_ general: General) -> UInt64 {
        fallbackConnectTimeout ?? general.fallbackConnectTimeout ?? 5_000
    }
    public func effectiveFallbackLifetime(_ general: General) -> UInt64 {
        fallbackLifetime ?? general.fallbackLifetime ?? effectiveFallbackCooldown(general)
    }

    /// First user with that name.
    public func user(named name: String) -> User? { users.first { $0.username == name } }
}

extension User {
    /// Backend role: server_username ?? username.
    public var backendUsername: String { serverUsername ?? username }

    /// Passthrough auth: no server_password and (no server_username or it equals username).
    public var usesPassthroughAuth: Bool {
        serverPassword == nil && (serverUsername == nil || serverUsername == username)
    }

    /// A password of this form names the public key JWTs are checked against.
    public static let jwtPasswordPrefix = "jwt-pkey-fpath:"

    /// `jwt-pkey-fpath:<path>` password → the key path.
    public var jwtPublicKeyPath: String? {
        let prefix = Self.jwtPasswordPrefix
        return password.hasPrefix(prefix) ? String(password.dropFirst(prefix.count)) : nil
    }
}

extension General {
    /// Legacy `general.hba` check (used only when `pg_hba` is unset): Unix clients always allowed,
    /// empty list allows all, otherwise the TCP peer must be inside one of the networks.
    public func legacyHbaAllows(_ transport: HbaTransport) -> Bool {
        Self.legacyHbaAllows(networks: hba, transport)
    }

    /// The same check for a given `general.hba` list.
    public static func legacyHbaAllows(networks: [String], _ transport: HbaTransport) -> Bool {
        switch transport {
        case .unix: return true
        case .tcp(let address, _):
            if networks.isEmpty { return true }
            return networks.contains { IPNetwork(cidr: $0)?.contains(address) ?? false }
        }
    }
}
