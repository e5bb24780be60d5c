// `pg_doorman generate`: read roles and databases from a live PostgreSQL through libpq and build a Config.

import CLibPQ
import ConfigKit
import Foundation

/// What went wrong, phrased for a one-line error message.
public enum GenerateError: Error, Equatable, CustomStringConvertible {
    case unreachable(String)
    case authenticationFailed(String)
    case notSuperuser(String)
    case query(String)
    case output(String)
    case usage(String)

    public var description: String {
        switch self {
        case .unreachable(let m): return "cannot connect to PostgreSQL: \(m)"
        case .authenticationFailed(let m): return "PostgreSQL rejected the login: \(m)"
        case .notSuperuser(let user):
            return "user \(user) may not read pg_shadow: reading password hashes requires a superuser (connect with -u postgres or another superuser)"
        case .query(let m): return "query failed: \(m)"
        case .output(let m): return m
        case .usage(let m): return m
        }
    }
}

/// Connection settings given on the command line; nil means "let libpq decide" (environment, defaults, .pgpass).
public struct ConnectionOptions: Sendable, Equatable {
    public var host: String?
    public var port: Int?
    public var user: String?
    public var password: String?
    public var database: String?
    public var ssl: Bool = false

    public init(host: String? = nil, port: Int? = nil, user: String? = nil, password: String? = nil,
                database: String? = nil, ssl: Bool = false) {
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.database = database
        self.ssl = ssl
    }

    /// Only the explicitly given keywords, so libpq fills in PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE,
    /// PGSSLMODE, ~/.pgpass and its built-in defaults for the rest.
    public var keywords: [(String, String)] {
        var k: [(String, String)] = []
        if let host { k.append(("host", host)) }
        if let port { k.append(("port", String(port))) }
        if let user { k.append(("user", user)) }
        if let password { k.append(("password", password)) }
        if let database { k.append(("dbname", database)) }
        if ssl { k.append(("sslmode", "require")) }
        k.append(("application_name", "pg_doorman generate"))
        k.append(("connect_timeout", "10"))
        return k
    }
}

/// A login role as read from pg_shadow.
public struct ShadowRole: Sendable, Equatable {
    public var name: String
    /// "md5..." / "SCRAM-SHA-256$..." / nil when the role has no password.
    public var passwordHash: String?

    public init(name: String, passwordHash: String?) {
        self.name = name
        self.passwordHash = passwordHash
    }
}

/// What was read from the server.
public struct ServerInventory: Sendable, Equatable {
    public var roles: [ShadowRole]
    public var databases: [String]
    /// The host libpq actually used (a directory for Unix sockets) and the port.
    public var connectedHost: String?
    public var connectedPort: Int?

    public init(roles: [ShadowRole], databases: [String], connectedHost: String? = nil, connectedPort: Int? = nil) {
        self.roles = roles
        self.databases = databases
        self.connectedHost = connectedHost
        self.connectedPort = connectedPort
    }
}

/// Settings of the generated config that do not come from the server.
public struct GenerateOptions: Sendable, Equatable {
    public var poolSize: Int = 40
    public var sessionMode: Bool = false
    /// pools' server_host.
    public var serverHost: String = "127.0.0.1"
    public var serverPort: Int = 5432
    public var ssl: Bool = false
    /// `--auth-query-user`: each pool gets an auth_query block run as this role (the README's
    /// `doorman.get_auth` function) instead of a list of every role with its hash.
    public var authQueryUser: String? = nil

    public init(poolSize: Int = 40, sessionMode: Bool = false, serverHost: String = "127.0.0.1",
                serverPort: Int = 5432, ssl: Bool = false, authQueryUser: String? = nil) {
        self.authQueryUser = authQueryUser
        self.poolSize = poolSize
        self.sessionMode = sessionMode
        self.serverHost = serverHost
        self.serverPort = serverPort
        self.ssl = ssl
    }
}

public enum ConfigGenerator {
    /// Local and loopback clients with their PostgreSQL passwords. `md5` also admits SCRAM verifiers.
    public static let generatedHba = """
        local all all md5
        host all all 127.0.0.1/32 md5
        host all all ::1/128 md5

        """

    /// The query `--auth-query-user` configures: the SECURITY DEFINER function of the README.
    public static let authQuerySQL = "SELECT usename, passwd FROM doorman.get_auth($1)"

    /// One pool per database, each with every role (hashes copied as they are, for passthrough auth).
    public static func build(_ inventory: ServerInventory, options: GenerateOptions) -> Config {
        var c = Config()
        c.general.host = "0.0.0.0"
        c.general.port = 6432
        c.general.adminUsername = "admin"
        c.general.adminPassword = "admin"
        c.general.pgHba = PgHba(content: generatedHba)
        if options.ssl { c.general.serverTlsMode = "require" }
        let users = inventory.roles.map {
            User(username: $0.name, password: $0.passwordHash ?? "", poolSize: options.poolSize)
        }
        for db in inventory.databases {
            var p = Pool()
            p.serverHost = options.serverHost
            p.serverPort = UInt16(clamping: options.serverPort)
            p.poolMode = options.sessionMode ? .session : .transaction
            if let role = options.authQueryUser {
                var aq = AuthQuery()
                aq.query = authQuerySQL
                aq.user = role
                aq.password = "change-me"
                aq.poolSize = options.poolSize
                p.authQuery = aq
            } else {
                p.users = users
            }
            c.pools[db] = p
        }
        return c
    }

    /// Connects, reads pg_shadow and pg_database, disconnects.
    public static func readInventory(_ conn: ConnectionOptions) throws -> ServerInventory {
        let client = try PQClient(conn)
        defer { client.close() }
        let roleRows: [[String?]]
        do {
            roleRows = try client.query("SELECT usename::text, passwd::text FROM pg_shadow ORDER BY usename")
        } catch PQClient.QueryFailure.failed(let sqlstate, let message) {
            if sqlstate == "42501" { throw GenerateError.notSuperuser(client.user ?? conn.user ?? "?") }
            throw GenerateError.query(message)
        }
        let dbRows: [[String?]]
        do {
            dbRows = try client.query("SELECT datname::text FROM pg_database WHERE NOT datistemplate ORDER BY datname")
        } catch PQClient.QueryFailure.failed(_, let message) {
            throw GenerateError.query(message)
        }
        return ServerInventory(
            roles: roleRows.compactMap { row in row[0].map { ShadowRole(name: $0, passwordHash: row[1]) } },
            databases: dbRows.compactMap { $0[0] },
            connectedHost: client.host, connectedPort: client.port.flatMap { Int($0) })
    }
}

/// Minimal synchronous libpq client.
final class PQClient {
    enum QueryFailure: Error { case failed(sqlstate: String?, message: String) }

    private var conn: OpaquePointer?

    init(_ options: ConnectionOptions) throws {
        let kw = options.keywords
        // Keep the C strings alive for the duration of the call.
        let keys = kw.map { strdup($0.0) } + [nil]
        let values = kw.map { strdup($0.1) } + [nil]
        defer { (keys + values).forEach { free($0) } }
        let k = keys.map { UnsafePointer($0) }
        let v = values.map { UnsafePointer($0) }
        conn = PQconnectdbParams(k, v, 0)
        guard let conn else { throw GenerateError.unreachable("out of memory") }
        if PQstatus(conn) != CONNECTION_OK {
            let message = Self.oneLine(String(cString: PQerrorMessage(conn)))
            PQfinish(conn)
            self.conn = nil
            throw Self.classify(message)
        }
    }

    /// Authentication problems are told apart from network ones by libpq's message text.
    static func classify(_ message: String) -> GenerateError {
        let lower = message.lowercased()
        let authMarkers = ["password authentication failed", "authentication failed", "no password supplied",
                           "fe_sendauth", "role \"", "pg_hba.conf", "password is required"]
        if authMarkers.contains(where: { lower.contains($0) }) { return .authenticationFailed(message) }
        return .unreachable(message)
    }

    static func oneLine(_ s: String) -> String {
        s.split(whereSeparator: { $0 == "\n" || $0 == "\r" })
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
            .joined(separator: "; ")
    }

    var user: String? { conn.flatMap { PQuser($0) }.map { String(cString: $0) } }
    var host: String? { conn.flatMap { PQhost($0) }.map { String(cString: $0) } }
    var port: String? { conn.flatMap { PQport($0) }.map { String(cString: $0) } }

    func query(_ sql: String) throws -> [[String?]] {
        guard let res = PQexec(conn, sql) else {
            throw QueryFailure.failed(sqlstate: nil, message: Self.oneLine(String(cString: PQerrorMessage(conn))))
        }
        defer { PQclear(res) }
        guard PQresultStatus(res) == PGRES_TUPLES_OK else {
            let state = PQresultErrorField(res, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
            throw QueryFailure.failed(sqlstate: state, message: Self.oneLine(String(cString: PQresultErrorMessage(res))))
        }
        var rows: [[String?]] = []
        for r in 0..<PQntuples(res) {
            var row: [String?] = []
            for c in 0..<PQnfields(res) {
                row.append(PQgetisnull(res, r, c) == 1 ? nil : String(cString: PQgetvalue(res, r, c)))
            }
            rows.append(row)
        }
        return rows
    }

    func close() {
        if let conn { PQfinish(conn) }
        conn = nil
    }

    deinit { close() }
}

/// Writes a file so that it either appears complete or not at all: temp file beside it, fsync, rename.
public enum AtomicFileWriter {
    public static func write(_ text: String, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        let tmp = dir + "/." + url.lastPathComponent + ".tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o600)  // the file holds password hashes
        guard fd >= 0 else {
            throw GenerateError.output("cannot write \(path): \(String(cString: strerror(errno)))")
        }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        do {
            try handle.write(contentsOf: Data(text.utf8))
            try handle.synchronize()
            try handle.close()
        } catch {
            try? handle.close()
            unlink(tmp)
            throw GenerateError.output("cannot write \(path): \(error.localizedDescription)")
        }
        if rename(tmp, path) != 0 {
            let reason = String(cString: strerror(errno))
            unlink(tmp)
            throw GenerateError.output("cannot write \(path): \(reason)")
        }
    }
}
