import NIOCore

/// Which idle server connections one maintenance cycle (every `retain_connections_time`) closes.
/// Pure: the pools offer candidates, this picks at most `retain_connections_max` of them across
/// all pools (0 = all), oldest connection first.
enum RetainPlanner {
    enum Reason: Equatable {
        /// Past `server_lifetime` (or retired by RECONNECT).
        case lifetime
        /// Idle past `idle_timeout`, above `min_pool_size`.
        case idle
        /// A reserve connection (beyond `pool_size` or `max_db_connections`) no client needs now.
        case reserve
    }

    struct Candidate<Item> {
        var item: Item
        /// Identifies the connection (one may be offered for two reasons).
        var id: ObjectIdentifier
        var createdAt: NIODeadline
        var reason: Reason
    }

    static func plan<Item>(_ candidates: [Candidate<Item>], max: Int) -> [Candidate<Item>] {
        var seen = Set<ObjectIdentifier>()
        let unique = candidates.enumerated()
            .sorted { $0.element.createdAt != $1.element.createdAt
                ? $0.element.createdAt < $1.element.createdAt : $0.offset < $1.offset }
            .map { $0.element }
            .filter { seen.insert($0.id).inserted }
        return max > 0 ? Array(unique.prefix(max)) : unique
    }
}
