// YAML → ConfigTable straight from libyaml's event stream, without Yams' composer.
//
// Yams' composer resolves every alias into the anchored node while composing, so a "billion laughs" document (nested
// anchors/aliases) is expanded — and its keys hashed for the duplicate check — before any check of ours could run;
// walking the composed tree is then exponential in the document size. Here the events are consumed one at a time:
// the first anchor or alias is rejected before anything is expanded, duplicate keys are found with a hash set as
// each key arrives, nesting is bounded, and the tree is built iteratively (no recursion on the input's depth).
// Plain scalars are typed as Yams' default resolver and constructor type them (its regular expressions are skipped
// for the common shapes, and base-60 integers are computed with overflow checks), so values decode as before.

import CYaml
import Yams

enum YAMLReader {
    /// A pg_doorman config nests at most ~6 levels (pools.<name>.users[i].<field>); anything much deeper is not a
    /// config, and bounding it keeps the recursive walks over the tree (merge, location index) shallow.
    static let maxDepth = 64

    static let noAnchorsHint = "write the value out in full: YAML anchors (&name), aliases (*name) and merge keys "
        + "(<<) are not supported in pg_doorman configs"

    static func parse(_ text: String, file: String?) throws -> ConfigTable {
        var text = text
        return try text.withUTF8 { bytes in
            let parser = EventParser(bytes)
            var builder = TreeBuilder(file: file)
            var documents = 0
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser.parser, &event) == 1 else {
                    throw parseError(parser.parser, text: bytes, path: builder.path)
                }
                defer { yaml_event_delete(&event) }
                let line = Int(event.start_mark.line) + 1
                switch event.type {
                case YAML_STREAM_END_EVENT:
                    return try builder.root()
                case YAML_DOCUMENT_START_EVENT:
                    documents += 1
                    if documents > 1 {
                        throw ParseFailure(message: "YAML parse error: expected a single document in the stream, "
                            + "but found another document", line: line,
                            hint: "a config file holds exactly one YAML document; remove the extra `---`")
                    }
                case YAML_ALIAS_EVENT:
                    let name = cString(event.data.alias.anchor) ?? ""
                    throw ParseFailure(message: "YAML parse error: aliases are not supported (found alias '*\(name)')",
                                       line: line, keyPath: builder.path, hint: noAnchorsHint)
                case YAML_SCALAR_EVENT:
                    let s = event.data.scalar
                    try rejectAnchor(s.anchor, line: line, builder: builder)
                    let value = String(decoding: UnsafeBufferPointer(start: s.value, count: Int(s.length)),
                                       as: UTF8.self)
                    let tag = s.quoted_implicit == 1 ? Tag.Name.str.rawValue : cString(s.tag)
                    try builder.scalar(value, tag: tag, plain: s.style == YAML_PLAIN_SCALAR_STYLE, line: line)
                case YAML_SEQUENCE_START_EVENT:
                    try rejectAnchor(event.data.sequence_start.anchor, line: line, builder: builder)
                    try builder.open(mapping: false, line: line)
                case YAML_MAPPING_START_EVENT:
                    try rejectAnchor(event.data.mapping_start.anchor, line: line, builder: builder)
                    try builder.open(mapping: true, line: line)
                case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                    try builder.close()
                default:  // stream start, document end
                    break
                }
            }
        }
    }

    private static func rejectAnchor(_ anchor: UnsafeMutablePointer<yaml_char_t>?, line: Int,
                                     builder: TreeBuilder) throws {
        guard let name = cString(anchor) else { return }
        throw ParseFailure(message: "YAML parse error: anchors are not supported (found anchor '&\(name)')",
                           line: line, keyPath: builder.path, hint: noAnchorsHint)
    }

    private static func cString(_ p: UnsafeMutablePointer<yaml_char_t>?) -> String? {
        p.map { String(cString: UnsafePointer($0)) }
    }

    private static func parseError(_ p: yaml_parser_t, text: UnsafeBufferPointer<UInt8>, path: String)
        -> ParseFailure {
        let problem = p.problem.map { String(cString: $0) } ?? "unknown error"
        switch p.error {
        case YAML_MEMORY_ERROR:
            return ParseFailure(message: "YAML parse error: out of memory", line: nil)
        case YAML_READER_ERROR:
            let offset = min(Int(p.problem_offset), text.count)
            let line = text[..<offset].reduce(1) { $1 == 0x0A ? $0 + 1 : $0 }
            return ParseFailure(message: "YAML parse error: \(problem) (byte offset \(offset))", line: line,
                                keyPath: path)
        default:  // scanner or parser
            let line = Int(p.problem_mark.line) + 1, column = Int(p.problem_mark.column) + 1
            var message = "YAML parse error: \(line):\(column): "
            if let context = p.context.map({ String(cString: $0) }) {
                message += "\(context) in line \(Int(p.context_mark.line) + 1), column "
                    + "\(Int(p.context_mark.column) + 1), "
            }
            message += problem + snippet(text, line: line, column: column)
            return ParseFailure(message: message, line: line, keyPath: path)
        }
    }

    /// The offending source line with a caret under `column` (1-based, in Unicode scalars as libyaml counts).
    static func snippet(_ text: UnsafeBufferPointer<UInt8>, line: Int, column: Int) -> String {
        var start = 0, current = 1
        while current < line, start < text.count {
            if text[start] == 0x0A { current += 1 }
            start += 1
        }
        guard current == line else { return "" }
        var end = start
        while end < text.count, text[end] != 0x0A, text[end] != 0x0D, end - start < 200 { end += 1 }
        let source = String(decoding: UnsafeBufferPointer(rebasing: text[start..<end]), as: UTF8.self)
        let pad = String(source.unicodeScalars.prefix(max(0, column - 1)).map { $0 == "\t" ? "\t" : " " })
        return ":\n" + source + "\n" + pad + "^"
    }

    /// Types a scalar as before: quoted/block scalars are strings; plain ones go through Yams' tag resolver (an
    /// explicit tag wins); nil for null.
    static func scalarValue(_ s: String, tag: String?, plain: Bool) -> ConfigValue? {
        guard plain else { return .string(s) }
        if tag == nil, let fast = fastPlainValue(s) { return fast }
        let node = Node.scalar(.init(s, Tag(tag.map(Tag.Name.init(rawValue:)) ?? .implicit), .plain))
        switch Tag.Name(rawValue: node.tag.rawValue) {
        case .null: return nil
        case .bool: return .bool(node.bool ?? false)
        case .int:
            // Out of Int64 range: keep the digits, numeric decoders range-check them.
            // Base 60 (`1:30`) is computed here: Yams' constructor traps on overflow (`1:0:0:0:0:0:0:0:0:0:0`).
            if s.contains(":") { return sexagesimalInt(s).map { .integer($0) } ?? .string(s) }
            return node.int.map { .integer(Int64($0)) } ?? .string(s)
        case .float:
            return node.float.map { .float($0) } ?? .string(s)
        default:
            return .string(s)
        }
    }

    static let boolAndNullWords: Set<String> = [
        "yes", "Yes", "YES", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE",
        "on", "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL",
    ]

    /// The common cases of Yams' default resolver without its regular expressions (they dominate the time of a
    /// large config): a plain scalar starting with an ASCII letter is a string unless it is one of the bool/null
    /// words (every int, float, timestamp, merge, value and the other null patterns start with a digit, sign,
    /// `.`, `<`, `=` or `~`, or are empty); a decimal literal without a leading zero, signs, `_` or `:` that fits in
    /// Int64 is that integer. nil: let Yams decide.
    static func fastPlainValue(_ s: String) -> ConfigValue? {
        let utf8 = s.utf8
        guard let first = utf8.first else { return nil }
        switch first {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"):
            return utf8.count <= 5 && boolAndNullWords.contains(s) ? nil : .string(s)
        case UInt8(ascii: "1")...UInt8(ascii: "9"):
            guard utf8.count <= 18, utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                  let i = Int64(s) else { return nil }
            return .integer(i)
        default:
            return nil
        }
    }

    /// `[-+]?d(:d)+` in base 60 (underscores ignored), nil when malformed or out of Int64 range.
    static func sexagesimalInt(_ s: String) -> Int64? {
        var text = Substring(s.replacingOccurrences(of: "_", with: ""))
        var negative = false
        if let sign = text.first, sign == "-" || sign == "+" {
            negative = sign == "-"
            text = text.dropFirst()
        }
        var value: Int64 = 0
        for part in text.split(separator: ":", omittingEmptySubsequences: false) {
            guard !part.isEmpty, part.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                  let digit = Int64(part) else { return nil }
            let (shifted, o1) = value.multipliedReportingOverflow(by: 60)
            let (sum, o2) = shifted.addingReportingOverflow(digit)
            guard !o1, !o2 else { return nil }
            value = sum
        }
        return negative ? -value : value
    }
}


/// Owns a libyaml parser reading from `bytes` (which must outlive it).
private final class EventParser {
    var parser = yaml_parser_t()

    init(_ bytes: UnsafeBufferPointer<UInt8>) {
        yaml_parser_initialize(&parser)
        yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING)
        yaml_parser_set_input_string(&parser, bytes.baseAddress, bytes.count)
    }

    deinit { yaml_parser_delete(&parser) }
}

/// Builds the value tree from start/scalar/end events with an explicit stack.
private struct TreeBuilder {
    struct Frame {
        let isMapping: Bool
        let line: Int
        var table = ConfigTable()
        /// Keys whose value was null (dropped from `table`), still counted for the duplicate check.
        var nullKeys: Set<String> = []
        var pendingKey: String?
        var keyLine = 0
        var items: [ConfigNode] = []
    }

    let file: String?
    var stack: [Frame] = []
    /// nil: no document content yet, or a null document.
    var document: ConfigNode?

    init(file: String?) { self.file = file }

    /// Key path of the node being read, for diagnostics: `pools.app.users[0]`.
    var path: String {
        var p = ""
        for f in stack {
            if f.isMapping {
                guard let k = f.pendingKey else { break }
                p += p.isEmpty ? k : ".\(k)"
            } else {
                p += "[\(f.items.count)]"
            }
        }
        return p
    }

    mutating func open(mapping: Bool, line: Int) throws {
        if let top = stack.last, top.isMapping, top.pendingKey == nil {
            throw ParseFailure(message: "YAML parse error: mapping keys must be scalars", line: line, keyPath: path)
        }
        guard stack.count < YAMLReader.maxDepth else {
            throw ParseFailure(message: "YAML parse error: nesting deeper than \(YAMLReader.maxDepth) levels is "
                + "not supported", line: line, keyPath: path)
        }
        stack.append(Frame(isMapping: mapping, line: line))
    }

    mutating func close() throws {
        guard let f = stack.popLast() else { return }
        let node = f.isMapping ? ConfigNode(.table(f.table), file: file, line: f.line)
                               : ConfigNode(.array(f.items), file: file, line: f.line)
        try add(node, line: f.line)
    }

    mutating func scalar(_ s: String, tag: String?, plain: Bool, line: Int) throws {
        let i = stack.count - 1
        if i >= 0, stack[i].isMapping, stack[i].pendingKey == nil {
            // A key: any scalar, taken as its text. Duplicates are found here, in O(1) per key.
            if stack[i].table.contains(s) || stack[i].nullKeys.contains(s) {
                let p = path
                throw ParseFailure(message: "YAML parse error: duplicate key '\(s)'", line: line,
                                   keyPath: p.isEmpty ? s : "\(p).\(s)",
                                   hint: "each key may appear only once in a mapping")
            }
            stack[i].pendingKey = s
            stack[i].keyLine = line
            return
        }
        try add(YAMLReader.scalarValue(s, tag: tag, plain: plain).map { ConfigNode($0, file: file, line: line) }, line: line)
    }

    /// Hands a finished value (nil for YAML null) to the enclosing mapping/sequence, or makes it the document.
    private mutating func add(_ node: ConfigNode?, line: Int) throws {
        let i = stack.count - 1
        guard i >= 0 else {
            document = node
            return
        }
        if stack[i].isMapping {
            guard let key = stack[i].pendingKey else {
                throw ParseFailure(message: "YAML parse error: mapping keys must be scalars", line: line,
                                   keyPath: path)
            }
            if var node {
                // Report the key's line for scalars (same line) and nested tables (header line).
                node.line = stack[i].keyLine
                stack[i].table.append(ConfigEntry(key: key, node: node))
            } else {
                stack[i].nullKeys.insert(key)
            }
            stack[i].pendingKey = nil
        } else if let node {
            // A null list item is dropped (an empty string would be misleading), like the reference.
            stack[i].items.append(node)
        }
    }

    func root() throws -> ConfigTable {
        guard let document else { return ConfigTable() }
        guard case .table(let t) = document.value else {
            throw ParseFailure(message: "YAML parse error: the document root must be a mapping, found "
                + document.value.typeName, line: document.line)
        }
        return t
    }
}
