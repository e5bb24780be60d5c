// Value grammars of config-spec §2: durations, byte sizes, octal modes, TLS modes, and the human-readable
// formatting used by emitters.

public struct GrammarError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

public enum ValueGrammar {
    static let durationUnits: [(String, UInt64)] = [
        ("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000),
    ]
    static let byteUnits: [(String, UInt64)] = [
        ("gb", 1 << 30), ("g", 1 << 30), ("mb", 1 << 20), ("m", 1 << 20), ("kb", 1 << 10), ("k", 1 << 10), ("b", 1),
    ]

    /// `"5s"`, `"100ms"`, `"1m"`, `"2h"`, `"1d"`, `"3000"` → milliseconds. Case-insensitive suffix, spaces around the
    /// number allowed; sign, decimals, unknown suffix and overflow are rejected.
    public static func parseDuration(_ text: String) throws -> UInt64 {
        try parseSuffixed(text, units: durationUnits, what: "duration",
                          format: "invalid duration format: '\(text)'. Expected a number or a string with suffix "
                              + "(ms, s, m, h, d)")
    }

    /// `"256MB"`, `"1M"`, `"64KB"`, `"1G"`, `"5B"`, `"1024"` → bytes (binary multiples).
    public static func parseByteSize(_ text: String) throws -> UInt64 {
        try parseSuffixed(text, units: byteUnits, what: "byte size",
                          format: "invalid byte size format: '\(text)'. Expected a number or a string with suffix "
                              + "(B, K, KB, M, MB, G, GB)")
    }

    private static func parseSuffixed(_ text: String, units: [(String, UInt64)], what: String,
                                      format: String) throws -> UInt64 {
        let trimmed = text.trimmingSpaces()
        if let plain = parseUnsigned(trimmed) { return plain }
        let lower = trimmed.lowercased()
        for (suffix, factor) in units where lower.hasSuffix(suffix) {
            let numberText = String(trimmed.dropLast(suffix.count)).trimmingSpaces()
            guard let number = parseUnsigned(numberText) else {
                // The reference's wording for a bad number part.
                throw GrammarError("invalid number in \(what): '\(numberText)'")
            }
            let (product, overflow) = number.multipliedReportingOverflow(by: factor)
            if overflow {
                throw GrammarError("\(what) '\(text)' is too large (maximum is \(UInt64.max / factor)\(suffix))")
            }
            return product
        }
        if isAllDigits(trimmed) && !trimmed.isEmpty {
            throw GrammarError("\(what) '\(text)' is too large (maximum is \(UInt64.max))")
        }
        throw GrammarError(format)
    }

    static func isAllDigits(_ s: String) -> Bool { s.unicodeScalars.allSatisfy { $0 >= "0" && $0 <= "9" } }

    /// Decimal digits only (no sign), nil on overflow or empty.
    static func parseUnsigned(_ s: String) -> UInt64? {
        guard !s.isEmpty, isAllDigits(s) else { return nil }
        return UInt64(s)
    }

    /// `unix_socket_mode`: optional `0o` prefix, base 8, bits within 0o777.
    public static func parseOctalMode(_ raw: String) throws -> UInt32 {
        var text = raw.trimmingSpaces()
        if text.isEmpty { throw GrammarError("general.unix_socket_mode must not be empty") }
        if text.hasPrefix("0o") || text.hasPrefix("0O") { text.removeFirst(2) }
        guard !text.isEmpty, let value = UInt32(text, radix: 8) else {
            throw GrammarError("general.unix_socket_mode \"\(raw)\" is not a valid octal number: invalid digit found "
                + "in string")
        }
        if value & ~0o777 != 0 {
            throw GrammarError("general.unix_socket_mode \"\(raw)\" sets bits outside 0o777; only standard rwx "
                + "permissions are allowed")
        }
        return value
    }

    /// Client-facing `tls_mode` values (case-sensitive, like the reference).
    public static let clientTlsModes = ["allow", "disable", "require", "verify-full"]
    /// Server-facing `server_tls_mode` values (case-insensitive).
    public static let serverTlsModes = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]

    public static func isValidServerTlsMode(_ s: String) -> Bool { serverTlsModes.contains(s.lowercased()) }

    // MARK: - Human formatting (for emitters)

    /// Milliseconds as the largest exact unit: 3000 → "3s", 600000 → "10m", 1500 → "1500ms", 0 → "0ms".
    public static func formatDuration(_ ms: UInt64) -> String {
        if ms == 0 { return "0ms" }
        for (suffix, factor) in [("d", UInt64(86_400_000)), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)]
        where ms % factor == 0 {
            return "\(ms / factor)\(suffix)"
        }
        return "\(ms)ms"
    }

    /// Bytes as the largest exact binary unit: 1048576 → "1MB", 268435456 → "256MB", 1000 → "1000B".
    public static func formatByteSize(_ bytes: UInt64) -> String {
        if bytes == 0 { return "0B" }
        for (suffix, factor) in [("GB", UInt64(1) << 30), ("MB", 1 << 20), ("KB", 1 << 10)] where bytes % factor == 0 {
            return "\(bytes / factor)\(suffix)"
        }
        return "\(bytes)B"
    }
}

/// Startup parameter (GUC) rules shared by validation and resolution (config-spec §4 2a).
public enum StartupParameters {
    static let keepSpelling = ["client_encoding", "DateStyle", "IntervalStyle", "TimeZone",
                               "standard_conforming_strings", "application_name"]
    static let reserved = ["user", "database", "replication", "options", "role", "session_authorization"]
    /// 10000 (PG StartupMessage cap) − 512.
    public static let operatorBudget = 9488
    public static let startupMessageCap = 10000

    /// PG's canonical spelling for known mixed-case GUCs, else lowercase.
    public static func canonicalName(_ key: String) -> String {
        let lower = key.lowercased()
        if let known = keepSpelling.first(where: { $0.lowercased() == lower }) { return known }
        return lower
    }

    static func isValidName(_ key: String) -> Bool {
        guard let first = key.unicodeScalars.first else { return false }
        let isAlpha: (Unicode.Scalar) -> Bool = { ($0 >= "a" && $0 <= "z") || ($0 >= "A" && $0 <= "Z") || $0 == "_" }
        guard isAlpha(first) else { return false }
        return key.unicodeScalars.dropFirst().allSatisfy { isAlpha($0) || ($0 >= "0" && $0 <= "9") || $0 == "." }
    }

    static func serializedSize(_ map: [String: String]) -> Int {
        map.reduce(0) { $0 + $1.key.utf8.count + 1 + $1.value.utf8.count + 1 }
    }

    /// Problems of one map; `scope` prefixes messages.
    public static func problems(_ map: [String: String], scope: String) -> [String] {
        var out: [String] = []
        var byCanon: [String: String] = [:]
        for key in map.keys.sorted() {
            let value = map[key]!
            if key.isEmpty { out.append("\(scope): empty key"); continue }
            if reserved.contains(key.lowercased()) {
                out.append("\(scope): '\(key)' is reserved and managed by pg_doorman"); continue
            }
            if key.lowercased().hasPrefix("_pq_.") {
                out.append("\(scope): '\(key)' uses the reserved '_pq_.' prefix"); continue
            }
            if !isValidName(key) {
                out.append("\(scope): '\(key)' is not a valid GUC name (expected [A-Za-z_][A-Za-z0-9_.]*)"); continue
            }
            if value.utf8.contains(0) { out.append("\(scope): value for '\(key)' contains a null byte") }
            let canon = canonicalName(key)
            if let other = byCanon[canon] {
                out.append("\(scope): '\(other)' and '\(key)' both refer to PG GUC '\(canon)'; keep one")
            } else {
                byCanon[canon] = key
            }
        }
        let size = serializedSize(map)
        if size > operatorBudget {
            out.append("\(scope): serialized size \(size) bytes exceeds operator budget \(operatorBudget) (PG "
                + "StartupMessage cap is \(startupMessageCap) bytes; reduce general or pool startup_parameters)")
        }
        return out
    }
}
