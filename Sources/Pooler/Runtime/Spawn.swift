import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Starting copies of ourselves (daemon mode, binary upgrade) without fork() in a threaded process.
enum Spawn {
    /// The absolute path of the executable as it was started (the file on disk, which a binary
    /// upgrade may have replaced).
    static let executablePath: String = {
        let arg0 = CommandLine.arguments[0]
        if arg0.hasPrefix("/") { return arg0 }
        if arg0.contains("/") { return FileManager.default.currentDirectoryPath + "/" + arg0 }
        // Found through PATH.
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            let p = "\(dir)/\(arg0)"
            if access(p, X_OK) == 0 { return p }
        }
        return arg0
    }()

    /// posix_spawn `path` with `args`; `fds` maps (source descriptor → descriptor in the child).
    /// stdio: when `nullStdio`, stdin/stdout/stderr go to /dev/null.
    static func spawn(path: String, args: [String], extraEnv: [String: String], fds: [(Int32, Int32)] = [],
                      newSession: Bool = false, nullStdio: Bool = false) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if nullStdio {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        }
        for (src, dst) in fds {
            // dup2 onto a different number clears FD_CLOEXEC in the child.
            posix_spawn_file_actions_adddup2(&actions, src, dst)
        }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // 0x80 = POSIX_SPAWN_SETSID (glibc 2.26+), not imported into Swift.
        if newSession { posix_spawnattr_setflags(&attr, Int16(0x80)) }
        var env = ProcessInfo.processInfo.environment
        for (k, v) in extraEnv { env[k] = v }
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + args).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attr, argv, envp)
        guard rc == 0 else { throw ListenSocket.Failure(description: "cannot start \(path): \(String(cString: strerror(rc)))") }
        return pid
    }

    /// Runs `path args` to completion and returns its exit status and combined output.
    static func run(path: String, args: [String]) -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        do { try p.run() } catch { return (-1, "\(error)") }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// Waits up to `timeoutMs` for one byte on `fd`.
    static func waitForByte(fd: Int32, timeoutMs: Int32) -> Bool {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let rc = poll(&pfd, 1, timeoutMs)
        guard rc > 0 else { return false }
        var b: UInt8 = 0
        return read(fd, &b, 1) == 1
    }

    /// Tells the process that started us (binary upgrade or daemon parent) that we are serving.
    static func signalReady(envKey: String) {
        guard let s = ProcessInfo.processInfo.environment[envKey], let fd = Int32(s) else { return }
        var b: UInt8 = 1
        _ = write(fd, &b, 1)
        close(fd)
        unsetenv(envKey)
    }
}
