// Hand-written decoding helpers: typed reads from a ConfigTable that record a diagnostic (with key path, file and
// line) for every problem and warn about unknown keys with a "did you mean" hint.

final class DecodeContext {
    var diagnostics: [Diagnostic] = []
    /// Directory of the main config file (for relative pg_hba paths).
    var configDirectory: String?

    func error(_ path: String, _ message: String, node: ConfigNode?, hint: String? = nil) {
        diagnostics.append(.error(path, message, file: node?.file, line: node?.line, hint: hint))
    }

    func warning(_ path: String, _ message: String, node: ConfigNode?, hint: String? = nil) {
        diagnostics.append(.warning(path, message, file: node?.file, line: node?.line, hint: hint))
    }
}

final class TableReader {
    let table: ConfigTable
    let path: String
    let ctx: DecodeContext
    /// The node of the table itself (for location of "missing field" problems).
    let selfNode: ConfigNode?
    /// Keys read so far, in reading order, possibly repeated (a fixed number per reader: the decoder's reads).
    private(set) var known: [String] = []

    init(_ table: ConfigTable, path: String, ctx: DecodeContext, node: ConfigNode?) {
        self.table = table
        self.path = path
        self.ctx = ctx
        self.selfNode = node
    }

    func keyPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func node(_ key: String) -> ConfigNode? {
        known.append(key)
        return table[key]
    }

    /// Marks keys as known without reading them.
    func accept(_ keys: String...) { known += keys }

    private func typeError(_ key: String, _ n: ConfigNode, expected: String) {
        ctx.error(keyPath(key), "expected \(expected), found \(n.value.typeName)", node: n)
    }

    func missing(_ key: String) {
        ctx.error(keyPath(key), "missing field `\(key)`", node: selfNode, hint: "`\(key)` is required")
    }

    func string(_ key: String, required: Bool = false) -> String? {
        guard let n = node(key) else { if required { missing(key) }; return nil }
        guard case .string(let s) = n.value else { typeError(key, n, expected: "a string"); return nil }
        return s
    }

    func bool(_ key: String) -> Bool? {
        guard let n = node(key) else { return nil }
        guard case .bool(let b) = n.value else { typeError(key, n, expected: "a boolean (true/false)"); return nil }
        return b
    }

    /// Unsigned integer within `0...max` (integer node, or a string of digits).
    func unsigned(_ key: String, max: UInt64, required: Bool = false) -> UInt64? {
        guard let n = node(key) else { if required { missing(key) }; return nil }
        let value: UInt64
        switch n.value {
        case .integer(let i):
            guard i >= 0 else { ctx.error(keyPath(key), "\(key) cannot be negative (got \(i))", node: n); return nil }
            value = UInt64(i)
        case .string(let s) where ValueGrammar.isAllDigits(s.trimmingSpaces()) && !s.trimmingSpaces().isEmpty:
            guard let v = UInt64(s.trimmingSpaces()) else {
                ctx.error(keyPath(key), "\(key) value '\(s)' is too large (maximum is \(max))", node: n); return nil
            }
            value = v
        default:
            typeError(key, n, expected: "a non-negative integer"); return nil
        }
        guard value <= max else {
            ctx.error(keyPath(key), "\(key) value \(value) is too large (maximum is \(max))", node: n); return nil
        }
        return value
    }

    /// `usize`/`u32` counters as Int.
    func int(_ key: String, max: UInt64 = UInt64(Int.max), required: Bool = false) -> Int? {
        unsigned(key, max: max, required: required).map { Int($0) }
    }

    func u32(_ key: String, required: Bool = false) -> Int? { int(key, max: UInt64(UInt32.max), required: required) }

    /// Seconds fields (tcp_keepalives_*, query_interner_*): integers only, no suffixes.
    func seconds(_ key: String) -> UInt64? {
        if let n = table[key], case .string(let s) = n.value, !ValueGrammar.isAllDigits(s.trimmingSpaces()) {
            _ = node(key)
            ctx.error(keyPath(key), "expected an integer number of seconds, found string '\(s)'", node: n,
                      hint: "\(key) is in seconds and takes a plain integer, e.g. \(key) = 5")
            return nil
        }
        return unsigned(key, max: UInt64.max)
    }

    func port(_ key: String) -> UInt16? {
        guard let n = node(key) else { return nil }
        if case .integer(let i) = n.value, i < 1 || i > 65535 {
            ctx.error(keyPath(key), "\(key) must be between 1 and 65535 (got \(i))", node: n)
            return nil
        }
        guard let v = unsigned(key, max: 65535) else { return nil }
        guard v >= 1 else { ctx.error(keyPath(key), "\(key) must be between 1 and 65535 (got 0)", node: n); return nil }
        return UInt16(v)
    }

    /// Duration in ms: integer or human-readable string.
    /// Also used for the §2.3 "plain milliseconds" pool/user fields: the reference only takes integers there, we are
    /// lenient and also accept "5s"-style strings, which is unambiguous because those fields are milliseconds.
    func duration(_ key: String) -> UInt64? {
        guard let n = node(key) else { return nil }
        switch n.value {
        case .integer(let i):
            guard i >= 0 else { ctx.error(keyPath(key), "duration cannot be negative", node: n); return nil }
            return UInt64(i)
        case .string(let s):
            do { return try ValueGrammar.parseDuration(s) } catch {
                ctx.error(keyPath(key), "\(error)", node: n,
                          hint: "use a duration like '5s', '100ms', '1h', '30m', '1d' or a number in milliseconds")
                return nil
            }
        default:
            typeError(key, n, expected: "a duration like '5s', '100ms', '1h', '30m', '1d' or a number in milliseconds")
            return nil
        }
    }

    func byteSize(_ key: String) -> UInt64? {
        guard let n = node(key) else { return nil }
        switch n.value {
        case .integer(let i):
            guard i >= 0 else { ctx.error(keyPath(key), "byte size cannot be negative", node: n); return nil }
            return UInt64(i)
        case .string(let s):
            do { return try ValueGrammar.parseByteSize(s) } catch {
                ctx.error(keyPath(key), "\(error)", node: n,
                          hint: "use a size like '256MB', '64KB', '1G' or a number of bytes")
                return nil
            }
        default:
            typeError(key, n, expected: "a byte size like '256MB' or a number of bytes")
            return nil
        }
    }

    func stringArray(_ key: String) -> [String]? {
        guard let n = node(key) else { return nil }
        guard case .array(let items) = n.value else { typeError(key, n, expected: "an array of strings"); return nil }
        var out: [String] = []
        for (i, item) in items.enumerated() {
            guard case .string(let s) = item.value else {
                ctx.error("\(keyPath(key))[\(i)]", "expected a string, found \(item.value.typeName)", node: item)
                continue
            }
            out.append(s)
        }
        return out
    }

    /// String→string map; scalar values (numbers, booleans) are taken as their text.
    func stringMap(_ key: String) -> [String: String]? {
        guard let n = node(key) else { return nil }
        guard case .table(let t) = n.value else { typeError(key, n, expected: "a table of strings"); return nil }
        var out: [String: String] = [:]
        for e in t.entries {
            switch e.node.value {
            case .string(let s): out[e.key] = s
            case .integer(let i): out[e.key] = String(i)
            case .float(let d): out[e.key] = String(d)
            case .bool(let b): out[e.key] = b ? "on" : "off"
            default:
                ctx.error("\(keyPath(key)).\(e.key)", "expected a string, found \(e.node.value.typeName)",
                          node: e.node)
            }
        }
        return out
    }

    func subtable(_ key: String) -> TableReader? {
        guard let n = node(key) else { return nil }
        guard case .table(let t) = n.value else { typeError(key, n, expected: "a table"); return nil }
        return TableReader(t, path: keyPath(key), ctx: ctx, node: n)
    }

    /// Warns about every key that was never read.
    /// Linear in the table's size: a small table is checked against the read keys directly, a large one via a set.
    func finish() {
        let knownSet: Set<String>? = table.count > 8 ? Set(known) : nil
        for e in table.entries where !(knownSet?.contains(e.key) ?? known.contains(e.key)) {
            let suggestion = didYouMean(e.key, candidates: known)
            ctx.warning(keyPath(e.key), "unknown key `\(e.key)` is ignored", node: e.node,
                        hint: suggestion.map { "did you mean `\($0)`?" })
        }
    }
}
