import NIOConcurrencyHelpers
import NIOCore

/// One statement known to a pool: its server-side name `DOORMAN_<n>` and the Parse message that
/// creates it on a backend. Immutable, shared by every client that parsed the same content.
public final class PreparedStatement: @unchecked Sendable {
    /// Server-side name, `DOORMAN_<n>`.
    public let name: String
    /// `name` as UTF-8 bytes with its NUL terminator (what rewritten Bind/Describe messages carry).
    public let nameCString: [UInt8]
    /// The query text bytes exactly as the client sent them.
    public let query: [UInt8]
    /// Parameter type OIDs exactly as the client sent them (0 = unspecified).
    public let parameterTypes: [UInt32]
    /// Complete Parse message (type byte, length, body) naming `name`; replayed byte for byte.
    public let parseMessage: ByteBuffer

    init(name: String, query: [UInt8], parameterTypes: [UInt32]) {
        self.name = name
        self.nameCString = Array(name.utf8) + [0]
        self.query = query
        self.parameterTypes = parameterTypes
        self.parseMessage = Self.encodeParse(name: Array(name.utf8), query: query, parameterTypes: parameterTypes)
    }

    /// Parse: 'P', Int32 len, name\0, query\0, Int16 n, n × Int32 OID.
    static func encodeParse(name: [UInt8], query: [UInt8], parameterTypes: [UInt32]) -> ByteBuffer {
        let bodyLength = name.count + 1 + query.count + 1 + 2 + 4 * parameterTypes.count
        var buf = ByteBufferAllocator().buffer(capacity: 5 + bodyLength)
        buf.writeInteger(UInt8(ascii: "P"))
        buf.writeInteger(Int32(4 + bodyLength))
        buf.writeBytes(name)
        buf.writeInteger(UInt8(0))
        buf.writeBytes(query)
        buf.writeInteger(UInt8(0))
        buf.writeInteger(UInt16(truncatingIfNeeded: parameterTypes.count))
        for oid in parameterTypes { buf.writeInteger(oid) }
        return buf
    }
}

/// What identifies a statement's content: query text, parameter types and an optional context
/// string (for instance a digest of planner-relevant GUCs such as search_path) supplied per client.
struct StatementKey: Hashable {
    var query: [UInt8]
    var parameterTypes: [UInt32]
    var context: String
}

/// Per-pool cache, content → `PreparedStatement`. Shared by all clients of a pool across event
/// loops, so every method takes a lock. Bounded by `capacity` (`prepared_statements_cache_size`,
/// <= 0 means unbounded) with least-recently-used eviction. Eviction only forgets the mapping:
/// clients keep their `PreparedStatement` references and servers keep the statements they hold,
/// so a later Parse of the same content simply gets a fresh `DOORMAN_<n>`.
/// Numbers for `DOORMAN_<n>` names. The pooler shares one across all pools so that a name never
/// means two different statements anywhere in the process (a client that moves to a new pool after
/// RELOAD keeps its old names).
public final class StatementNameCounter: @unchecked Sendable {
    private let lock = NIOLock()
    private var value: UInt64 = 0
    public static let shared = StatementNameCounter()
    public init() {}
    func next() -> UInt64 { lock.withLock { value &+= 1; return value } }
}

public final class PreparedStatementCache: @unchecked Sendable {
    private let lock = NIOLock()
    private var map: LRUMap<StatementKey, PreparedStatement>
    private let counter: StatementNameCounter
    private var _hits: UInt64 = 0
    private var _misses: UInt64 = 0
    private let namePrefix: String

    /// - Parameters:
    ///   - capacity: maximum number of entries; <= 0 means unbounded.
    ///   - namePrefix: prefix of server-side names (`DOORMAN_`).
    public init(capacity: Int, namePrefix: String = "DOORMAN_", counter: StatementNameCounter = StatementNameCounter()) {
        self.map = LRUMap(capacity: capacity)
        self.namePrefix = namePrefix
        self.counter = counter
    }

    /// The statement for this content, created (with the next `DOORMAN_<n>`) when absent.
    func statement(query: [UInt8], parameterTypes: [UInt32], context: String) -> PreparedStatement {
        let key = StatementKey(query: query, parameterTypes: parameterTypes, context: context)
        return lock.withLock {
            if let hit = map.get(key) {
                _hits &+= 1
                return hit
            }
            _misses &+= 1
            let stmt = PreparedStatement(name: "\(namePrefix)\(counter.next())", query: query,
                                         parameterTypes: parameterTypes)
            map.set(key, stmt)
            return stmt
        }
    }

    /// Number of cached statements.
    public var count: Int { lock.withLock { map.count } }
    /// Lookups that found an existing statement / that created one.
    public var hits: UInt64 { lock.withLock { _hits } }
    public var misses: UInt64 { lock.withLock { _misses } }

    /// Cached statements, most recently used first (SHOW PREPARED_STATEMENTS).
    public var statements: [PreparedStatement] { lock.withLock { map.valuesNewestFirst } }

    public func removeAll() { lock.withLock { map.removeAll() } }
}
