import ConfigKit
import Foundation
import Logging
import Testing
@testable import Pooler

#if canImport(Glibc)
import Glibc
#endif

// MARK: - ConfigDiff

private func config(poolSize: Int = 3, adminPassword: String = "admin", shutdownTimeout: UInt64 = 10_000) -> Config {
    var c = Config()
    c.general.adminUsername = "admin"
    c.general.adminPassword = adminPassword
    c.general.shutdownTimeout = shutdownTimeout
    var pool = Pool()
    pool.serverHost = "127.0.0.1"
    pool.users = [User(username: "u", password: "secret-hash", poolSize: poolSize)]
    c.pools["db"] = pool
    return c
}

@Test func configDiffUnchangedIsEmpty() {
    #expect(ConfigDiff.lines(old: config(), new: config()).isEmpty)
}

@Test func configDiffNamesTheChangedSetting() {
    let lines = ConfigDiff.lines(old: config(poolSize: 3), new: config(poolSize: 9))
    #expect(lines == ["pools.db.users[u].pool_size: 3 -> 9"])
    let g = ConfigDiff.lines(old: config(), new: config(shutdownTimeout: 5000))
    #expect(g == ["general.shutdown_timeout: 10000 -> 5000"])
}

@Test func configDiffNeverPrintsSecrets() {
    let lines = ConfigDiff.lines(old: config(adminPassword: "old-pw"), new: config(adminPassword: "new-pw"))
    #expect(lines == ["general.admin_password changed"])
    var added = config()
    added.pools["db"]!.users.append(User(username: "v", password: "pw-v", poolSize: 2))
    let l2 = ConfigDiff.lines(old: config(), new: added)
    #expect(l2.contains("pools.db.users[v].password added"))
    #expect(l2.contains("pools.db.users[v].pool_size added: 2"))
    #expect(!l2.joined().contains("pw-v"))
}

@Test func configDiffPoolRemoved() {
    var none = config()
    none.pools = [:]
    let lines = ConfigDiff.lines(old: config(), new: none)
    #expect(lines.contains("pools.db.server_host removed (was 127.0.0.1)"))
}

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

// MARK: - Spawn readiness

@Test func readinessReady() throws {
    let p = try #require(Spawn.cloexecPipe())
    defer { close(p.read) }
    var one: UInt8 = 1
    _ = write(p.write, &one, 1)
    close(p.write)
    #expect(Spawn.waitForReady(fd: p.read, timeoutMs: 1000) == .ready)
}

@Test func readinessFailureCarriesTheReason() throws {
    let p = try #require(Spawn.cloexecPipe())
    defer { close(p.read) }
    let bytes: [UInt8] = [0] + Array("port in use".utf8)
    _ = bytes.withUnsafeBytes { write(p.write, $0.baseAddress, $0.count) }
    close(p.write)
    #expect(Spawn.waitForReady(fd: p.read, timeoutMs: 1000) == .failed("port in use"))
}

@Test func readinessEOFAndTimeout() throws {
    let p = try #require(Spawn.cloexecPipe())
    close(p.write)
    #expect(Spawn.waitForReady(fd: p.read, timeoutMs: 1000) == .died)
    close(p.read)
    let q = try #require(Spawn.cloexecPipe())
    defer { close(q.read); close(q.write) }
    let t0 = Date()
    #expect(Spawn.waitForReady(fd: q.read, timeoutMs: 100) == .timedOut)
    #expect(Date().timeIntervalSince(t0) < 2)
}

@Test func cloexecPipeIsCloseOnExec() throws {
    let p = try #require(Spawn.cloexecPipe())
    defer { close(p.read); close(p.write) }
    #expect(fcntl(p.read, F_GETFD) & FD_CLOEXEC != 0)
    #expect(fcntl(p.write, F_GETFD) & FD_CLOEXEC != 0)
}

@Test func spawnPassesDescriptorsAndEnvironment() throws {
    let p = try #require(Spawn.cloexecPipe())
    // The child writes its env var and a byte to fd 3 (the pipe's write end mapped there).
    let pid = try Spawn.spawn(path: "/bin/sh", args: ["-c", "printf '%s' \"$LIFECYCLE_T\" >&3"],
                              extraEnv: ["LIFECYCLE_T": "hello"], fds: [(p.write, 3)])
    close(p.write)
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    var buf = [UInt8](repeating: 0, count: 16)
    let n = read(p.read, &buf, 16)
    close(p.read)
    #expect(n == 5)
    #expect(String(decoding: buf[0..<max(0, n)], as: UTF8.self) == "hello")
}

// MARK: - Pid file and socket identity

@Test func pidFileRefusesALiveOwnerButReplacesAStaleOne() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lifecycle-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let path = dir.appendingPathComponent("pid").path
    try "999999\n".write(toFile: path, atomically: true, encoding: .utf8)
    #expect(Daemon.livePid(in: path) == nil)
    #expect(Daemon.writePidFile(path, force: false) == nil)
    #expect(try String(contentsOfFile: path, encoding: .utf8) == "\(getpid())\n")
    Daemon.removePidFileIfOurs(path)
    #expect(!FileManager.default.fileExists(atPath: path))
    try "1\n".write(toFile: path, atomically: true, encoding: .utf8)
    Daemon.removePidFileIfOurs(path)
    #expect(FileManager.default.fileExists(atPath: path), "someone else's pid file stays")
}

@Test func socketFileIdentityChangesWhenReplaced() throws {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("sockid-\(getpid())").path
    defer { unlink(path) }
    try "a".write(toFile: path, atomically: false, encoding: .utf8)
    let a = try #require(SocketFile.identity(path))
    #expect(SocketFile.identity(path) == a)
    unlink(path)
    #expect(SocketFile.identity(path) == nil)
    let keep = path + ".keep"
    try "b".write(toFile: keep, atomically: false, encoding: .utf8)
    defer { unlink(keep) }
    rename(keep, path)
    #expect(SocketFile.identity(path) != nil)
}
