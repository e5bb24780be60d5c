/// An SQLSTATE error code (PostgreSQL's Appendix A), as the pooler sends it in ErrorResponse.
///
/// The names are PostgreSQL's condition names; a code received from a server travels unchanged
/// (`SQLState(serverCode)`).
public struct SQLState: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let code: String

    public init(_ code: String) { self.code = code }
    public init(stringLiteral code: String) { self.code = code }

    public var description: String { code }

    /// 08006 connection_failure: the server went away or could not be reached.
    public static let connectionFailure = SQLState("08006")
    /// 08P01 protocol_violation: bytes that break the protocol.
    public static let protocolViolation = SQLState("08P01")
    /// 26000 invalid_sql_statement_name: a prepared statement that does not exist.
    public static let invalidSQLStatementName = SQLState("26000")
    /// 25P03 idle_in_transaction_session_timeout: idle inside a transaction for too long.
    public static let idleInTransactionTimeout = SQLState("25P03")
    /// 25P04 transaction_timeout: a transaction open for too long.
    public static let transactionTimeout = SQLState("25P04")
    /// 28000 invalid_authorization_specification: refused by pg_hba or tls_mode.
    public static let invalidAuthorizationSpecification = SQLState("28000")
    /// 28P01 invalid_password: authentication failed.
    public static let invalidPassword = SQLState("28P01")
    /// 3D000 invalid_catalog_name: no such database.
    public static let invalidCatalogName = SQLState("3D000")
    /// 42601 syntax_error (admin console commands).
    public static let syntaxError = SQLState("42601")
    /// 53200 out_of_memory.
    public static let outOfMemory = SQLState("53200")
    /// 53300 too_many_connections: client limits, or no server within query_wait_timeout.
    public static let tooManyConnections = SQLState("53300")
    /// 57014 query_canceled.
    public static let queryCanceled = SQLState("57014")
    /// 57P05 idle_session_timeout: a client silent outside a transaction for too long.
    public static let idleSessionTimeout = SQLState("57P05")
    /// 57P01 admin_shutdown.
    public static let adminShutdown = SQLState("57P01")
    /// 57P03 cannot_connect_now: the pooler is shutting down.
    public static let cannotConnectNow = SQLState("57P03")
    /// 58000 system_error (admin console: unsupported command).
    public static let systemError = SQLState("58000")
    /// 58006: the pooler ends a client at shutdown (the reference pooler's code for it).
    public static let poolerShutdown = SQLState("58006")
    /// F0000 config_file_error: RELOAD kept the old configuration.
    public static let configFileError = SQLState("F0000")
    /// XX000 internal_error: an ErrorResponse without a code.
    public static let internalError = SQLState("XX000")
}
