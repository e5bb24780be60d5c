// Typed model of the whole pg_doorman configuration surface (config-spec §3).
//
// Conventions:
// * property name = camelCase of the config key;
// * durations are `UInt64` milliseconds, byte sizes `UInt64` bytes, `*_seconds`/tcp knobs `UInt64` seconds;
// * ports are `UInt16`; counters (`usize`/`u32` in the reference) are `Int` (range-checked when decoding);
// * optional keys are optionals; every struct has `init()` with the reference defaults.

/// Pooling mode of a pool or a user.
public enum PoolMode: String, Sendable, Equatable, CaseIterable {
    case transaction, session

    /// Case-insensitive parse (`transaction`, `Session`, `SESSION` ...).
    public init?(parsing text: String) {
        switch text.trimmingSpaces().lowercased() {
        case "transaction": self = .transaction
        case "session": self = .session
        default: return nil
        }
    }
}

/// The whole configuration file (after includes are merged).
public struct Config: Sendable, Equatable {
    public var general: General
    public var pools: [String: Pool]
    public var web: Web
    public var talos: Talos?
    public var include: Include

    public init() {
        general = General()
        pools = [:]
        web = Web()
        talos = nil
        include = Include()
    }

    public init(general: General, pools: [String: Pool], web: Web = Web(), talos: Talos? = nil,
                include: Include = Include()) {
        self.general = general
        self.pools = pools
        self.web = web
        self.talos = talos
        self.include = include
    }

    /// Pool names sorted, for stable iteration and output.
    public var sortedPoolNames: [String] { pools.keys.sorted() }
}

/// `[general]`.
public struct General: Sendable, Equatable {
    public var host: String = "0.0.0.0"
    public var port: UInt16 = 5432
    /// Required in files; empty in `init()`.
    public var adminUsername: String = ""
    /// Required in files; empty in `init()`.
    public var adminPassword: String = ""
    public var backlog: Int = 0
    public var maxConnections: Int = 8192
    public var connectTimeout: UInt64 = 3_000
    public var queryWaitTimeout: UInt64 = 5_000
    public var idleTimeout: UInt64 = 600_000
    public var serverLifetime: UInt64 = 1_200_000
    public var shutdownTimeout: UInt64 = 10_000
    public var retainConnectionsTime: UInt64 = 30_000
    public var retainConnectionsMax: Int = 3
    public var serverIdleCheckTimeout: UInt64 = 60_000
    public var proxyCopyDataTimeout: UInt64 = 15_000
    /// Pooler-enforced timeouts (ms; 0 = off), overridable per pool and per user.
    public var queryTimeout: UInt64 = 0
    public var idleTransactionTimeout: UInt64 = 0
    public var transactionTimeout: UInt64 = 0
    public var clientIdleTimeout: UInt64 = 0
    /// Client connection limits (0 = none).
    public var maxDbClientConnections: Int = 0
    public var maxUserClientConnections: Int = 0
    /// Server connections of one user name across all databases (0 = none).
    public var maxUserConnections: Int = 0
    /// How long a client may take from connecting to the end of authentication (0: no limit).
    public var clientLoginTimeout: UInt64 = 15_000
    /// Seconds.
    public var tcpKeepalivesIdle: UInt64 = 5
    /// Seconds.
    public var tcpKeepalivesInterval: UInt64 = 5
    public var tcpKeepalivesCount: Int = 5
    /// Seconds.
    public var tcpSoLinger: UInt64 = 0
    public var tcpNoDelay: Bool = true
    /// Seconds.
    public var tcpUserTimeout: UInt64 = 60
    public var tcpSocketBufferSize: UInt64 = 0
    public var unixSocketBufferSize: UInt64 = 1_048_576
    public var unixSocketDir: String? = nil
    /// Octal text as written (`"0600"`); see `unixSocketModeBits`.
    public var unixSocketMode: String = "0600"
    /// Note: the reference yields `false` when the key is omitted from a file (that is what the loader does), while
    /// its `General::default()` (and generated configs) use `true`; `init()` follows the latter.
    public var logClientConnections: Bool = true
    public var logClientDisconnections: Bool = true
    public var syslogProgName: String? = nil
    public var daemonPidFile: String = "/tmp/pg_doorman.pid"
    public var workerThreads: Int = 4
    public var workerCpuAffinityPinning: Bool = false
    public var workerStackSize: UInt64? = nil
    public var maxBlockingThreads: Int? = nil
    public var tokioGlobalQueueInterval: Int? = nil
    public var tokioEventInterval: Int? = nil
    public var maxMemoryUsage: UInt64 = 268_435_456
    public var messageSizeToBeStream: UInt64 = 1_048_576
    public var maxConcurrentCreates: Int = 4
    public var scalingWarmPoolRatio: Int = 20
    public var scalingFastRetries: Int = 10
    public var scalingMaxParallelCreates: Int = 2
    public var serverRoundRobin: Bool = false
    public var syncServerParameters: Bool = true
    /// A client that disconnects mid-statement gets its statement cancelled (CancelRequest) first.
    public var cancelOnClientDisconnect: Bool = true
    /// Milliseconds the answer to a failed login waits (doubling per further failure from the same
    /// address); 0: off.
    public var authFailureDelay: UInt64 = 0
    /// Parameters whose SET outside a transaction block follows a client across servers.
    public var trackExtraParameters: [String] = []
    public var poolerCheckQuery: String = ";"
    public var preparedStatements: Bool = true
    public var preparedStatementsCacheSize: Int = 8192
    public var serverPreparedStatementsCacheSize: Int? = nil
    /// Also read from the deprecated alias `client_prepared_statements_cache_size`.
    public var clientAnonymousPreparedCacheSize: Int? = nil
    /// Seconds.
    public var queryInternerGcIntervalSeconds: UInt64 = 60
    /// Seconds.
    public var queryInternerAnonIdleTtlSeconds: UInt64 = 60
    public var tlsCertificate: String? = nil
    public var tlsPrivateKey: String? = nil
    public var tlsCaCert: String? = nil
    public var tlsMode: String? = nil
    public var tlsRateLimitPerSecond: Int = 0
    public var serverTlsMode: String = "allow"
    public var serverTlsCaCert: String? = nil
    public var serverTlsCertificate: String? = nil
    public var serverTlsPrivateKey: String? = nil
    /// Legacy CIDR allow-list (TCP only; empty = allow all).
    public var hba: [String] = []
    public var pgHba: PgHba? = nil
    public var startupParameters: [String: String] = [:]
    public var patroniApiUrls: [String]? = nil
    public var fallbackCooldown: UInt64? = nil
    public var patroniApiTimeout: UInt64? = nil
    public var fallbackConnectTimeout: UInt64? = nil
    public var fallbackLifetime: UInt64? = nil

    public init() {}

    /// `unix_socket_mode` as permission bits, nil if invalid.
    public var unixSocketModeBits: UInt32? { try? ValueGrammar.parseOctalMode(unixSocketMode) }
}

/// `[pools.<name>]`.
public struct Pool: Sendable, Equatable {
    public var serverHost: String = "127.0.0.1"
    public var serverPort: UInt16 = 5432
    public var serverDatabase: String? = nil
    public var poolMode: PoolMode = .transaction
    /// File order (TOML indexed tables: numeric index order).
    public var users: [User] = []
    /// Milliseconds.
    public var idleTimeout: UInt64? = nil
    /// Milliseconds.
    public var serverLifetime: UInt64? = nil
    /// Milliseconds; overrides `general.connect_timeout` for this pool's server connections.
    public var connectTimeout: UInt64? = nil
    /// Overrides of the general timeouts (ms).
    public var queryTimeout: UInt64? = nil
    public var idleTransactionTimeout: UInt64? = nil
    public var transactionTimeout: UInt64? = nil
    public var clientIdleTimeout: UInt64? = nil
    public var maxDbClientConnections: Int? = nil
    public var cleanupServerConnections: Bool = true
    public var logClientParameterStatusChanges: Bool = false
    public var applicationName: String? = nil
    public var preparedStatementsCacheSize: Int? = nil
    public var serverPreparedStatementsCacheSize: Int? = nil
    public var scalingWarmPoolRatio: Int? = nil
    public var scalingFastRetries: Int? = nil
    public var maxDbConnections: Int? = nil
    /// Milliseconds; runtime default 30000.
    public var minConnectionLifetime: UInt64? = nil
    public var reservePoolSize: Int? = nil
    /// Milliseconds; runtime default 3000.
    public var reservePoolTimeout: UInt64? = nil
    public var minGuaranteedPoolSize: Int? = nil
    public var serverTlsMode: String? = nil
    public var serverTlsCaCert: String? = nil
    public var serverTlsCertificate: String? = nil
    public var serverTlsPrivateKey: String? = nil
    public var startupParameters: [String: String] = [:]
    public var authQuery: AuthQuery? = nil
    public var patroniApiUrls: [String]? = nil
    public var fallbackCooldown: UInt64? = nil
    public var patroniApiTimeout: UInt64? = nil
    public var fallbackConnectTimeout: UInt64? = nil
    public var fallbackLifetime: UInt64? = nil

    public init() {}
}

/// `pools.<name>.users[]`.
public struct User: Sendable, Equatable {
    public var username: String = ""
    public var password: String = ""
    public var poolSize: Int = 40
    public var minPoolSize: Int? = nil
    public var poolMode: PoolMode? = nil
    /// Milliseconds.
    public var serverLifetime: UInt64? = nil
    /// Overrides of the pool's and general timeouts (ms).
    public var queryTimeout: UInt64? = nil
    public var idleTransactionTimeout: UInt64? = nil
    public var transactionTimeout: UInt64? = nil
    public var clientIdleTimeout: UInt64? = nil
    public var serverUsername: String? = nil
    public var serverPassword: String? = nil
    public var authPamService: String? = nil

    public init() {}

    public init(username: String, password: String, poolSize: Int = 40) {
        self.username = username
        self.password = password
        self.poolSize = poolSize
    }
}

/// `pools.<name>.auth_query`.
public struct AuthQuery: Sendable, Equatable {
    public var query: String = ""
    public var user: String = ""
    public var password: String = ""
    public var database: String? = nil
    public var workers: Int = 2
    public var serverUser: String? = nil
    public var serverPassword: String? = nil
    public var poolSize: Int = 40
    public var minPoolSize: Int = 0
    public var cacheTtl: UInt64 = 3_600_000
    public var cacheFailureTtl: UInt64 = 30_000
    public var minInterval: UInt64 = 1_000
    /// How long a dynamic pool stays after its last client and server connection are gone (ms).
    public var dynamicPoolGcDelay: UInt64 = 60_000

    public init() {}
}

/// `[web]` (alias `[prometheus]`).
public struct Web: Sendable, Equatable {
    public var enabled: Bool = false
    public var host: String = "0.0.0.0"
    public var port: UInt16 = 9127
    public var ui: Bool = false
    public var uiAnonymous: Bool = false
    public var logTapMaxEntries: Int = 8192
    public var ssoEnabled: Bool = false
    public var ssoProxyUrl: String? = nil
    public var ssoPublicKeyFile: String? = nil
    public var ssoAudience: [String] = []
    public var ssoAllowedUsers: [String] = ["*"]
    /// CIDR networks.
    public var trustedProxies: [String] = []
    public var ssoGroupsClaim: String = "groups"
    public var ssoAdminGroups: [String] = []
    public var ssoRequireHttps: Bool = false

    public init() {}
}

/// Top-level `[talos]`.
public struct Talos: Sendable, Equatable {
    public var keys: [String] = []
    public var databases: [String] = []

    public init() {}
    public init(keys: [String], databases: [String]) {
        self.keys = keys
        self.databases = databases
    }
}

/// `[include]`.
public struct Include: Sendable, Equatable {
    public var files: [String] = []

    public init() {}
    public init(files: [String]) { self.files = files }
}

extension String {
    /// Trims ASCII spaces, tabs and newlines (no Foundation needed).
    func trimmingSpaces() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let start = firstIndex(where: { !isSpace($0) }) else { return "" }
        let end = lastIndex(where: { !isSpace($0) })!
        return String(self[start...end])
    }
}
