import Foundation
import Testing
@testable import Pooler

#if canImport(Glibc)
import Glibc
#endif

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

@Test func spawnedChildHoldsOnlyStdioAndTheHandedDescriptors() throws {
    // A descriptor without close-on-exec, like SwiftNIO's accepted and connected sockets.
    // (Above the descriptors the child is handed, which a dup2 would replace.)
    let devNull = open("/dev/null", O_RDONLY)
    try #require(devNull >= 0)
    let leaked = fcntl(devNull, F_DUPFD, 20)
    close(devNull)
    try #require(leaked >= 20)
    defer { close(leaked) }
    #expect(fcntl(leaked, F_GETFD) & FD_CLOEXEC == 0)
    let p = try #require(Spawn.cloexecPipe())
    // The child reports on fd 3 (handed to it) whether the other descriptor crossed the exec.
    let script = "if [ -e /proc/$$/fd/\(leaked) ]; then printf leaked >&3; else printf closed >&3; fi"
    let pid = try Spawn.spawn(path: "/bin/sh", args: ["-c", script], extraEnv: [:], fds: [(p.write, 3)])
    close(p.write)
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    var buf = [UInt8](repeating: 0, count: 16)
    let n = read(p.read, &buf, buf.count)
    close(p.read)
    #expect(String(decoding: buf[0..<max(0, n)], as: UTF8.self) == "closed")
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
