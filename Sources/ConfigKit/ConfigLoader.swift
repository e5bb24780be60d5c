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
            return LoadResult(config: nil, diagnostics: [.error("", f.message, file: file, line: f.line)])
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
                    ctx.diagnostics.append(.error("include.files[\(i)]", f.message, file: resolved, line: f.line))
                } catch {
                    ctx.diagnostics.append(.error("include.files[\(i)]", "\(error)", file: resolved))
                }
            }
        }

        let config = ConfigDecoder.decode(root, ctx: ctx, rootFile: file)
        var diagnostics = ctx.diagnostics
        diagnostics += ConfigValidator.validate(config, file: file)
        let hasErrors = diagnostics.contains { $0.severity == .error }
        return LoadResult(config: hasErrors ? nil : config, diagnostics: diagnostics)
    }

    static func readFile(_ path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }
}
