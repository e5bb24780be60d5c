// Load pipeline: read → parse (YAML/TOML by extension) → merge include.files in order → decode → validate.

import Foundation

public enum ConfigLoader {
    /// Loads, merges includes, decodes and validates a config file. Never throws: every problem is a diagnostic.
    public static func load(path: String) -> LoadResult {
        guard let text = readFile(path) else {
            return LoadResult(config: nil, diagnostics: [
                .error("", "Could not open '\(path)': no such file or not readable", file: path),
            ])
        }
        let dir = (path as NSString).deletingLastPathComponent
        return load(text: text, format: ConfigFormat.detect(path: path), file: path,
                    configDirectory: dir.isEmpty ? "." : dir)
    }

    /// Loads from text (tests, stdin). `file` is used for diagnostics and include resolution.
    public static func load(text: String, format: ConfigFormat, file: String? = nil,
                            configDirectory: String? = nil) -> LoadResult {
        let ctx = DecodeContext()
        ctx.configDirectory = configDirectory
        var root: ConfigTable
        do {
            root = try ConfigParser.parse(text, format: format, file: file)
        } catch let f as ParseFailure {
            return LoadResult(config: nil, diagnostics: [.error(f.keyPath, f.message, file: file, line: f.line,
                                                                  hint: f.hint)])
        } catch {
            return LoadResult(config: nil, diagnostics: [.error("", "\(error)", file: file)])
        }

        // include.files of the main file only (includes are not recursive).
        if let inc = root["include"], case .table(let t) = inc.value, let files = t["files"],
           case .array(let items) = files.value {
            for (i, item) in items.enumerated() {
                guard case .string(let includePath) = item.value else { continue }  // decoder reports the type
                guard let resolved = ConfigDecoder.resolveFile(includePath, configDirectory: configDirectory),
                      let itext = readFile(resolved) else {
                    ctx.diagnostics.append(.error("include.files[\(i)]",
                        "Could not open include file '\(includePath)': no such file or not readable",
                        file: item.file, line: item.line))
                    continue
                }
                do {
                    let included = try ConfigParser.parse(itext, format: ConfigFormat.detect(path: resolved),
                                                          file: resolved)
                    ConfigParser.merge(&root, included, path: "", file: resolved, diagnostics: &ctx.diagnostics)
                } catch let f as ParseFailure {
                    ctx.diagnostics.append(.error(f.keyPath.isEmpty ? "include.files[\(i)]" : f.keyPath, f.message,
                                                  file: resolved, line: f.line, hint: f.hint))
                } catch {
                    ctx.diagnostics.append(.error("include.files[\(i)]", "\(error)", file: resolved))
                }
            }
        }

        let config = ConfigDecoder.decode(root, ctx: ctx, rootFile: file)
        var diagnostics = ctx.diagnostics
        let problems = ConfigValidator.validate(config, file: file)
        if !problems.isEmpty {
            // Built only when needed: it costs about as much as decoding on a config of many pools.
            let index = LocationIndex(root: root, file: file)
            diagnostics += problems.map(index.locate)
        }
        let hasErrors = diagnostics.contains { $0.severity == .error }
        return LoadResult(config: hasErrors ? nil : config, diagnostics: diagnostics)
    }

    static func readFile(_ path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }
}

/// keyPath → (file, line) of the merged tree, so model-level validation problems point at the source.
struct LocationIndex {
    var map: [String: (String?, Int?)] = [:]
    let rootFile: String?

    init(root: ConfigTable, file: String?) {
        rootFile = file
        add(root, path: "")
    }

    mutating func add(_ table: ConfigTable, path: String) {
        let isIndexedUsers = path.hasSuffix(".users")
        // Legacy `users.<n>` tables: key → position among the numeric keys sorted numerically.
        var indexedPosition: [String: Int] = [:]
        if isIndexedUsers {
            let sorted = table.entries.compactMap { e in ValueGrammar.parseUnsigned(e.key).map { ($0, e.key) } }
                .sorted { $0.0 < $1.0 }
            for (pos, (_, key)) in sorted.enumerated() where indexedPosition[key] == nil { indexedPosition[key] = pos }
        }
        for e in table.entries {
            let p = path.isEmpty ? e.key : "\(path).\(e.key)"
            map[p] = (e.node.file, e.node.line)
            if let pos = indexedPosition[e.key] {
                map["\(path)[\(pos)]"] = (e.node.file, e.node.line)
                if case .table(let t) = e.node.value { add(t, path: "\(path)[\(pos)]") }
            }
            add(e.node, path: p)
        }
    }

    mutating func add(_ node: ConfigNode, path: String) {
        switch node.value {
        case .table(let t): add(t, path: path)
        case .array(let items):
            for (i, item) in items.enumerated() {
                map["\(path)[\(i)]"] = (item.file, item.line)
                add(item, path: "\(path)[\(i)]")
            }
        default: break
        }
    }

    func locate(_ d: Diagnostic) -> Diagnostic {
        guard d.file == nil else { return d }
        var d = d
        var path = d.keyPath
        while !path.isEmpty {
            if let (f, l) = map[path] {
                d.file = f ?? rootFile
                d.line = l
                return d
            }
            if let cut = path.lastIndex(where: { $0 == "." || $0 == "[" }) {
                path = String(path[..<cut])
            } else {
                path = ""
            }
        }
        d.file = rootFile
        return d
    }
}
