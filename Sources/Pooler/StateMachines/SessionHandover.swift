/// An idle client session as one value that can leave the process: what the new pg_doorman of a
/// binary upgrade needs to adopt the client's connection (passed alongside as a descriptor) so that
/// the client notices nothing — its cancel key, its pool, its own session parameters and its
/// prepared statements, the bytes it already sent that the old process read but did not act on.
///
/// Only a session at an idle point travels: no server attached (transaction mode, between
/// transactions), nothing half received, plain TCP or Unix socket (a TLS session's keys cannot leave
/// BoringSSL). The codec is versioned and bounded; `decode` rejects anything malformed or over a
/// limit with an error, never a trap (the bytes come from another process, but a bug there must not
/// crash this one).
struct SessionHandover: Equatable {
    static let magic: UInt32 = 0x5044_4D48  // "PDMH"
    static let version: UInt16 = 1

    /// Limits of one encoded session.
    enum Limit {
        static let text = 64 << 10
        static let parameters = 1_024
        static let statements = 100_000
        static let statementBytes = 64 << 20
        static let pendingInput = 1 << 20
    }

    struct Statement: Equatable {
        var name: String
        var query: String
        var parameterTypes: [UInt32]
    }

    var processID: Int32
    var secretKey: Int32
    /// CLOCK_MONOTONIC nanoseconds of the client's connect (the same clock in both processes).
    var connectedAtUptimeNanos: UInt64
    var database: String
    var user: String
    var applicationName: String
    var peer: String
    var transactionCount: Int
    var queryCount: Int
    /// The client's own session parameters (canonical name → value).
    var parameters: [String: String]
    /// The pool's server values at the client's login (what it follows where it set nothing).
    var baseline: [String: String]
    /// The client uses the extended protocol (its next server is relayed through the rewriter).
    var extendedClient: Bool
    /// Named prepared statements (transaction mode's rewriter).
    var statements: [Statement]
    /// The unnamed statement as its whole Parse message, if any.
    var unnamedParse: [UInt8]?
    /// Bytes the client sent that were read but not yet acted on.
    var pendingInput: [UInt8]

    enum DecodeError: Error, Equatable {
        case truncated
        case badMagic
        case unsupportedVersion(UInt16)
        case overLimit(String)
        case badText
        case trailingBytes
    }

    // MARK: - Encoding

    func encode() -> [UInt8] {
        var w = Writer()
        w.u32(Self.magic)
        w.u16(Self.version)
        w.i32(processID)
        w.i32(secretKey)
        w.u64(connectedAtUptimeNanos)
        for s in [database, user, applicationName, peer] { w.text(s) }
        w.u64(UInt64(max(0, transactionCount)))
        w.u64(UInt64(max(0, queryCount)))
        for map in [parameters, baseline] {
            w.u32(UInt32(map.count))
            for (k, v) in map.sorted(by: { $0.key < $1.key }) {
                w.text(k)
                w.text(v)
            }
        }
        w.u8(extendedClient ? 1 : 0)
        w.u32(UInt32(statements.count))
        for s in statements {
            w.text(s.name)
            w.blob(Array(s.query.utf8))
            w.u16(UInt16(clamping: s.parameterTypes.count))
            for t in s.parameterTypes.prefix(Int(UInt16.max)) { w.u32(t) }
        }
        if let unnamedParse {
            w.u8(1)
            w.blob(unnamedParse)
        } else {
            w.u8(0)
        }
        w.blob(pendingInput)
        return w.bytes
    }

    // MARK: - Decoding

    static func decode(_ bytes: [UInt8]) throws -> SessionHandover {
        var r = Reader(bytes: bytes)
        guard try r.u32() == magic else { throw DecodeError.badMagic }
        let v = try r.u16()
        guard v == version else { throw DecodeError.unsupportedVersion(v) }
        let processID = try r.i32()
        let secretKey = try r.i32()
        let connectedAt = try r.u64()
        let database = try r.text(), user = try r.text(), applicationName = try r.text(), peer = try r.text()
        let transactions = try r.u64(), queries = try r.u64()
        var maps: [[String: String]] = []
        for _ in 0..<2 {
            let n = try r.count(max: UInt64(Limit.parameters), "parameters")
            var map: [String: String] = [:]
            for _ in 0..<n {
                let k = try r.text()
                map[k] = try r.text()
            }
            maps.append(map)
        }
        let extended: Bool
        switch try r.u8() {
        case 0: extended = false
        case 1: extended = true
        default: throw DecodeError.overLimit("extended flag")
        }
        let nStatements = try r.count(max: UInt64(Limit.statements), "statements")
        var statements: [Statement] = []
        var statementBytes = 0
        for _ in 0..<nStatements {
            let name = try r.text()
            let query = try r.blob(max: Limit.statementBytes)
            statementBytes += query.count
            guard statementBytes <= Limit.statementBytes else { throw DecodeError.overLimit("statements") }
            guard let text = String(validating: query, as: UTF8.self) else { throw DecodeError.badText }
            let nTypes = Int(try r.u16())
            var types: [UInt32] = []
            types.reserveCapacity(min(nTypes, r.remaining / 4))
            for _ in 0..<nTypes { types.append(try r.u32()) }
            statements.append(Statement(name: name, query: text, parameterTypes: types))
        }
        let unnamed: [UInt8]?
        switch try r.u8() {
        case 0: unnamed = nil
        case 1: unnamed = try r.blob(max: Limit.statementBytes)
        default: throw DecodeError.overLimit("unnamed flag")
        }
        let pending = try r.blob(max: Limit.pendingInput)
        guard r.remaining == 0 else { throw DecodeError.trailingBytes }
        return SessionHandover(
            processID: processID, secretKey: secretKey, connectedAtUptimeNanos: connectedAt, database: database,
            user: user, applicationName: applicationName, peer: peer, transactionCount: Int(clamping: transactions),
            queryCount: Int(clamping: queries), parameters: maps[0], baseline: maps[1], extendedClient: extended,
            statements: statements, unnamedParse: unnamed,
            pendingInput: pending)
    }

    // MARK: - Byte helpers (big-endian)

    private struct Writer {
        var bytes: [UInt8] = []
        mutating func u8(_ v: UInt8) { bytes.append(v) }
        mutating func u16(_ v: UInt16) { bytes.append(UInt8(v >> 8)); bytes.append(UInt8(v & 0xff)) }
        mutating func u32(_ v: UInt32) { for s in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8((v >> UInt32(s)) & 0xff)) } }
        mutating func u64(_ v: UInt64) { for s in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8((v >> UInt64(s)) & 0xff)) } }
        mutating func i32(_ v: Int32) { u32(UInt32(bitPattern: v)) }
        /// Text longer than the limit is cut (it is never longer in practice: names and values).
        mutating func text(_ s: String) { blob(Array(s.utf8.prefix(Limit.text))) }
        mutating func blob(_ b: [UInt8]) {
            u32(UInt32(clamping: b.count))
            bytes.append(contentsOf: b)
        }
    }

    private struct Reader {
        let bytes: [UInt8]
        var at = 0
        var remaining: Int { bytes.count - at }

        mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
            guard n >= 0, n <= remaining else { throw DecodeError.truncated }
            defer { at += n }
            return bytes[at..<(at + n)]
        }
        mutating func uint(_ size: Int) throws -> UInt64 {
            try take(size).reduce(0) { ($0 << 8) | UInt64($1) }
        }
        mutating func u8() throws -> UInt8 { UInt8(try uint(1)) }
        mutating func u16() throws -> UInt16 { UInt16(try uint(2)) }
        mutating func u32() throws -> UInt32 { UInt32(try uint(4)) }
        mutating func u64() throws -> UInt64 { try uint(8) }
        mutating func i32() throws -> Int32 { Int32(bitPattern: try u32()) }
        /// An element count (u32), at most `max`.
        mutating func count(max: UInt64, _ what: String) throws -> Int {
            let n = UInt64(try u32())
            guard n <= max else { throw DecodeError.overLimit(what) }
            return Int(n)
        }
        mutating func blob(max: Int) throws -> [UInt8] {
            let n = Int(try u32())
            guard n <= max else { throw DecodeError.overLimit("blob of \(n) bytes") }
            return Array(try take(n))
        }
        mutating func text() throws -> String {
            let b = try blob(max: Limit.text)
            guard let s = String(validating: b, as: UTF8.self) else { throw DecodeError.badText }
            return s
        }
    }
}
