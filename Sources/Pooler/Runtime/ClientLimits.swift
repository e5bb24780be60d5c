/// `max_db_client_connections` and `max_user_client_connections`: how many logged-in clients each
/// database (pool) and each user name has, and whether one more may log in. Pure bookkeeping; the
/// runtime keeps it under its lock and calls `admit` once per login and `leave` once per admitted
/// client that ends.
struct ClientLimits {
    /// The limits in force (0 = none); RELOAD replaces them, counts stay.
    struct Settings: Equatable, Sendable {
        var defaultPerDatabase = 0
        /// Per-pool overrides of `defaultPerDatabase`.
        var perDatabase: [String: Int] = [:]
        var perUser = 0

        func limit(database: String) -> Int { perDatabase[database] ?? defaultPerDatabase }
    }

    enum Refusal: Equatable {
        case database(limit: Int)
        case user(limit: Int)

        /// What the refused client is told (53300, as PostgreSQL's "too many connections").
        func message(database: String, user: String) -> String {
            switch self {
            case .database(let n):
                return "no more connections allowed for database \"\(database)\" (max_db_client_connections = \(n))"
            case .user(let n):
                return "no more connections allowed for user \"\(user)\" (max_user_client_connections = \(n))"
            }
        }
    }

    var settings = Settings()
    private(set) var perDatabase: [String: Int] = [:]
    private(set) var perUser: [String: Int] = [:]

    /// Counts the client in and returns nil, or returns why it may not log in (nothing counted).
    /// (One hash of each name per login and per leave where no per-database limit is set: the
    /// counts are read and written through one dictionary access each.)
    mutating func admit(database: String, user: String) -> Refusal? {
        let dbLimit = settings.perDatabase.isEmpty ? settings.defaultPerDatabase : settings.limit(database: database)
        if dbLimit > 0, (perDatabase[database] ?? 0) >= dbLimit { return .database(limit: dbLimit) }
        if settings.perUser > 0, (perUser[user] ?? 0) >= settings.perUser { return .user(limit: settings.perUser) }
        perDatabase[database, default: 0] += 1
        perUser[user, default: 0] += 1
        return nil
    }

    /// An admitted client ended.
    mutating func leave(database: String, user: String) {
        Self.decrement(&perDatabase, database)
        Self.decrement(&perUser, user)
    }

    private static func decrement(_ counts: inout [String: Int], _ key: String) {
        guard let i = counts.index(forKey: key) else { return }
        if counts.values[i] > 1 { counts.values[i] -= 1 } else { counts.remove(at: i) }
    }
}
