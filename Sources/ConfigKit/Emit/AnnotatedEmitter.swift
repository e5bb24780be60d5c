// Annotated YAML / TOML emitters: every key of the model with its catalogue comment, its default and its value;
// unset optional keys as commented-out examples; commented example pools at the end. Whatever is written here
// loads back (comments stripped) into the same `Config`.

/// Output syntax of the emitters.
public enum AnnotatedFormat: String, Sendable, CaseIterable {
    case yaml, toml

    /// `--format` > extension of the output path (.yaml/.yml/.toml) > YAML.
    public static func resolve(explicit: String?, outputPath: String?) -> AnnotatedFormat? {
        if let explicit {
            switch explicit.lowercased() {
            case "yaml", "yml": return .yaml
            case "toml": return .toml
            default: return nil
            }
        }
        if let path = outputPath?.lowercased() {
            if path.hasSuffix(".toml") { return .toml }
        }
        return .yaml
    }
}

/// Extra remarks for configs written by `pg_doorman generate` from a live server.
public struct AnnotatedNotes: OptionSet, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// Say that admin/admin is a placeholder to change.
    public static let placeholderAdmin = AnnotatedNotes(rawValue: 1)
    /// Say where the pg_hba rules came from.
    public static let generatedHba = AnnotatedNotes(rawValue: 2)
}

public enum AnnotatedEmitter {
    /// The annotated configuration text.
    public static func render(_ config: Config, format: AnnotatedFormat, language: CatalogueLanguage,
                              notes: AnnotatedNotes = []) -> String {
        var w = AnnotatedWriter(format: format, language: language, notes: notes)
        w.document(config)
        return w.text
    }

    /// Plain serialization (`--no-comments`), through ConfigKit's encoders.
    public static func plain(_ config: Config, format: AnnotatedFormat) -> String {
        switch format {
        case .yaml: return ConfigEncoder.yaml(config)
        case .toml: return ConfigEncoder.toml(config)
        }
    }
}

/// Line-oriented writer behind `AnnotatedEmitter`.
struct AnnotatedWriter {
    let format: AnnotatedFormat
    let language: CatalogueLanguage
    let notes: AnnotatedNotes
    private(set) var lines: [String] = []

    init(format: AnnotatedFormat, language: CatalogueLanguage, notes: AnnotatedNotes) {
        self.format = format
        self.language = language
        self.notes = notes
    }

    var text: String { lines.joined(separator: "\n") + "\n" }

    var yaml: Bool { format == .yaml }

    // MARK: - Primitives

    func pad(_ level: Int) -> String { yaml ? String(repeating: "  ", count: level) : "" }

    mutating func blank() {
        if lines.last != "" { lines.append("") }
    }

    mutating func comment(_ text: String, level: Int) {
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lines.append(line.isEmpty ? pad(level) + "#" : pad(level) + "# " + line)
        }
    }

    func t(_ key: String) -> String { Catalogue.text(key, language) }

    mutating func major(_ title: String) {
        blank()
        let bar = "# " + String(repeating: "#", count: 76)
        lines += [bar, "# " + title, bar]
        blank()
    }

    mutating func minor(_ title: String, level: Int) {
        blank()
        let bar = pad(level) + "# " + String(repeating: "-", count: max(20, 74 - 2 * level))
        lines += [bar, pad(level) + "# " + title, bar]
        blank()
    }

    /// `lines` with `# ` inserted after each line's indentation.
    static func commentedOut(_ lines: [String]) -> [String] {
        lines.map { line in
            let indent = line.prefix { $0 == " " }
            let rest = line.dropFirst(indent.count)
            if rest.hasPrefix("#") { return line }  // already a comment
            return rest.isEmpty ? String(indent) + "#" : String(indent) + "# " + rest
        }
    }

    // MARK: - Values

    func key(_ k: String) -> String { yaml ? ConfigFormatting.yamlKey(k) : ConfigFormatting.tomlKey(k) }

    /// Lines writing `k` with value `v` at `level` (block maps for YAML string maps).
    func valueLines(_ k: String, _ v: EmitValue, type: CatalogueValueType, level: Int) -> [String] {
        let p = pad(level)
        if yaml {
            switch (type, v) {
            case (.duration, .integer("0")), (.bytes, .integer("0")):
                return ["\(p)\(key(k)): 0"]
            case (.duration, .integer(let s)):
                if let ms = UInt64(s) { return ["\(p)\(key(k)): \(ConfigFormatting.yamlString(ConfigFormatting.humanDuration(ms)))"] }
            case (.bytes, .integer(let s)):
                if let b = UInt64(s) { return ["\(p)\(key(k)): \(ConfigFormatting.yamlString(ConfigFormatting.humanByteSize(b)))"] }
            case (_, .stringMap(let m)) where !m.isEmpty:
                return ["\(p)\(key(k)):"] + m.map { "\(p)  \(ConfigFormatting.yamlKey($0.0)): \(ConfigFormatting.yamlString($0.1))" }
            default: break
            }
            return ["\(p)\(key(k)): \(ConfigFormatting.yamlScalar(v) ?? "{}")"]
        }
        return ["\(key(k)) = \(ConfigFormatting.tomlInline(v))"]
    }

    /// The example value of an unset optional key, typed.
    static func exampleValue(_ f: CatalogueField) -> EmitValue? {
        guard let ex = f.example else { return nil }
        switch f.type {
        case .integer, .duration, .millis, .seconds, .bytes: return .integer(ex)
        case .bool: return .bool(ex == "true")
        case .list: return .stringArray([ex])
        case .map:
            let parts = ex.split(separator: "=", maxSplits: 1).map(String.init)
            return .stringMap([(parts[0], parts.count > 1 ? parts[1] : "")])
        case .string, .octal, .poolMode: return .string(ex)
        case .hba, .users, .table: return nil
        }
    }

    /// `Default:` text of a field in the emitted syntax.
    func defaultText(_ f: CatalogueField) -> String {
        let raw = f.defaultText
        if raw.hasPrefix("unset") || raw == "required" { return translatedDefault(raw) }
        switch f.type {
        case .duration where raw == "0", .bytes where raw == "0":
            return "0"
        case .duration:
            if let ms = try? ValueGrammar.parseDuration(raw) {
                return yaml ? "\"\(ConfigFormatting.humanDuration(ms))\" (\(ms) ms)" : "\(ms) (\(ConfigFormatting.humanDuration(ms)))"
            }
        case .bytes:
            if let b = try? ValueGrammar.parseByteSize(raw) {
                return yaml ? "\"\(ConfigFormatting.humanByteSize(b))\" (\(b) bytes)" : "\(b) (\(ConfigFormatting.humanByteSize(b)))"
            }
        case .string, .octal, .poolMode: return raw.hasPrefix("\"") ? raw : "\"\(raw)\""
        default: break
        }
        return raw
    }

    func translatedDefault(_ raw: String) -> String {
        guard language == .russian else { return raw }
        var s = raw
        let table: [(String, String)] = [
            ("required", "обязательный ключ"), ("unset", "не задано"), ("the pool name", "имя пула"),
            ("general value", "значение из general"), ("no cap", "без предела"), ("the pool's mode", "режим пула"),
        ]
        for (en, ru) in table { s = s.replacing(en, with: ru) }
        return s
    }

    /// Comment, default line and value (or commented example) of one key.
    mutating func field(_ f: CatalogueField, value: EmitValue?, level: Int, extraNote: String? = nil) {
        comment(f.comment.text(language), level: level)
        if let extraNote { comment(extraNote, level: level) }
        if !f.reloadable { comment(t("restart_note"), level: level) }
        comment("\(t("default_label")): \(defaultText(f))", level: level)
        if let value {
            lines += valueLines(f.key, value, type: f.type, level: level)
        } else if let ex = Self.exampleValue(f) {
            lines += Self.commentedOut(valueLines(f.key, ex, type: f.type, level: level))
        }
        blank()
    }

    // MARK: - Document

    mutating func document(_ c: Config) {
        header()
        include(c.include)
        general(c.general)
        web(c.web)
        talos(c.talos)
        pools(c)
        while lines.last == "" { lines.removeLast() }
    }

    mutating func header() {
        let bar = "# " + String(repeating: "=", count: 76)
        lines.append(bar)
        lines.append("# " + t("header_title") + (yaml ? " (YAML)" : " (TOML)"))
        lines.append(bar)
        comment(t("header_formats"), level: 0)
        if yaml {
            lines.append("#")
            lines.append("# " + t("header_values_title") + ":")
            comment(t("header_values"), level: 0)
        }
        lines.append(bar)
    }

    mutating func include(_ inc: Include) {
        major(t("section_include"))
        comment(t("include_intro"), level: 0)
        let f = Catalogue.field(.include, "files")!
        var block: [String]
        if yaml {
            block = ["include:"] + valueLines("files", .stringArray(inc.files.isEmpty ? [f.example!] : inc.files),
                                             type: .list, level: 1)
        } else {
            block = ["[include]"] + valueLines("files", .stringArray(inc.files.isEmpty ? [f.example!] : inc.files),
                                               type: .list, level: 0)
        }
        comment(f.comment.text(language), level: 0)
        comment("\(t("default_label")): \(defaultText(f))", level: 0)
        lines += inc.files.isEmpty ? Self.commentedOut(block) : block
    }

    mutating func general(_ g: General) {
        major(t("section_general"))
        lines.append(yaml ? "general:" : "[general]")
        let values = Dictionary(ConfigFields.general(g), uniquingKeysWith: { a, _ in a })
        for group in Catalogue.groups(in: .general) {
            minor(group.title.text(language), level: 1)
            for f in Catalogue.fields(inGroup: group.id) where f.section == .general {
                switch f.key {
                case "pg_hba":
                    pgHba(f, g.pgHba)
                case "admin_password" where notes.contains(.placeholderAdmin):
                    field(f, value: values[f.key], level: 1, extraNote: t("generated_admin_note"))
                default:
                    field(f, value: values[f.key], level: 1)
                }
            }
        }
    }

    mutating func pgHba(_ f: CatalogueField, _ hba: PgHba?) {
        comment(f.comment.text(language), level: 1)
        comment(t("pg_hba_intro"), level: 1)
        if hba != nil && notes.contains(.generatedHba) { comment(t("generated_hba_note"), level: 1) }
        comment("\(t("default_label")): \(defaultText(f))", level: 1)
        if let hba {
            lines += hbaLines(hba.content)
        } else {
            let example = "host all all 127.0.0.1/32 md5\nhostssl all all 10.0.0.0/8 scram-sha-256\nlocal all all md5\nhost all all 0.0.0.0/0 reject\n"
            lines += Self.commentedOut(hbaLines(example))
        }
        blank()
    }

    /// pg_hba as a readable multi-line string when that round-trips exactly, else as an escaped string.
    func hbaLines(_ content: String) -> [String] {
        let body = content.hasSuffix("\n") ? String(content.dropLast()) : content
        let rows = body.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let printable = content.unicodeScalars.allSatisfy { $0 == "\n" || ($0.value >= 0x20 && $0.value != 0x7f) }
        let simpleRows = !body.isEmpty && !body.hasSuffix("\n") && rows.allSatisfy { !$0.hasSuffix(" ") }
        if yaml {
            if printable && simpleRows && !(rows.first?.hasPrefix(" ") ?? true) {
                let p = pad(2)
                return ["  pg_hba: " + (content.hasSuffix("\n") ? "|" : "|-")] + rows.map { $0.isEmpty ? "" : p + $0 }
            }
            return ["  pg_hba: " + ConfigFormatting.yamlString(content)]
        }
        if printable && !body.isEmpty && !content.contains("'''") && !content.hasSuffix("'") {
            // Multi-line literal string; the newline right after the opening quotes is not part of the value.
            if content.hasSuffix("\n") { return ["pg_hba = '''"] + rows + ["'''"] }
            return ["pg_hba = '''"] + rows.dropLast() + [rows.last! + "'''"]
        }
        return ["pg_hba = " + ConfigFormatting.tomlString(content)]
    }

    mutating func web(_ w: Web) {
        major(t("section_web"))
        lines.append(yaml ? "web:" : "[web]")
        let values = Dictionary(ConfigFields.web(w), uniquingKeysWith: { a, _ in a })
        blank()
        for f in Catalogue.fields(in: .web) { field(f, value: values[f.key], level: 1) }
    }

    mutating func talos(_ talos: Talos?) {
        major(t("section_talos"))
        comment(t("talos_intro"), level: 0)
        let keys = Catalogue.field(.talos, "keys")!, dbs = Catalogue.field(.talos, "databases")!
        var block = [yaml ? "talos:" : "[talos]"]
        let value = talos ?? Talos(keys: [keys.example!], databases: [dbs.example!])
        for (f, v) in [(keys, value.keys), (dbs, value.databases)] {
            block += commentLines(f.comment.text(language), level: 1)
            block += valueLines(f.key, .stringArray(v), type: .list, level: 1)
        }
        lines += talos == nil ? Self.commentedOut(block) : block
    }

    func commentLines(_ text: String, level: Int) -> [String] {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { pad(level) + "# " + $0 }
    }

    // MARK: - Pools

    mutating func pools(_ c: Config) {
        major(t("section_pools"))
        comment(t("pools_intro"), level: 0)
        if yaml {
            lines.append(c.pools.isEmpty ? "pools: {}" : "pools:")
        } else {
            lines.append("[pools]")
        }
        for name in c.sortedPoolNames {
            pool(name, c.pools[name]!, annotated: true)
        }
        examples()
    }

    mutating func pool(_ name: String, _ p: Pool, annotated: Bool) {
        blank()
        let header = "pools.\(ConfigFormatting.tomlKey(name))"
        if annotated { comment("\(t("pool_label")) \"\(name)\"", level: 1) }
        lines.append(yaml ? "  \(ConfigFormatting.yamlKey(name)):" : "[\(header)]")
        let values = Dictionary(ConfigFields.pool(p), uniquingKeysWith: { a, _ in a })
        for group in Catalogue.groups(in: .pool) {
            let fields = Catalogue.fields(inGroup: group.id).filter { $0.section == .pool }
            if annotated {
                minor(group.title.text(language), level: 2)
                for f in fields { field(f, value: values[f.key], level: 2) }
            } else {
                // Examples: only what differs from a default pool, plus where it connects and how.
                let defaults = Dictionary(ConfigFields.pool(Pool()), uniquingKeysWith: { a, _ in a })
                let always: Set<String> = ["server_host", "server_port", "pool_mode"]
                for f in fields {
                    if let v = values[f.key], always.contains(f.key) || defaults[f.key] != v {
                        lines += valueLines(f.key, v, type: f.type, level: 2)
                    }
                }
            }
        }
        authQuery(header, p.authQuery, annotated: annotated)
        users(header, p.users, annotated: annotated)
    }

    mutating func authQuery(_ header: String, _ a: AuthQuery?, annotated: Bool) {
        if a == nil && !annotated { return }
        if annotated {
            minor(Catalogue.group("auth_query")!.title.text(language), level: 2)
            comment(t("auth_query_intro"), level: 2)
        }
        var block = [yaml ? "    auth_query:" : "[\(header).auth_query]"]
        let example: AuthQuery = {
            var x = AuthQuery()
            for f in Catalogue.fields(in: .authQuery) {
                guard let ex = f.example else { continue }
                switch f.key {
                case "query": x.query = ex
                case "user": x.user = ex
                case "password": x.password = ex
                case "database": x.database = ex
                default: break
                }
            }
            return x
        }()
        let values = Dictionary(ConfigFields.authQuery(a ?? example), uniquingKeysWith: { l, _ in l })
        for f in Catalogue.fields(in: .authQuery) {
            if annotated {
                block += commentLines(f.comment.text(language), level: 3)
                block += commentLines("\(t("default_label")): \(defaultText(f))", level: 3)
            }
            if let v = values[f.key] {
                block += valueLines(f.key, v, type: f.type, level: 3)
            } else if annotated, let ex = Self.exampleValue(f) {
                block += Self.commentedOut(valueLines(f.key, ex, type: f.type, level: 3))
            }
        }
        if a == nil {
            lines += Self.commentedOut(block)
        } else {
            lines += block
        }
        blank()
    }

    mutating func users(_ header: String, _ users: [User], annotated: Bool) {
        if annotated {
            minor(Catalogue.group("users")!.title.text(language), level: 2)
            if !yaml { comment(t("users_toml_note"), level: 0) }
        }
        if yaml { lines.append(users.isEmpty ? "    users: []" : "    users:") }
        for (i, u) in users.enumerated() {
            let full = annotated && i == 0
            if !yaml {
                if !full { blank() }
                lines.append("[[\(header).users]]")
            }
            let values = Dictionary(ConfigFields.user(u), uniquingKeysWith: { a, _ in a })
            var first = true
            for f in Catalogue.fields(in: .user) {
                let v = values[f.key]
                if v == nil && !full { continue }
                if full {
                    if f.key == "server_username" { comment(t("passthrough_note"), level: 4) }
                    comment(f.comment.text(language), level: 4)
                    comment("\(t("default_label")): \(defaultText(f))", level: 4)
                }
                var out: [String]
                if let v {
                    out = valueLines(f.key, v, type: f.type, level: 4)
                } else if let ex = Self.exampleValue(f) {
                    out = Self.commentedOut(valueLines(f.key, ex, type: f.type, level: 4))
                } else {
                    continue
                }
                if yaml && first && v != nil {
                    // The first key opens the list item: "      - key: value".
                    out[0] = "      - " + out[0].dropFirst(8)
                    first = false
                }
                lines += out
            }
        }
        blank()
    }

    mutating func examples() {
        minor(t("examples_title"), level: 1)
        for (textKey, name, pool) in AnnotatedExamples.pools {
            var sub = AnnotatedWriter(format: format, language: language, notes: [])
            sub.pool(name, pool, annotated: false)
            while sub.lines.first == "" { sub.lines.removeFirst() }
            while sub.lines.last == "" { sub.lines.removeLast() }
            comment(t(textKey), level: 1)
            lines += Self.commentedOut(sub.lines)
            blank()
        }
    }
}

