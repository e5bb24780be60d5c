import Foundation
import Logging
import NIOConcurrencyHelpers

/// Output format of the log (`-F/--log-format`).
public enum LogFormat: String, CaseIterable, Sendable {
    case text, structured, debug
}

/// The runtime log filter: a base level plus `module=level` prefix overrides, changeable by
/// `SET log_level` and restorable with `default`.
public final class LogLevels: @unchecked Sendable {
    private let lock = NIOLock()
    private var base: Logger.Level
    private var modules: [(String, Logger.Level)] = []
    private var text: String
    private let startup: Logger.Level

    public init(startup: Logger.Level) {
        self.startup = startup
        self.base = startup
        self.text = Self.name(startup)
    }

    public struct FilterError: Error, CustomStringConvertible {
        public var description: String
    }

    static func name(_ l: Logger.Level) -> String {
        switch l {
        case .trace: return "trace"
        case .debug: return "debug"
        case .info: return "info"
        case .notice: return "info"
        case .warning: return "warn"
        case .error: return "error"
        case .critical: return "off"
        }
    }

    public static func parseLevel(_ s: String) -> Logger.Level? {
        switch s.lowercased() {
        case "trace": return .trace
        case "debug": return .debug
        case "info": return .info
        case "warn", "warning": return .warning
        case "error": return .error
        case "off": return .critical
        default: return nil
        }
    }

    /// Parses a filter such as `debug` or `warn,pg_doorman::pool=debug`; `default` restores the startup level.
    public func set(_ filter: String) -> Result<Void, FilterError> {
        let f = filter.trimmingCharacters(in: .whitespaces)
        if f.lowercased() == "default" {
            lock.withLock {
                base = startup
                modules = []
                text = Self.name(startup)
            }
            return .success(())
        }
        guard !f.isEmpty, f.count <= 256 else { return .failure(FilterError(description: "invalid log level filter '\(f)'")) }
        var newBase: Logger.Level?
        var newModules: [(String, Logger.Level)] = []
        for part in f.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !part.isEmpty {
            if let eq = part.firstIndex(of: "=") {
                let module = String(part[..<eq])
                guard !module.isEmpty, let level = Self.parseLevel(String(part[part.index(after: eq)...])) else {
                    return .failure(FilterError(description: "invalid log level filter '\(part)'"))
                }
                newModules.append((module, level))
            } else {
                guard let level = Self.parseLevel(part) else {
                    return .failure(FilterError(description: "invalid log level '\(part)'; valid: error, warn, info, debug, trace, off"))
                }
                if newBase != nil { return .failure(FilterError(description: "two base levels in '\(f)'")) }
                newBase = level
            }
        }
        lock.withLock {
            base = newBase ?? .info
            modules = newModules.sorted { $0.0.count > $1.0.count }
            text = f
        }
        return .success(())
    }

    public var current: String { lock.withLock { text } }

    public func allows(_ level: Logger.Level, label: String) -> Bool {
        lock.withLock {
            for (prefix, l) in modules where label.hasPrefix(prefix) {
                return l != .critical && level >= l
            }
            return base != .critical && level >= base
        }
    }
}

/// Writes log records to stderr as text (optionally coloured) or as one JSON object per line.
public struct PoolerLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .trace
    let label: String
    let format: LogFormat
    let color: Bool
    let levels: LogLevels
    let sink: LogSink

    public init(label: String, format: LogFormat, color: Bool, levels: LogLevels, sink: LogSink) {
        self.label = label
        self.format = format
        self.color = color
        self.levels = levels
        self.sink = sink
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String,
                    file: String, function: String, line: UInt) {
        guard levels.allows(level, label: label) else { return }
        // One record, one line: control characters from client-supplied strings are escaped.
        let message = LogEscape.controlCharacters(message.description)
        let fileName = (file as NSString).lastPathComponent
        if sink.useSyslog {
            // syslog adds its own timestamp, host and pid.
            sink.write("\(LogLevels.name(level).uppercased()) \(message)\n", level: level)
            return
        }
        let ts = Self.timestamp()
        let name = LogLevels.name(level).uppercased()
        switch format {
        case .structured:
            let obj: [String: Any] = ["timestamp": ts, "level": name, "file": fileName, "line": line,
                                      "target": label, "message": message]
            if let data = try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]),
               let s = String(data: data, encoding: .utf8) {
                sink.write(s + "\n", level: level)
            }
        case .text, .debug:
            var lvl = name.count < 5 ? String(repeating: " ", count: 5 - name.count) + name : name
            if color {
                let code: String
                switch level {
                case .error, .critical: code = "31"
                case .warning: code = "33"
                case .info, .notice: code = "32"
                default: code = "36"
                }
                lvl = "\u{1B}[\(code)m\(lvl)\u{1B}[0m"
            }
            let where_ = format == .debug ? " \(fileName):\(line)" : ""
            sink.write("\(ts) \(lvl)\(where_) \(message)\n", level: level)
        }
    }

    static func timestamp() -> String {
        var tv = timeval()
        gettimeofday(&tv, nil)
        var t = time_t(tv.tv_sec)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tmv.tm_year + 1900, tmv.tm_mon + 1, tmv.tm_mday,
                      tmv.tm_hour, tmv.tm_min, tmv.tm_sec, Int(tv.tv_usec / 1000))
    }
}

/// Where log lines go: stderr, or syslog (daemon mode, `syslog_prog_name`).
public final class LogSink: @unchecked Sendable {
    private let lock = NIOLock()
    private var _useSyslog = false

    public init() {}

    /// Switched once at startup, after the config is read.
    public var useSyslog: Bool {
        get { lock.withLock { _useSyslog } }
        set { lock.withLock { _useSyslog = newValue } }
    }

    /// The local syslog socket; without it syslog(3) silently drops everything.
    public static var syslogAvailable: Bool { access("/dev/log", F_OK) == 0 }

    public func write(_ line: String, level: Logger.Level = .info) {
        lock.withLock {
            if _useSyslog {
                line.withCString { syslogWrite($0, priority: Self.priority(level)) }
            } else {
                FileHandle.standardError.write(line.data(using: .utf8)!)
            }
        }
    }

    static func priority(_ level: Logger.Level) -> Int32 {
        switch level {
        case .trace, .debug: return LOG_DEBUG
        case .info: return LOG_INFO
        case .notice: return LOG_NOTICE
        case .warning: return LOG_WARNING
        case .error: return LOG_ERR
        case .critical: return LOG_CRIT
        }
    }

    private func syslogWrite(_ s: UnsafePointer<CChar>, priority: Int32) {
        withVaList([s]) { vsyslog(priority, "%s", $0) }
    }
}
