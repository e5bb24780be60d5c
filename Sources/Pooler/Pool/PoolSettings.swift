import ConfigKit

/// How the pooler proves its identity to PostgreSQL for one pool.
public enum BackendCredential: Equatable, Sendable {
    /// No password known: only `trust` on the server side works.
    case none
    /// Plaintext password (from `server_password`, or a plaintext `password` in config).
    case plaintext(String)
    /// MD5 pass-the-hash: the stored `md5<hex>` value answers the server's salted challenge.
    case md5Hash(String)
    /// SCRAM passthrough: the configured verifier; the ClientKey comes from the first client login.
    case scramPassthrough(verifier: String)
}

/// Everything a pool of server connections for one (database, user) pair needs, resolved from config.
public struct PoolSettings: Equatable, Sendable {
    /// Database name clients use (the pool name).
    public var database: String
    /// Username clients use.
    public var user: String
    /// Password material clients authenticate against (`md5...`, `SCRAM-SHA-256$...`, plaintext, or "").
    public var clientPassword: String

    public var serverHost: String
    public var serverPort: Int
    public var serverDatabase: String
    public var serverUser: String
    public var backendCredential: BackendCredential
    public var applicationName: String
    public var startupParameters: [(String, String)] {
        get { startupParameterPairs.map { ($0.key, $0.value) } }
        set { startupParameterPairs = newValue.map { KV(key: $0.0, value: $0.1) } }
    }
    public struct KV: Equatable, Sendable { public var key: String; public var value: String }
    public var startupParameterPairs: [KV] = []

    /// Whether a server connection is held for one transaction or the whole client session.
    public var mode: PoolMode
    public var poolSize: Int
    public var minPoolSize: Int
    public var connectTimeoutMs: UInt64
    public var queryWaitTimeoutMs: UInt64
    public var idleTimeoutMs: UInt64
    public var serverLifetimeMs: UInt64
    public var cleanupServerConnections: Bool
    public var serverRoundRobin: Bool
    /// Pool-wide prepared statement cache size; 0 turns statement remapping off.
    public var preparedStatementsCacheSize: Int = 8192
    /// Statements kept prepared on each server connection.
    public var serverPreparedStatementsCacheSize: Int = 8192
    /// server_tls_mode and its files (pool override ?? general).
    public var serverTLS = ServerTLSSettings()
    /// A server idle for longer than this runs `checkQuery` before a client gets it (0: never).
    public var serverIdleCheckMs: UInt64 = 0
    /// The liveness query (`pooler_check_query`).
    public var checkQuery = ";"
    /// Clients get their own session parameters on every server (`sync_server_parameters`); when
    /// false, servers keep the pool's and clients are only told their startup values back.
    public var syncServerParameters = true
    /// Parameters (canonical names) whose SET outside a transaction block follows the client.
    public var trackedParameters: Set<String> = []
    /// `cancel_on_client_disconnect`: a client gone mid-statement gets its statement cancelled.
    public var cancelOnClientDisconnect = true

    public init(
        database: String, user: String, clientPassword: String,
        serverHost: String = "127.0.0.1", serverPort: Int = 5432, serverDatabase: String? = nil,
        serverUser: String? = nil, backendCredential: BackendCredential = .none,
        applicationName: String = "pg_doorman", mode: PoolMode = .transaction, poolSize: Int = 40,
        minPoolSize: Int = 0, connectTimeoutMs: UInt64 = 3000, queryWaitTimeoutMs: UInt64 = 5000,
        idleTimeoutMs: UInt64 = 600_000, serverLifetimeMs: UInt64 = 1_200_000,
        cleanupServerConnections: Bool = true, serverRoundRobin: Bool = false
    ) {
        self.database = database
        self.user = user
        self.clientPassword = clientPassword
        self.serverHost = serverHost
        self.serverPort = serverPort
        self.serverDatabase = serverDatabase ?? database
        self.serverUser = serverUser ?? user
        self.backendCredential = backendCredential
        self.applicationName = applicationName
        self.mode = mode
        self.poolSize = poolSize
        self.minPoolSize = minPoolSize
        self.connectTimeoutMs = connectTimeoutMs
        self.queryWaitTimeoutMs = queryWaitTimeoutMs
        self.idleTimeoutMs = idleTimeoutMs
        self.serverLifetimeMs = serverLifetimeMs
        self.cleanupServerConnections = cleanupServerConnections
        self.serverRoundRobin = serverRoundRobin
    }
}
