import Foundation
import Logging
import Testing
@testable import Pooler

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Log levels and handler

@Test func logLevelParsing() {
    #expect(LogLevels.parseLevel("DEBUG") == .debug)
    #expect(LogLevels.parseLevel("warning") == .warning)
    #expect(LogLevels.parseLevel("loud") == nil)
    let l = LogLevels(startup: .info)
    #expect(!l.allows(.debug, label: "pg_doorman"))
    #expect(l.allows(.info, label: "pg_doorman"))
    if case .failure = l.set("warn,pg_doorman::pool=debug") { Issue.record("valid filter rejected") }
    #expect(l.allows(.debug, label: "pg_doorman::pool"))
    #expect(!l.allows(.info, label: "pg_doorman"))
    if case .success = l.set("info,debug") { Issue.record("two base levels accepted") }
    _ = l.set("default")
    #expect(l.current == "info")
}

@Test func syslogPriorities() {
    #expect(LogSink.priority(.error) == LOG_ERR)
    #expect(LogSink.priority(.warning) == LOG_WARNING)
    #expect(LogSink.priority(.debug) == LOG_DEBUG)
}

@Test func timestampFormat() {
    let ts = PoolerLogHandler.timestamp()
    #expect(ts.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"#, options: .regularExpression) != nil)
}
