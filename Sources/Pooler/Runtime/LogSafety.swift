import Logging
import NIOConcurrencyHelpers
import NIOCore

/// Makes text safe for one log line.
enum LogEscape {
    /// Control characters become visible escapes, so that a client-supplied string (a user name
    /// with a newline in it) cannot start a forged log line or move the terminal's cursor:
    /// `\n` → `\\n`, `\r` → `\\r`, `\t` → `\\t`, other C0 characters and DEL → `\\xNN`, C1
    /// characters and the Unicode line/paragraph separators → `\\u{NNNN}`. Everything else,
    /// backslashes included, is kept as is. Applied to every log line by `PoolerLogHandler`.
    static func controlCharacters(_ s: String) -> String {
        // Fast path: most lines have nothing to escape.
        if !s.unicodeScalars.contains(where: needsEscape) { return s }
        var out = String.UnicodeScalarView()
        for u in s.unicodeScalars {
            guard needsEscape(u) else {
                out.append(u)
                continue
            }
            let text: String
            switch u {
            case "\n": text = "\\n"
            case "\r": text = "\\r"
            case "\t": text = "\\t"
            default:
                if u.value < 0x80 {
                    let hex = String(u.value, radix: 16, uppercase: true)
                    text = "\\x" + (hex.count < 2 ? "0" + hex : hex)
                } else {
                    text = "\\u{" + String(u.value, radix: 16, uppercase: true) + "}"
                }
            }
            out.append(contentsOf: text.unicodeScalars)
        }
        return String(out)
    }

    @inline(__always)
    private static func needsEscape(_ u: Unicode.Scalar) -> Bool {
        let v = u.value
        return v < 0x20 || (v >= 0x7F && v <= 0x9F) || v == 0x2028 || v == 0x2029
    }
}

/// At most `perSecond` lines in each one-second window; the lines beyond are counted, and the
/// first line of a later window is preceded by how many were left out. Pure (the caller passes
/// the time); `FailedLoginLog` guards one with a lock.
struct LogRateLimiter {
    enum Decision: Equatable {
        /// Write the line, after a "… N suppressed" line when `suppressedBefore` > 0.
        case log(suppressedBefore: Int)
        case suppress
    }

    let perSecond: Int
    private var windowStart: NIODeadline?
    private var inWindow = 0
    private(set) var suppressed = 0

    init(perSecond: Int) {
        self.perSecond = max(1, perSecond)
    }

    mutating func admit(now: NIODeadline) -> Decision {
        if let start = windowStart, now - start < .seconds(1) {
            if inWindow < perSecond {
                inWindow += 1
                return .log(suppressedBefore: takeSuppressed())
            }
            suppressed += 1
            return .suppress
        }
        windowStart = now
        inWindow = 1
        return .log(suppressedBefore: takeSuppressed())
    }

    /// The count to report once the window in which lines were left out has ended and no line
    /// came since (a flood that stopped), then zero; called periodically.
    mutating func flush(now: NIODeadline) -> Int {
        guard suppressed > 0, let start = windowStart, now - start >= .seconds(1) else { return 0 }
        return takeSuppressed()
    }

    private mutating func takeSuppressed() -> Int {
        defer { suppressed = 0 }
        return suppressed
    }
}

/// Failed logins, logged at info level as PostgreSQL does, but at most `perSecond` lines a
/// second so that a flood of bad logins cannot fill the disk; the next line after a burst says
/// how many were left out.
final class FailedLoginLog: @unchecked Sendable {  // state guarded by `lock`
    static let shared = FailedLoginLog(perSecond: 20)

    private let lock = NIOLock()
    private var limiter: LogRateLimiter

    init(perSecond: Int) {
        limiter = LogRateLimiter(perSecond: perSecond)
    }

    /// Writes the count of lines left out when a burst has ended without a later line to carry it
    /// (the runtime calls this once a second).
    func flush(_ logger: Logger, now: NIODeadline = .now()) {
        let suppressed = lock.withLock { limiter.flush(now: now) }
        if suppressed > 0 {
            logger.info("... \(suppressed) more failed logins suppressed (at most \(limiter.perSecond) logged a second)")
        }
    }

    func record(_ logger: Logger, _ line: @autoclosure () -> String, now: NIODeadline = .now()) {
        let decision = lock.withLock { limiter.admit(now: now) }
        switch decision {
        case .suppress:
            return
        case .log(let suppressed):
            if suppressed > 0 {
                logger.info("... \(suppressed) more failed logins suppressed (at most \(limiter.perSecond) logged a second)")
            }
            logger.info("\(line())")
        }
    }
}
