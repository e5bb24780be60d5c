import Foundation

// pg_hba support: a small IP/CIDR parser, the rule parser (with line-numbered problems) and a pure evaluator.

/// An IPv4 (4 bytes) or IPv6 (16 bytes) address.
public struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// Parses dotted IPv4 or RFC 4291 IPv6 text (`::`, embedded IPv4 tail). Zone ids are rejected.
    public init?(_ text: String) {
        if let v4 = IPAddress.parseV4(Substring(text)) { bytes = v4; return }
        if let v6 = IPAddress.parseV6(text) { bytes = v6; return }
        return nil
    }

    public var isV4: Bool { bytes.count == 4 }

    /// `::ffff:a.b.c.d` → `a.b.c.d`, else self.
    public var unmappedV4: IPAddress {
        if bytes.count == 16, bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xff, bytes[11] == 0xff {
            return IPAddress(bytes: Array(bytes[12..<16]))!
        }
        return self
    }

    public var description: String {
        if isV4 { return bytes.map(String.init).joined(separator: ".") }
        var groups: [String] = []
        for i in stride(from: 0, to: 16, by: 2) { groups.append(String(UInt16(bytes[i]) << 8 | UInt16(bytes[i + 1]), radix: 16)) }
        return groups.joined(separator: ":")
    }

    static func parseV4(_ text: Substring) -> [UInt8]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var out: [UInt8] = []
        for p in parts {
            guard !p.isEmpty, p.count <= 3, p.unicodeScalars.allSatisfy({ $0 >= "0" && $0 <= "9" }),
                  let v = UInt8(p) else { return nil }
            out.append(v)
        }
        return out
    }

    static func parseV6(_ text: String) -> [UInt8]? {
        guard text.contains(":") else { return nil }
        let halves = text.components(separatedBy: "::")
        guard halves.count <= 2 else { return nil }
        func groups(_ s: String) -> [UInt8]? {
            if s.isEmpty { return [] }
            var out: [UInt8] = []
            let parts = s.split(separator: ":", omittingEmptySubsequences: false)
            for (i, p) in parts.enumerated() {
                if i == parts.count - 1, p.contains(".") {
                    guard let v4 = parseV4(p) else { return nil }
                    out += v4
                    continue
                }
                guard !p.isEmpty, p.count <= 4, let v = UInt16(p, radix: 16) else { return nil }
                out += [UInt8(v >> 8), UInt8(v & 0xff)]
            }
            return out
        }
        guard let head = groups(halves[0]) else { return nil }
        if halves.count == 1 { return head.count == 16 ? head : nil }
        guard let tail = groups(halves[1]), head.count + tail.count <= 14 else { return nil }
        return head + [UInt8](repeating: 0, count: 16 - head.count - tail.count) + tail
    }
}

/// An IP network `address/prefix`.
public struct IPNetwork: Sendable, Hashable, CustomStringConvertible {
    public let address: IPAddress
    public let prefixLength: Int

    public init?(address: IPAddress, prefixLength: Int) {
        guard prefixLength >= 0, prefixLength <= address.bytes.count * 8 else { return nil }
        self.address = address
        self.prefixLength = prefixLength
    }

    /// Strict CIDR (`10.0.0.0/8`, `::1/128`); a bare IP is rejected (reference rule for `general.hba`).
    public init?(cidr text: String) {
        let parts = text.trimmingSpaces().split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let addr = IPAddress(String(parts[0])),
              !parts[1].isEmpty, parts[1].unicodeScalars.allSatisfy({ $0 >= "0" && $0 <= "9" }),
              let len = Int(parts[1]) else { return nil }
        self.init(address: addr, prefixLength: len)
    }

    /// CIDR, or a bare IP taken as /32 or /128 (PostgreSQL pg_hba behaviour).
    public init?(cidrOrAddress text: String) {
        if text.contains("/") { self.init(cidr: text); return }
        guard let addr = IPAddress(text) else { return nil }
        self.init(address: addr, prefixLength: addr.bytes.count * 8)
    }

    public func contains(_ candidate: IPAddress) -> Bool {
        var other = candidate
        if other.bytes.count != address.bytes.count {
            other = other.unmappedV4
            guard other.bytes.count == address.bytes.count else { return false }
        }
        var remaining = prefixLength
        for i in 0..<address.bytes.count where remaining > 0 {
            let bits = min(8, remaining)
            let mask: UInt8 = bits == 8 ? 0xff : ~(0xff >> UInt8(bits))
            if address.bytes[i] & mask != other.bytes[i] & mask { return false }
            remaining -= bits
        }
        return true
    }

    public var description: String { "\(address)/\(prefixLength)" }
}

/// Where a client connection comes from.
public enum HbaTransport: Sendable, Equatable {
    case unix
    case tcp(address: IPAddress, tls: Bool)

    /// Convenience: `.tcp(addressString:tls:)`; nil if the string is not an IP.
    public static func tcp(addressString: String, tls: Bool) -> HbaTransport? {
        IPAddress(addressString).map { .tcp(address: $0, tls: tls) }
    }
}

public enum HbaConnectionType: String, Sendable, Equatable {
    case local, host, hostssl, hostnossl
}

public enum HbaMethod: Sendable, Equatable {
    case trust, md5, scramSha256, reject
    /// A PostgreSQL method pg_doorman does not implement (never allows).
    case other(String)

    public var name: String {
        switch self {
        case .trust: return "trust"
        case .md5: return "md5"
        case .scramSha256: return "scram-sha-256"
        case .reject: return "reject"
        case .other(let s): return s
        }
    }
}

/// Address column of a host* rule.
public enum HbaAddress: Sendable, Equatable {
    case all
    case network(IPNetwork)

    func matches(_ ip: IPAddress) -> Bool {
        switch self {
        case .all: return true
        case .network(let net): return net.contains(ip)
        }
    }
}

public struct HbaRule: Sendable, Equatable {
    public var type: HbaConnectionType
    /// Names; `all` means any (stored lowercased as "all").
    public var databases: [String]
    public var users: [String]
    /// nil for `local`.
    public var address: HbaAddress?
    public var method: HbaMethod
    /// 1-based line in the hba text.
    public var line: Int

    public init(type: HbaConnectionType, databases: [String], users: [String], address: HbaAddress?,
                method: HbaMethod, line: Int) {
        self.type = type
        self.databases = databases
        self.users = users
        self.address = address
        self.method = method
        self.line = line
    }

    func matchesNames(database: String, user: String) -> Bool {
        (databases.contains("all") || databases.contains(database)) && (users.contains("all") || users.contains(user))
    }

    func matchesTransport(_ transport: HbaTransport) -> Bool {
        switch (type, transport) {
        case (.local, .unix): return true
        case (.local, .tcp), (.host, .unix), (.hostssl, .unix), (.hostnossl, .unix): return false
        case (.host, .tcp(let ip, _)): return address?.matches(ip) ?? false
        case (.hostssl, .tcp(let ip, let tls)): return tls && (address?.matches(ip) ?? false)
        case (.hostnossl, .tcp(let ip, let tls)): return !tls && (address?.matches(ip) ?? false)
        }
    }
}

/// A problem found while parsing hba text.
public struct HbaProblem: Sendable, Equatable {
    public var line: Int
    public var message: String
    public var isWarning: Bool
}

/// `general.pg_hba`: the text (inline, `{content}` or read from `{path}`) and its parsed rules.
public struct PgHba: Sendable, Equatable {
    public var content: String
    /// Where the rules came from when `{path: ...}` was used (informational; not part of equality).
    public var path: String?
    public var rules: [HbaRule]

    public init(content: String, path: String? = nil) {
        self.content = content
        self.path = path
        self.rules = PgHba.parse(content).rules
    }

    public static func == (lhs: PgHba, rhs: PgHba) -> Bool { lhs.content == rhs.content && lhs.rules == rhs.rules }

    /// PostgreSQL semantics: the first rule whose type/address/database/user match decides; nil if none.
    public func match(transport: HbaTransport, database: String, user: String) -> HbaRule? {
        PgHba.match(rules, transport: transport, database: database, user: user)
    }

    public static func match(_ rules: [HbaRule], transport: HbaTransport, database: String,
                             user: String) -> HbaRule? {
        rules.first { $0.matchesTransport(transport) && $0.matchesNames(database: database, user: user) }
    }

    static let knownOtherMethods = ["password", "gss", "sspi", "ident", "peer", "ldap", "radius", "cert", "pam",
                                    "bsd", "oauth"]

    /// Parses pg_hba.conf text. Bad lines are reported (and left out of `rules`), never silently skipped.
    public static func parse(_ text: String) -> (rules: [HbaRule], problems: [HbaProblem]) {
        var rules: [HbaRule] = []
        var problems: [HbaProblem] = []
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        for (index, rawLine) in lines.enumerated() {
            let lineNo = index + 1
            var line = String(rawLine)
            if let hash = line.firstIndex(of: "#") { line = String(line[..<hash]) }
            let tokens = tokenize(line)
            if tokens.isEmpty { continue }
            func bad(_ m: String) { problems.append(HbaProblem(line: lineNo, message: m, isWarning: false)) }
            guard let type = HbaConnectionType(rawValue: tokens[0].lowercased()) else {
                bad("unknown connection type '\(tokens[0])' (expected local, host, hostssl or hostnossl)")
                continue
            }
            let needed = type == .local ? 4 : 5
            guard tokens.count >= needed else {
                bad(type == .local ? "expected 'local DATABASE USER METHOD'"
                    : "expected '\(type.rawValue) DATABASE USER ADDRESS METHOD'")
                continue
            }
            let databases = splitList(tokens[1])
            let users = splitList(tokens[2])
            if databases.isEmpty || users.isEmpty { bad("empty database or user list"); continue }
            var address: HbaAddress? = nil
            if type != .local {
                let a = tokens[3]
                if a.lowercased() == "all" {
                    address = .all
                } else if let net = IPNetwork(cidrOrAddress: a) {
                    address = .network(net)
                } else {
                    bad("invalid address '\(a)' (expected an IP network like 10.0.0.0/8, an IP address or all)")
                    continue
                }
            }
            let methodText = tokens[needed - 1]
            let method: HbaMethod
            switch methodText.lowercased() {
            case "trust": method = .trust
            case "md5": method = .md5
            case "scram-sha-256", "scram_sha_256", "scramsha256": method = .scramSha256
            case "reject": method = .reject
            case let m where knownOtherMethods.contains(m):
                method = .other(m)
                problems.append(HbaProblem(line: lineNo, message: "authentication method '\(methodText)' is not "
                    + "supported by pg_doorman; this rule never allows a connection", isWarning: true))
            default:
                bad("unknown authentication method '\(methodText)'")
                continue
            }
            rules.append(HbaRule(type: type, databases: databases, users: users, address: address, method: method,
                                 line: lineNo))
        }
        return (rules, problems)
    }

    /// `all` (any case) → "all"; comma-separated names otherwise (quoted names keep case).
    static func splitList(_ token: String) -> [String] {
        token.split(separator: ",").map { part in
            let s = String(part)
            return s.lowercased() == "all" ? "all" : s
        }
    }

    /// Whitespace tokens with `"…"` quoting (no escapes).
    static func tokenize(_ line: String) -> [String] {
        var tokens: [String] = []
        var current = ""
        var inQuotes = false
        var has = false
        for ch in line {
            if ch == "\"" { inQuotes.toggle(); has = true; continue }
            if !inQuotes && (ch == " " || ch == "\t" || ch == "\r") {
                if has { tokens.append(current); current = ""; has = false }
                continue
            }
            current.append(ch)
            has = true
        }
        if has { tokens.append(current) }
        return tokens
    }
}
