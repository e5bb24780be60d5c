// One generic, ordered value tree for YAML and TOML input, with source positions where the parser gives them.

import Foundation
import TOMLKit

public struct ConfigNode: Sendable, Equatable {
    public var value: ConfigValue
    public var file: String?
    /// 1-based; nil when the parser does not report positions (TOMLKit).
    public var line: Int?

    public init(_ value: ConfigValue, file: String? = nil, line: Int? = nil) {
        self.value = value
        self.file = file
        self.line = line
    }
}

public struct ConfigEntry: Sendable, Equatable {
    public var key: String
    public var node: ConfigNode
}

/// A table with ordered keys. Tables of more than a few keys get a key → position index, so reading or building a
/// table of n keys is O(n), not O(n²) (a config may hold hundreds of thousands of pools); small tables (a pool, a
/// user) are scanned, which is cheaper than hashing and keeps them small.
public struct ConfigTable: Sendable, Equatable {
    public private(set) var entries: [ConfigEntry] = []
    /// key → position in `entries` of its first occurrence; nil while the table has at most `indexThreshold` keys.
    private var index: [String: Int]?
    private static let indexThreshold = 16

    public init(entries: [ConfigEntry] = []) {
        self.entries.reserveCapacity(entries.count)
        for e in entries { append(e) }
    }

    public subscript(key: String) -> ConfigNode? {
        get { position(of: key).map { entries[$0].node } }
        set {
            if let i = position(of: key) {
                if let newValue { entries[i].node = newValue } else { remove(at: i) }
            } else if let newValue {
                append(ConfigEntry(key: key, node: newValue))
            }
        }
    }

    public var keys: [String] { entries.map(\.key) }
    public var count: Int { entries.count }

    public func contains(_ key: String) -> Bool { position(of: key) != nil }

    private func position(of key: String) -> Int? {
        if let index { return index[key] }
        return entries.firstIndex { $0.key == key }
    }

    /// Appends without a duplicate check (callers that care use `contains` first); a later duplicate is kept in
    /// `entries` but lookups return the first one.
    mutating func append(_ entry: ConfigEntry) {
        if index != nil {
            if index![entry.key] == nil { index![entry.key] = entries.count }
            entries.append(entry)
        } else {
            entries.append(entry)
            if entries.count > Self.indexThreshold { rebuildIndex() }
        }
    }

    private mutating func remove(at i: Int) {
        entries.remove(at: i)
        rebuildIndex()
    }

    private mutating func rebuildIndex() {
        guard entries.count > Self.indexThreshold else { index = nil; return }
        var map = [String: Int](minimumCapacity: entries.count)
        for (j, e) in entries.enumerated() where map[e.key] == nil { map[e.key] = j }
        index = map
    }

    public static func == (a: ConfigTable, b: ConfigTable) -> Bool { a.entries == b.entries }
}

public enum ConfigValue: Sendable, Equatable {
    case table(ConfigTable)
    case array([ConfigNode])
    case string(String)
    case integer(Int64)
    case float(Double)
    case bool(Bool)

    public var typeName: String {
        switch self {
        case .table: return "table"
        case .array: return "array"
        case .string: return "string"
        case .integer: return "integer"
        case .float: return "float"
        case .bool: return "boolean"
        }
    }
}

public enum ConfigFormat: String, Sendable, Equatable {
    case yaml, toml

    /// `.yaml`/`.yml` (case-insensitive) → YAML; anything else → TOML.
    public static func detect(path: String) -> ConfigFormat {
        let lower = path.lowercased()
        return lower.hasSuffix(".yaml") || lower.hasSuffix(".yml") ? .yaml : .toml
    }
}

struct ParseFailure: Error {
    var message: String
    var line: Int?
    var keyPath: String = ""
    var hint: String? = nil
}

enum ConfigParser {
    /// Parses text into a root table. YAML nulls are dropped (absent).
    static func parse(_ text: String, format: ConfigFormat, file: String?) throws -> ConfigTable {
        switch format {
        case .yaml: return try parseYAML(text, file: file)
        case .toml: return try parseTOML(text, file: file)
        }
    }

    // MARK: YAML

    /// Event-stream reader: anchors/aliases are rejected before anything is expanded (see YAMLReader).
    static func parseYAML(_ text: String, file: String?) throws -> ConfigTable {
        try YAMLReader.parse(text, file: file)
    }

    // MARK: TOML

    static func parseTOML(_ text: String, file: String?) throws -> ConfigTable {
        var text = text
        if let bad = text.withUTF8({ TOMLGuard.firstUnsafeHeader($0) }) {
            // toml++ would abort on this header. An earlier problem is still reported as toml++ words it.
            let prefix = String(decoding: text.utf8.prefix(bad.lineStart), as: UTF8.self)
            _ = try parseTOMLTable(prefix)
            throw ParseFailure(message: "TOML parse error: a table header must start with a key name or a quoted "
                + "key after '[' or '[['", line: bad.line, hint: "write headers like [pools.name] or "
                + "[[pools.name.users]]")
        }
        return convertTOMLTable(try parseTOMLTable(text), file: file)
    }

    private static func parseTOMLTable(_ text: String) throws -> TOMLTable {
        do {
            return try TOMLTable(string: text)
        } catch let e as TOMLParseError {
            throw ParseFailure(message: "TOML parse error: \(e.description)", line: e.source.begin.line)
        } catch {
            throw ParseFailure(message: "TOML parse error: \(error)", line: nil)
        }
    }

    static func convertTOMLTable(_ table: TOMLTable, file: String?) -> ConfigTable {
        var out = ConfigTable()
        for key in table.keys {
            guard let v = table[key] else { continue }
            out.append(ConfigEntry(key: key, node: convertTOML(v, file: file)))
        }
        return out
    }

    static func convertTOML(_ v: TOMLValueConvertible, file: String?) -> ConfigNode {
        switch v.type {
        case .table: return ConfigNode(.table(convertTOMLTable(v.table!, file: file)), file: file)
        case .array:
            let arr = v.array!
            return ConfigNode(.array(arr.map { convertTOML($0, file: file) }), file: file)
        case .string: return ConfigNode(.string(v.string ?? ""), file: file)
        case .int: return ConfigNode(.integer(Int64(v.int ?? 0)), file: file)
        case .double: return ConfigNode(.float(v.double ?? 0), file: file)
        case .bool: return ConfigNode(.bool(v.bool ?? false), file: file)
        case .date, .time, .dateTime: return ConfigNode(.string(v.debugDescription), file: file)
        }
    }

    // MARK: Merge

    /// Deep merge of `include` onto `base`: tables merged recursively, arrays concatenated, scalars replaced.
    /// Scalars of different kinds are replaced too (a duration may be `3000` in one file and `"3s"` in another);
    /// a table/array against anything else is a type mismatch.
    static func merge(_ base: inout ConfigTable, _ include: ConfigTable, path: String, file: String?,
                      diagnostics: inout [Diagnostic]) {
        for entry in include.entries {
            let keyPath = path.isEmpty ? entry.key : "\(path).\(entry.key)"
            guard let existing = base[entry.key] else {
                base.append(entry)
                continue
            }
            switch (existing.value, entry.node.value) {
            case (.table(var t), .table(let t2)):
                merge(&t, t2, path: keyPath, file: file, diagnostics: &diagnostics)
                base[entry.key] = ConfigNode(.table(t), file: existing.file, line: existing.line)
            case (.array(let a), .array(let b)):
                base[entry.key] = ConfigNode(.array(a + b), file: existing.file, line: existing.line)
            case (.table, _), (.array, _), (_, .table), (_, .array):
                diagnostics.append(.error(keyPath, "Incompatible types at path \"$.\(keyPath)\", expected "
                    + "\"\(existing.value.typeName)\" received \"\(entry.node.value.typeName)\"", file: file,
                    line: entry.node.line, hint: "the include file must use the same shape as the main file"))
            default:
                base[entry.key] = entry.node
            }
        }
    }
}
