import NIOCore
import Testing
@testable import Pooler

@Suite struct LogEscapeTests {
    @Test func controlCharactersBecomeVisibleEscapes() {
        #expect(LogEscape.controlCharacters("alice") == "alice")
        #expect(LogEscape.controlCharacters("evil\n2026-01-01T00:00:00.000Z  INFO forged")
                == "evil\\n2026-01-01T00:00:00.000Z  INFO forged")
        #expect(LogEscape.controlCharacters("a\rb\tc") == "a\\rb\\tc")
        #expect(LogEscape.controlCharacters("\u{1B}[31mred\u{0}\u{7F}") == "\\x1B[31mred\\x00\\x7F")
        #expect(LogEscape.controlCharacters("x\u{85}y\u{2028}z") == "x\\u{85}y\\u{2028}z")
        // Printable text, backslashes and non-ASCII letters are kept.
        #expect(LogEscape.controlCharacters("пользователь \\n ü") == "пользователь \\n ü")
        #expect(!LogEscape.controlCharacters("a\nb\u{B}c").contains { $0.isNewline })
    }
}

@Suite struct LogRateLimiterTests {
    @Test func atMostNPerSecondThenOneSummary() {
        var limiter = LogRateLimiter(perSecond: 3)
        var now = NIODeadline.uptimeNanoseconds(5_000_000_000)
        var logged = 0
        for _ in 0..<100 {
            if case .log = limiter.admit(now: now) { logged += 1 }
            now = now + .milliseconds(1)
        }
        #expect(logged == 3)
        #expect(limiter.suppressed == 97)
        now = now + .seconds(1)
        #expect(limiter.admit(now: now) == .log(suppressedBefore: 97))
        #expect(limiter.admit(now: now) == .log(suppressedBefore: 0))
        #expect(limiter.admit(now: now) == .log(suppressedBefore: 0))
        #expect(limiter.admit(now: now) == .suppress)
    }

    @Test func aBurstThatStoppedIsReportedByFlush() {
        var limiter = LogRateLimiter(perSecond: 1)
        let t0 = NIODeadline.uptimeNanoseconds(5_000_000_000)
        #expect(limiter.admit(now: t0) == .log(suppressedBefore: 0))
        #expect(limiter.admit(now: t0 + .milliseconds(10)) == .suppress)
        #expect(limiter.admit(now: t0 + .milliseconds(20)) == .suppress)
        #expect(limiter.flush(now: t0 + .milliseconds(500)) == 0)  // the window is still open
        #expect(limiter.flush(now: t0 + .milliseconds(1000)) == 2)
        #expect(limiter.flush(now: t0 + .milliseconds(2000)) == 0)
        #expect(limiter.admit(now: t0 + .milliseconds(2000)) == .log(suppressedBefore: 0))
    }
}
