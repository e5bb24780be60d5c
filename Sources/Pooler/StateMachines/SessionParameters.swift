/// A client's own session parameters (GUCs), and what a server must run to match them.
///
/// A client's parameters are the pool's server values (what the first server reported at login),
/// overlaid with the client's startup keys and, later, with the values its own SETs make the server
/// report. Each server connection's current values are tracked the same way (its ParameterStatus
/// messages, plus what the pooler set). When a client gets a server whose values differ, the pooler
/// sends one `set_config` query ahead of the client's first message and swallows its replies.
///
/// Pure: names and values in, SQL text out.
public struct SessionParameters: Equatable, Sendable {
    /// Canonical name → value, for the parameters the client set (at startup or by SET).
    public private(set) var values: [String: String] = [:]

    public init(_ values: [String: String] = [:]) {
        self.values = values
    }

    public var isEmpty: Bool { values.isEmpty }

    public subscript(name: String) -> String? {
        get { values[name] }
        set { values[name] = newValue }
    }

    // MARK: - Names

    /// Parameters PostgreSQL reports with ParameterStatus whenever they change, and that a client
    /// may set: their current value on a server is always known from its messages.
    public static let reportedSettable: Set<String> = [
        "application_name", "client_encoding", "DateStyle", "IntervalStyle", "TimeZone",
        "standard_conforming_strings",
    ]

    /// PostgreSQL's spelling of a parameter name (GUC names are case-insensitive).
    public static func canonicalName(_ name: String) -> String {
        // Most names arrive in lower case already: no Unicode lowercasing then.
        let lower = name.utf8.contains(where: { $0 >= 0x41 && $0 <= 0x5A || $0 >= 0x80 }) ? name.lowercased() : name
        switch lower {
        case "datestyle": return "DateStyle"
        case "intervalstyle": return "IntervalStyle"
        case "timezone": return "TimeZone"
        default: return lower
        }
    }

    /// Startup keys that are not session parameters of a pooled connection, or that must not be
    /// carried to a shared server: dropped, as the reference pooler does (a client may not make
    /// itself superuser or pick another role, and transaction characteristics are per transaction).
    public static let forbidden: Set<String> = [
        "is_superuser", "session_authorization", "server_version", "server_version_num", "server_encoding",
        "integer_datetimes", "in_hot_standby", "session_user", "current_user", "block_size", "wal_block_size",
        "wal_segment_size", "max_index_keys", "max_identifier_length", "max_function_args", "data_checksums",
        "data_directory_mode", "lc_collate", "lc_ctype", "transaction_isolation", "transaction_read_only",
        "transaction_deferrable", "role",
    ]

    // MARK: - From the startup packet

    /// The client's parameters from its StartupMessage: every key except the protocol's own
    /// (`user`, `database`, `replication`, `_pq_.*`) and the forbidden ones, plus the `-c name=value`
    /// / `--name=value` switches of `options`, which come first (a key of its own wins, as in
    /// PostgreSQL). Names are canonical. `pinned`: names the operator's startup_parameters fix.
    public static func fromStartup(_ startup: [String: String], pinned: Set<String> = []) -> SessionParameters {
        // (A few keys per login: each is looked at once, no pass over the forbidden list.)
        var out: [String: String] = [:]
        func take(_ key: String, _ value: String) {
            let name = canonicalName(key)
            guard !forbidden.contains(name), pinned.isEmpty || !pinned.contains(name) else { return }
            out[name] = value
        }
        if let options = startup["options"] {
            for (name, value) in parseOptions(options) { take(name, value) }
        }
        for (key, value) in startup {
            switch key {
            case "user", "database", "replication", "options": continue
            default:
                if key.hasPrefix("_pq_.") { continue }
                take(key, value)
            }
        }
        return SessionParameters(out)
    }

    /// Parses libpq's `options`: switches separated by spaces, a backslash escaping the next
    /// character; `-c name=value`, `-cname=value` and `--name=value` set parameters (a `-` in the
    /// name stands for `_`, as in PostgreSQL). Other switches are ignored.
    public static func parseOptions(_ options: String) -> [(String, String)] {
        var words: [String] = []
        var current = ""
        var escaped = false
        var inWord = false
        for ch in options {
            if escaped {
                current.append(ch)
                escaped = false
                inWord = true
            } else if ch == "\\" {
                escaped = true
                inWord = true
            } else if ch == " " || ch == "\t" || ch == "\n" {
                if inWord { words.append(current) }
                current = ""
                inWord = false
            } else {
                current.append(ch)
                inWord = true
            }
        }
        if inWord { words.append(current) }
        var out: [(String, String)] = []
        var i = 0
        func assignment(_ text: Substring) -> (String, String)? {
            guard let eq = text.firstIndex(of: "="), eq != text.startIndex else { return nil }
            let name = text[..<eq].replacingOccurrences(of: "-", with: "_")
            return (name, String(text[text.index(after: eq)...]))
        }
        while i < words.count {
            let w = words[i]
            if w == "-c", i + 1 < words.count {
                if let a = assignment(Substring(words[i + 1])) { out.append(a) }
                i += 2
                continue
            }
            if w.hasPrefix("--") {
                if let a = assignment(w.dropFirst(2)) { out.append(a) }
            } else if w.hasPrefix("-c") {
                if let a = assignment(w.dropFirst(2)) { out.append(a) }
            }
            i += 1
        }
        return out
    }

    // MARK: - Matching a server

    /// One parameter a server must change: set to `value`, or reset to its default when nil.
    public struct Change: Equatable, Sendable {
        public var name: String
        public var value: String?
    }

    /// What `server` must change so that its session matches this client's: every parameter the
    /// client set whose value differs, every reported parameter the client did not set that differs
    /// from the pool's value (`baseline`), and every unreported parameter the pooler set on the
    /// server that this client did not ask for (reset; what the server reported at login is its
    /// own and never reset). Sorted by name (deterministic SQL).
    public func changes(server: [String: String], baseline: [String: String]) -> [Change] {
        var out: [Change] = []
        for (name, value) in values where server[name] != value {
            out.append(Change(name: name, value: value))
        }
        for name in Self.reportedSettable where values[name] == nil {
            if let want = baseline[name], server[name] != want {
                out.append(Change(name: name, value: want))
            }
        }
        for name in server.keys where values[name] == nil && baseline[name] == nil && !Self.reportedSettable.contains(name) {
            out.append(Change(name: name, value: nil))
        }
        return out.sorted { $0.name < $1.name }
    }

    /// The query that applies `changes`: one `SELECT set_config(...)` (which takes the value as the
    /// startup packet gives it, lists included) and a `RESET` per parameter to reset.
    public static func query(for changes: [Change]) -> String {
        let sets = changes.compactMap { c in c.value.map { "pg_catalog.set_config(\(literal(c.name)), \(literal($0)), false)" } }
        var statements: [String] = []
        if !sets.isEmpty { statements.append("SELECT " + sets.joined(separator: ", ")) }
        for c in changes where c.value == nil { statements.append("RESET " + identifier(c.name)) }
        return statements.joined(separator: "; ")
    }

    /// A string literal that reads the same whatever standard_conforming_strings says (E'' form).
    static func literal(_ s: String) -> String {
        var out = "E'"
        for ch in s.unicodeScalars {
            switch ch {
            case "'": out += "''"
            case "\\": out += "\\\\"
            case "\0": continue
            default: out.unicodeScalars.append(ch)
            }
        }
        return out + "'"
    }

    /// A quoted identifier.
    static func identifier(_ s: String) -> String {
        "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// Recognises `SET [SESSION] name {TO | =} value` at the start of a statement's text (`p`:
    /// its first bytes; `complete`: they are the whole text). Returns the name (canonical) and the
    /// value as set_config takes it (quotes removed), or nil for anything else: SET LOCAL (the
    /// transaction's only), `DEFAULT`, several statements, or a text cut short before its end.
    public static func parseSet(_ p: UnsafeRawBufferPointer, complete: Bool) -> (String, String)? {
        var i = 0
        let n = p.firstIndex(of: 0) ?? p.count
        let textComplete = complete || n < p.count
        func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D }
        func skipSpaces() { while i < n && isSpace(p[i]) { i += 1 } }
        func word() -> String {
            let start = i
            while i < n, p[i] == 0x5F || p[i] == 0x2E || (p[i] | 0x20 >= 0x61 && p[i] | 0x20 <= 0x7A)
                    || (p[i] >= 0x30 && p[i] <= 0x39) { i += 1 }
            return String(decoding: UnsafeRawBufferPointer(rebasing: p[start..<i]), as: UTF8.self).lowercased()
        }
        skipSpaces()
        guard word() == "set", i < n, isSpace(p[i]) else { return nil }
        skipSpaces()
        var name = word()
        if name == "session" {
            skipSpaces()
            name = word()
        }
        guard !name.isEmpty, name != "local", name != "transaction", name != "time", name != "role" else { return nil }
        skipSpaces()
        if i < n && p[i] == UInt8(ascii: "=") {
            i += 1
        } else if word() != "to" {
            return nil
        }
        skipSpaces()
        guard textComplete else { return nil }
        var end = n
        while end > i && (isSpace(p[end - 1]) || p[end - 1] == UInt8(ascii: ";")) { end -= 1 }
        guard end > i else { return nil }
        var raw = String(decoding: UnsafeRawBufferPointer(rebasing: p[i..<end]), as: UTF8.self)
        if raw.contains(";") { return nil }
        if raw.lowercased() == "default" { return nil }
        if raw.count >= 2, raw.hasPrefix("'"), raw.hasSuffix("'") {
            let inner = raw.dropFirst().dropLast()
            if inner.replacingOccurrences(of: "''", with: "").contains("'") { return nil }  // a list of literals
            raw = inner.replacingOccurrences(of: "''", with: "'")
        }
        return (canonicalName(name), raw)
    }

    /// A stable key for the set of values (the pool's cache of validated startup parameters).
    public var cacheKey: String {
        if values.count == 1, let (name, value) = values.first { return name + "=" + value }
        return values.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\u{1}")
    }
}
