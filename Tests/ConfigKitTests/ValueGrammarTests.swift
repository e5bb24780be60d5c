import Testing
@testable import ConfigKit

@Suite struct ValueGrammarTests {
    @Test func durations() throws {
        #expect(try ValueGrammar.parseDuration("5s") == 5_000)
        #expect(try ValueGrammar.parseDuration("100ms") == 100)
        #expect(try ValueGrammar.parseDuration("1m") == 60_000)
        #expect(try ValueGrammar.parseDuration("2h") == 7_200_000)
        #expect(try ValueGrammar.parseDuration("1d") == 86_400_000)
        #expect(try ValueGrammar.parseDuration("3000") == 3_000)
        #expect(try ValueGrammar.parseDuration(" 5 MS ") == 5)
        #expect(try ValueGrammar.parseDuration("10M") == 600_000)
    }

    @Test func badDurations() {
        #expect(throws: GrammarError("invalid number in duration: '-5'")) { try ValueGrammar.parseDuration("-5s") }
        #expect(throws: GrammarError("invalid number in duration: '1.5'")) { try ValueGrammar.parseDuration("1.5s") }
        #expect(throws: GrammarError("invalid duration format: '5x'. Expected a number or a string with suffix "
            + "(ms, s, m, h, d)")) { try ValueGrammar.parseDuration("5x") }
        #expect(throws: GrammarError.self) { try ValueGrammar.parseDuration("") }
        // Overflow is rejected (the reference wraps silently).
        #expect(throws: GrammarError.self) { try ValueGrammar.parseDuration("300000000000000d") }
        #expect(throws: GrammarError.self) { try ValueGrammar.parseDuration("99999999999999999999") }
    }

    @Test func byteSizes() throws {
        #expect(try ValueGrammar.parseByteSize("256MB") == 256 << 20)
        #expect(try ValueGrammar.parseByteSize("1M") == 1 << 20)
        #expect(try ValueGrammar.parseByteSize("64KB") == 64 << 10)
        #expect(try ValueGrammar.parseByteSize("1G") == 1 << 30)
        #expect(try ValueGrammar.parseByteSize("5B") == 5)
        #expect(try ValueGrammar.parseByteSize("1024") == 1024)
        #expect(try ValueGrammar.parseByteSize("8 kb") == 8192)
    }

    @Test func badByteSizes() {
        // Like the reference, "1TB" is read as number "1T" with suffix "B".
        #expect(throws: GrammarError("invalid number in byte size: '1T'")) { try ValueGrammar.parseByteSize("1TB") }
        #expect(throws: GrammarError("invalid byte size format: 'lots'. Expected a number or a string with suffix "
            + "(B, K, KB, M, MB, G, GB)")) { try ValueGrammar.parseByteSize("lots") }
        #expect(throws: GrammarError("invalid number in byte size: '1.5'")) { try ValueGrammar.parseByteSize("1.5MB") }
        #expect(throws: GrammarError.self) { try ValueGrammar.parseByteSize("-1K") }
        #expect(throws: GrammarError.self) { try ValueGrammar.parseByteSize("17179869184GB") }
    }

    @Test func octalModes() throws {
        #expect(try ValueGrammar.parseOctalMode("0600") == 0o600)
        #expect(try ValueGrammar.parseOctalMode("644") == 0o644)
        #expect(try ValueGrammar.parseOctalMode("0o755") == 0o755)
        #expect(try ValueGrammar.parseOctalMode("0000") == 0)
        #expect(throws: GrammarError.self) { try ValueGrammar.parseOctalMode("01600") }
        #expect(throws: GrammarError.self) { try ValueGrammar.parseOctalMode("12345") }
        #expect(throws: GrammarError.self) { try ValueGrammar.parseOctalMode("0800") }
        #expect(throws: GrammarError("general.unix_socket_mode must not be empty")) {
            try ValueGrammar.parseOctalMode(" ")
        }
    }

    @Test func humanFormatting() {
        #expect(ValueGrammar.formatDuration(3000) == "3s")
        #expect(ValueGrammar.formatDuration(600_000) == "10m")
        #expect(ValueGrammar.formatDuration(1500) == "1500ms")
        #expect(ValueGrammar.formatDuration(86_400_000) == "1d")
        #expect(ValueGrammar.formatByteSize(1_048_576) == "1MB")
        #expect(ValueGrammar.formatByteSize(268_435_456) == "256MB")
        #expect(ValueGrammar.formatByteSize(1000) == "1000B")
    }

    @Test func poolModeParsing() {
        #expect(PoolMode(parsing: "Session") == .session)
        #expect(PoolMode(parsing: "TRANSACTION") == .transaction)
        #expect(PoolMode(parsing: "statement") == nil)
    }

    @Test func startupParameterRules() {
        let p = StartupParameters.problems(["user": "x", "_pq_.x": "1", "1bad": "v", "TimeZone": "UTC",
                                            "timezone": "UTC", "ok": "a\u{0}b"], scope: "s")
        #expect(p.contains("s: 'user' is reserved and managed by pg_doorman"))
        #expect(p.contains("s: '_pq_.x' uses the reserved '_pq_.' prefix"))
        #expect(p.contains("s: '1bad' is not a valid GUC name (expected [A-Za-z_][A-Za-z0-9_.]*)"))
        #expect(p.contains("s: 'TimeZone' and 'timezone' both refer to PG GUC 'TimeZone'; keep one"))
        #expect(p.contains("s: value for 'ok' contains a null byte"))
        #expect(StartupParameters.canonicalName("DATESTYLE") == "DateStyle")
        #expect(StartupParameters.canonicalName("Search_Path") == "search_path")
    }
}
