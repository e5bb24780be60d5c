// Diagnostics: every problem found while loading/validating, with key path, file:line and a hint.

public struct Diagnostic: Sendable, Equatable, CustomStringConvertible {
    public enum Severity: String, Sendable, Equatable { case error, warning }

    public var severity: Severity
    public var keyPath: String
    public var file: String?
    public var line: Int?
    public var message: String
    public var hint: String?

    public init(severity: Severity, keyPath: String, file: String? = nil, line: Int? = nil, message: String,
                hint: String? = nil) {
        self.severity = severity
        self.keyPath = keyPath
        self.file = file
        self.line = line
        self.message = message
        self.hint = hint
    }

    public static func error(_ keyPath: String, _ message: String, file: String? = nil, line: Int? = nil,
                             hint: String? = nil) -> Diagnostic {
        Diagnostic(severity: .error, keyPath: keyPath, file: file, line: line, message: message, hint: hint)
    }

    public static func warning(_ keyPath: String, _ message: String, file: String? = nil, line: Int? = nil,
                               hint: String? = nil) -> Diagnostic {
        Diagnostic(severity: .warning, keyPath: keyPath, file: file, line: line, message: message, hint: hint)
    }

    /// `error: pools.app.users[1].min_pool_size (pg_doorman.yaml:14): message — hint: ...`
    public var description: String {
        var s = "\(severity.rawValue): "
        let loc = file.map { f in line.map { "\(f):\($0)" } ?? f }
        switch (keyPath.isEmpty, loc) {
        case (false, let l?): s += "\(keyPath) (\(l)): "
        case (false, nil): s += "\(keyPath): "
        case (true, let l?): s += "\(l): "
        case (true, nil): break
        }
        s += message
        if let hint { s += " — hint: \(hint)" }
        return s
    }
}

public struct LoadResult: Sendable {
    /// nil when any error was found.
    public var config: Config?
    public var diagnostics: [Diagnostic]

    public init(config: Config?, diagnostics: [Diagnostic]) {
        self.config = config
        self.diagnostics = diagnostics
    }

    public var hasErrors: Bool { diagnostics.contains { $0.severity == .error } }
    public var errors: [Diagnostic] { diagnostics.filter { $0.severity == .error } }
    public var warnings: [Diagnostic] { diagnostics.filter { $0.severity == .warning } }
}

/// Levenshtein distance, for "did you mean" hints.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var prev = Array(0...b.count)
    var cur = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        cur[0] = i
        for j in 1...b.count {
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&prev, &cur)
    }
    return prev[b.count]
}

/// Closest candidate within a distance proportional to the word length.
public func didYouMean(_ word: String, candidates: [String]) -> String? {
    let lower = word.lowercased()
    var best: (String, Int)? = nil
    for c in candidates {
        let d = editDistance(lower, c)
        if best == nil || d < best!.1 { best = (c, d) }
    }
    guard let (name, d) = best else { return nil }
    let limit = max(2, word.count / 3)
    return d <= limit ? name : nil
}
