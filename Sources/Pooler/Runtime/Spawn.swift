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

    /// A pipe whose ends are close-on-exec (a spawned child gets only the copies it is handed, so the
    /// reader sees EOF as soon as the child dies).
    static func cloexecPipe() -> (read: Int32, write: Int32)? {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return nil }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return (fds[0], fds[1])
    }

    /// posix_spawn `path` with `args`; `fds` maps (source descriptor → descriptor in the child).
    /// The child gets stdio and those descriptors, nothing else (every other one is closed in it).
    /// stdio: when `nullStdio`, stdin/stdout/stderr go to /dev/null.
    static func spawn(path: String, args: [String], extraEnv: [String: String], removeEnv: [String] = [],
                      fds: [(Int32, Int32)] = [], newSession: Bool = false, nullStdio: Bool = false) throws -> pid_t {
        // Sources are first copied above every target so that no dup2 clobbers another source and no
        // source already sits on its target (dup2(fd, fd) would keep FD_CLOEXEC set).
        var copies: [(Int32, Int32)] = []
        defer { for (c, _) in copies { close(c) } }
        for (src, dst) in fds {
            let c = fcntl(src, F_DUPFD_CLOEXEC, 64)
            guard c >= 0 else {
                throw ListenSocket.Failure(description: "cannot duplicate descriptor \(src): \(String(cString: strerror(errno)))")
            }
            copies.append((c, dst))
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if nullStdio {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        }
        for (src, dst) in copies {
            // dup2 onto a different number clears FD_CLOEXEC in the child.
            posix_spawn_file_actions_adddup2(&actions, src, dst)
        }
        // Only stdio and the handed descriptors cross the exec. SwiftNIO opens accepted client
        // sockets and server connections without close-on-exec, so without this the new process
        // would hold a copy of every connection the old one had: a client the old process ends
        // would never see EOF, and PostgreSQL backends it closes would stay connected. Closing in
        // the child (glibc runs close_range after the dup2s) also covers sockets another thread
        // opens while we spawn, which marking descriptors in the parent could not.
        let firstClosed = (fds.map { $0.1 }.max() ?? 2) + 1
        let rcClose = closeFrom(&actions, max(3, firstClosed))
        guard rcClose == 0 else {
            throw ListenSocket.Failure(description: "cannot prepare the descriptors of \(path): \(String(cString: strerror(rcClose)))")
        }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // The child starts with default signal handling and nothing blocked, whatever this thread had
        // (we ignore SIGHUP/SIGTERM/SIGINT/SIGUSR2/SIGPIPE and the dispatch threads block signals).
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for sig in [SIGHUP, SIGTERM, SIGINT, SIGUSR2, SIGPIPE, SIGCHLD] { sigaddset(&defaults, sig) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        // 0x80 = POSIX_SPAWN_SETSID (glibc 2.26+), not imported into Swift.
        var flags = Int32(POSIX_SPAWN_SETSIGDEF) | Int32(POSIX_SPAWN_SETSIGMASK)
        if newSession { flags |= 0x80 }
        posix_spawnattr_setflags(&attr, Int16(flags))
        var env = ProcessInfo.processInfo.environment
        for k in removeEnv { env.removeValue(forKey: k) }
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

    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32

    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34+), which Swift's Glibc module does not
    /// import; looked up once.
    private static let addCloseFrom: AddCloseFrom? = {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np")
        else { return nil }
        return unsafeBitCast(sym, to: AddCloseFrom.self)
    }()

    /// Adds "close every descriptor from `first` on" to `actions`. Without the glibc call (older
    /// glibc), every descriptor open now at or above `first` gets its own close action (a socket
    /// opened by another thread in between would then still cross the exec).
    private static func closeFrom(_ actions: inout posix_spawn_file_actions_t, _ first: Int32) -> Int32 {
        if let addCloseFrom { return addCloseFrom(&actions, first) }
        let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        for fd in open.compactMap({ Int32($0) }) where fd >= first {
            // The directory's own descriptor is gone by the time the child runs: ignore failures.
            _ = posix_spawn_file_actions_addclose(&actions, fd)
        }
        return 0
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

    enum Readiness: Equatable {
        case ready
        /// The child reported why it could not start.
        case failed(String)
        /// EOF without a word (the child died) or nothing within the timeout.
        case died
        case timedOut
    }

    /// Waits up to `timeoutMs` for the child's report on `fd`: one byte 1 (serving), or 0 followed by
    /// the reason it failed.
    static func waitForReady(fd: Int32, timeoutMs: Int32) -> Readiness {
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(timeoutMs) * 1_000_000
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while true {
            let now = DispatchTime.now().uptimeNanoseconds
            if now >= deadline { return .timedOut }
            let rc = poll(&pfd, 1, Int32((deadline - now) / 1_000_000) + 1)
            if rc < 0 && errno == EINTR { continue }
            if rc == 0 { return .timedOut }
            if rc < 0 { return .died }
            break
        }
        var b: UInt8 = 0
        let n = read(fd, &b, 1)
        if n == 1 && b == 1 { return .ready }
        if n == 1 && b == 0 {
            var text: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 4096)
            while text.count < 65536 {
                let m = read(fd, &buf, buf.count)
                if m <= 0 { break }
                text += buf[0..<m]
            }
            return .failed(String(decoding: text, as: UTF8.self))
        }
        return .died
    }

    /// Tells the process that started us (binary upgrade or daemon parent) that we are serving.
    static func signalReady(envKey: String) {
        guard let fd = takeFD(envKey) else { return }
        var b: UInt8 = 1
        _ = write(fd, &b, 1)
        close(fd)
    }

    /// Tells the process that started us why we could not start.
    static func signalFailure(envKey: String, message: String) {
        guard let fd = takeFD(envKey) else { return }
        let bytes: [UInt8] = [0] + Array(message.utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    private static func takeFD(_ envKey: String) -> Int32? {
        guard let s = getenv(envKey).map({ String(cString: $0) }), let fd = Int32(s), fd > 2 else { return nil }
        unsetenv(envKey)
        return fd
    }
}
