import ConfigKit
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// What the CLI root resolved from flags and environment.
public struct ProcessOptions {
    public var configPath: String
    public var logLevel: Logger.Level
    public var logFormat: LogFormat
    public var color: Bool
    public var daemon: Bool
    public var inheritFd: Int32?

    public init(configPath: String, logLevel: Logger.Level, logFormat: LogFormat, color: Bool, daemon: Bool,
                inheritFd: Int32?) {
        self.configPath = configPath
        self.logLevel = logLevel
        self.logFormat = logFormat
        self.color = color
        self.daemon = daemon
        self.inheritFd = inheritFd
    }
}

/// The process around the pooler: config load, logging, daemon mode, signals, shutdown, upgrade.
public enum ProcessRunner {
    static let exConfig: Int32 = 78
    static let exOSErr: Int32 = 71
    /// Set in a process started by `-d` (the detached daemon itself).
    static let daemonChildEnv = "PG_DOORMAN_DAEMON_CHILD"
    /// Descriptor a child writes one byte to once it serves.
    static let readyFDEnv = "PG_DOORMAN_READY_FD"
    /// Set in a process started by a binary upgrade.
    static let upgradeEnv = "PG_DOORMAN_UPGRADE"

    static func stderr(_ s: String) {
        FileHandle.standardError.write((s + "\n").data(using: .utf8)!)
    }

    public static func main(_ options: ProcessOptions) -> Int32 {
        // The signals we handle stay blocked in every thread (threads inherit the mask; none exists
        // yet): they wait, pending, until the dispatch sources read them. Without this, a signal that
        // came between the listener opening and the sources being armed by libdispatch's manager
        // thread was ignored (SIG_IGN) and lost — a SIGUSR2 right after start did nothing.
        var handled = sigset_t()
        sigemptyset(&handled)
        for sig in [SIGHUP, SIGTERM, SIGINT, SIGUSR2] { sigaddset(&handled, sig) }
        pthread_sigmask(SIG_BLOCK, &handled, nil)
        let env = ProcessInfo.processInfo.environment
        let isDaemonChild = env[daemonChildEnv] == "1"
        let isUpgradeChild = env[upgradeEnv] == "1"

        // Logging first, so that config diagnostics are log records too (JSON with -F structured).
        let levels = LogLevels(startup: options.logLevel)
        let sink = LogSink()
        LoggingSystem.bootstrap { label in
            PoolerLogHandler(label: label, format: options.logFormat, color: options.color, levels: levels, sink: sink)
        }
        let logger = Logger(label: "pg_doorman")

        let loaded = ConfigLoader.load(path: options.configPath)
        if isDaemonChild || loaded.config?.general.syslogProgName != nil {
            let ident = loaded.config?.general.syslogProgName ?? "pg_doorman"
            if LogSink.syslogAvailable {
                openlog(strdup(ident), LOG_PID, LOG_USER)
                sink.useSyslog = true
            } else if !isDaemonChild {
                logger.warning("syslog_prog_name is set but there is no syslog socket (/dev/log): logging to stderr")
            }
        }
        for d in loaded.diagnostics where d.severity == .warning { logger.warning("\(d.description)") }
        guard let config = loaded.config, !loaded.hasErrors else {
            let errors = loaded.diagnostics.filter { $0.severity == .error }
            for d in errors { logger.error("Config parse error: \(d.description)") }
            Spawn.signalFailure(envKey: readyFDEnv, message: "configuration \(options.configPath) has \(errors.count) error(s): "
                + errors.map(\.description).joined(separator: "; "))
            return exConfig
        }
        if options.daemon && !isDaemonChild {
            return Daemon.detach(config: config, logger: logger)
        }
        for d in InertSettings.warnings(config) { logger.warning("\(d.description)") }
        logger.debug("config \(options.configPath): \(config.pools.count) pool(s), listen \(config.general.host):\(config.general.port), shutdown_timeout \(config.general.shutdownTimeout) ms, log format \(options.logFormat.rawValue)\(sink.useSyslog ? " (syslog)" : "")")
        if isUpgradeChild, let fd = options.inheritFd {
            logger.debug("started by a binary upgrade of pid \(getppid()); listening socket inherited as fd \(fd)")
        }

        let runtime = PoolerRuntime(config: config, configPath: options.configPath, logger: logger, logLevels: levels)
        if isUpgradeChild, let last = env[MigrationSender.firstClientIDEnv].flatMap(Int32.init) {
            runtime.continueConnectionIDs(after: last)
        }
        if isUpgradeChild, let fd = env[CancelRelay.envKey].flatMap(Int32.init), fd >= 0 {
            ListenSocket.setCloseOnExec(fd, true)
            runtime.cancelRelay = CancelRelay(fd: fd)
        }
        do {
            try runtime.start(inheritedFD: options.inheritFd)
        } catch {
            logger.error("cannot start: \(error)")
            Spawn.signalFailure(envKey: readyFDEnv, message: "cannot start: \(error)")
            return exConfig
        }
        for p in runtime.pools {
            logger.debug("pool \(p.settings.database)/\(p.settings.user): \(p.settings.mode == .session ? "session" : "transaction") mode, pool_size \(p.settings.poolSize)")
        }
        if isDaemonChild {
            if let problem = Daemon.writePidFile(config.general.daemonPidFile, force: isUpgradeChild) {
                logger.error("\(problem)")
                Spawn.signalFailure(envKey: readyFDEnv, message: problem)
                return exOSErr
            }
            logger.debug("pid file \(config.general.daemonPidFile) names pid \(getpid())")
        }
        let signals = SignalHandlers(runtime: runtime, logger: logger, options: options,
                                     daemon: isDaemonChild, pidFile: config.general.daemonPidFile)
        if let dir = config.general.unixSocketDir {
            signals.unixSocketPath = "\(dir)/.s.PGSQL.\(config.general.port)"
            signals.unixSocketID = SocketFile.identity(signals.unixSocketPath!)
        }
        runtime.onShutdownRequest = { signals.gracefulShutdown(reason: "admin SHUTDOWN") }
        runtime.onUpgradeRequest = { signals.binaryUpgrade(reason: "admin UPGRADE") }
        signals.install()
        logger.info("pg_doorman \(PoolerVersion.semver) started, \(runtime.pools.count) pool(s), pid \(getpid())")
        // systemd first: after an upgrade the old process sends MAINPID=<us> as soon as it reads our byte.
        SystemdNotify.send("READY=1\nMAINPID=\(getpid())")
        Spawn.signalReady(envKey: readyFDEnv)
        if isUpgradeChild, let fd = env[MigrationSender.envKey].flatMap(Int32.init), fd >= 0 {
            // Idle sessions of the old process arrive on this socket with their connections.
            ListenSocket.setCloseOnExec(fd, true)
            runtime.receiveMigratedSessions(socket: fd)
        }
        // Park the main thread; signal handlers end the process.
        while true { sleep(3600) }
    }
}

/// SIGHUP reloads, SIGTERM exits at once, SIGINT shuts down gracefully on a terminal (else upgrades),
/// SIGUSR2 upgrades the binary.
///
/// Signal sources run on `queue` and never block it: the upgrade (which waits up to 10 s for the new
/// process) and the drain (up to shutdown_timeout) run on `work`, so SIGTERM is always handled at once.
final class SignalHandlers {
    let runtime: PoolerRuntime
    let logger: Logger
    let options: ProcessOptions
    let daemon: Bool
    let pidFile: String
    private var sources: [DispatchSourceSignal] = []
    private let queue = DispatchQueue(label: "pg_doorman.signals")
    private let work = DispatchQueue(label: "pg_doorman.lifecycle")
    private let lock = NIOLock()
    private var shuttingDown = false
    private var upgrading = false
    /// Set once a new process serves our port: from then on nothing shared may be removed.
    private var handedOver = false
    /// Our Unix socket file and its (dev, inode) right after we bound it.
    var unixSocketPath: String?
    var unixSocketID: SocketFile.ID?

    /// How long the new process may take to report that it serves.
    static let upgradeReadyTimeoutMs: Int32 = 10_000

    init(runtime: PoolerRuntime, logger: Logger, options: ProcessOptions, daemon: Bool, pidFile: String) {
        self.runtime = runtime
        self.logger = logger
        self.options = options
        self.daemon = daemon
        self.pidFile = pidFile
    }

    func install() {
        // SIGHUP/SIGTERM/SIGINT/SIGUSR2 are blocked in every thread since `main` (ignoring them here
        // would discard one already pending); the dispatch sources read them.
        signal(SIGPIPE, SIG_IGN)
        add(SIGHUP) { [self] in
            work.async { self.reload(reason: "SIGHUP") }
        }
        add(SIGTERM) { [self] in
            logger.info("Got SIGTERM, closing with \(runtime.currentClients) clients")
            if lock.withLock({ handedOver }) {
                // The new process owns the socket file and the pid file.
                for p in runtime.pools { p.shutdown() }
            } else {
                runtime.stop()
                if daemon { Daemon.removePidFileIfOurs(pidFile) }
            }
            exit(0)
        }
        add(SIGINT) { [self] in
            if sigintIsShutdown {
                gracefulShutdown(reason: "SIGINT")
            } else {
                binaryUpgrade(reason: "SIGINT (no terminal)")
            }
        }
        add(SIGUSR2) { [self] in
            binaryUpgrade(reason: "SIGUSR2")
        }
        logger.debug("signal handlers installed: SIGHUP reload, SIGTERM exit, SIGINT \(sigintIsShutdown ? "graceful shutdown" : "upgrade"), SIGUSR2 upgrade")
    }

    /// SIGINT on a foreground terminal (Ctrl+C) is a graceful shutdown; otherwise the legacy upgrade.
    var sigintIsShutdown: Bool {
        (!daemon && isatty(STDIN_FILENO) == 1) || ProcessInfo.processInfo.environment["PG_DOORMAN_CI_SHUTDOWN_ONLY"] == "1"
    }

    private func add(_ sig: Int32, _ handler: @escaping () -> Void) {
        let src = DispatchSource.makeSignalSource(signal: sig, queue: queue)
        src.setEventHandler(handler: handler)
        src.resume()
        sources.append(src)
    }

    /// Re-reads the config: logs every diagnostic and keeps the old config when the file is bad,
    /// else logs each changed setting (or "config unchanged").
    func reload(reason: String) {
        logger.info("\(reason): reloading configuration from \(options.configPath)")
        // The runtime logs each changed setting (or "config unchanged"), the same as admin RELOAD.
        let (_, diagnostics) = runtime.reload()
        let errors = diagnostics.filter { $0.severity == .error }
        if !errors.isEmpty {
            logger.error("\(reason): \(options.configPath) has \(errors.count) error(s); the old configuration stays in effect")
        }
    }

    /// Stops accepting, lets connected clients finish within shutdown_timeout, then exits.
    func gracefulShutdown(reason: String) {
        let proceed: Bool = lock.withLock {
            if shuttingDown { return false }
            shuttingDown = true
            return true
        }
        guard proceed else {
            logger.warning("\(reason): a shutdown is already in progress")
            return
        }
        work.async { [self] in
            logger.info("\(reason): graceful shutdown, \(runtime.currentClients) clients connected; waiting up to \(runtime.config.general.shutdownTimeout) ms")
            runtime.stopAccepting()
            runtime.closeClientsGracefully()
            drainAndExit(upgraded: false)
        }
    }

    /// Waits for our clients (at most shutdown_timeout), then exits. After an upgrade the new process
    /// owns the pid file and the Unix socket path, so neither is removed.
    private func drainAndExit(upgraded: Bool) {
        let timeoutMs = runtime.config.general.shutdownTimeout
        let deadline = Date().addingTimeInterval(Double(timeoutMs) / 1000)
        // A connection accepted just before the listener closed is not counted until its startup
        // packet is processed: linger a moment so it is served instead of cut off by exit().
        let linger = Date().addingTimeInterval(min(1.0, Double(timeoutMs) / 1000))
        var lastReport = Date()
        while (runtime.currentClients > 0 || Date() < linger) && Date() < deadline {
            usleep(50_000)
            if Date().timeIntervalSince(lastReport) >= 5 {
                lastReport = Date()
                logger.info("waiting for \(runtime.currentClients) clients to finish")
            }
        }
        if runtime.currentClients > 0 {
            let why = upgraded ? " (" + PoolerRuntime.describe(runtime.migrationCensus(offering: false)) + ")" : ""
            logger.warning("Graceful shutdown timed out (shutdown_timeout \(timeoutMs) ms) with \(runtime.currentClients) clients\(why); closing forcibly")
        }
        if upgraded, let m = runtime.migrationSender {
            let moved = m.migrated.load(ordering: .relaxed), refused = m.refused.load(ordering: .relaxed)
            let failed = m.failed.load(ordering: .relaxed)
            let why = refused + failed > 0 ? " (\(refused) refused by the new process, \(failed) not sent: channel broken)" : ""
            logger.info("binary upgrade: \(moved) client session(s) moved to the new process, \(runtime.currentClients) stayed here until the end\(why)")
        }
        if upgraded {
            // runtime.stop() would unlink the Unix socket the new process has bound at the same path.
            runtime.stopAccepting()
            for p in runtime.pools { p.shutdown() }
        } else {
            runtime.stop()
            if daemon { Daemon.removePidFileIfOurs(pidFile) }
        }
        logger.info("pg_doorman (pid \(getpid())) exits")
        exit(0)
    }

    /// Validates the binary on disk with `-t`, starts it with our listening socket, waits until it
    /// serves, then stops accepting and lets our clients finish.
    func binaryUpgrade(reason: String) {
        let proceed: Bool = lock.withLock {
            if upgrading || shuttingDown { return false }
            upgrading = true
            return true
        }
        guard proceed else {
            logger.warning("\(reason): an upgrade or shutdown is already in progress; ignored")
            return
        }
        work.async { [self] in
            let done = upgrade(reason: reason)
            lock.withLock {
                upgrading = false
                if done { shuttingDown = true }
            }
            if done { drainAndExit(upgraded: true) }
        }
    }

    private func aborted(_ why: String) {
        logger.error("!!! BINARY UPGRADE ABORTED !!! \(why); this process (pid \(getpid())) keeps serving")
    }

    /// The upgrade up to the hand-over; true when the new process serves and we must drain and exit.
    private func upgrade(reason: String) -> Bool {
        let exe = Spawn.executablePath
        logger.info("\(reason): binary upgrade: validating `\(exe) -t \(options.configPath)`")
        let (rc, output) = Spawn.run(path: exe, args: ["-t", options.configPath])
        guard rc == 0 else {
            for line in output.split(separator: "\n") where !line.isEmpty { logger.error("  \(line)") }
            aborted("`\(exe) -t \(options.configPath)` failed (exit \(rc))")
            return false
        }
        guard let ready = Spawn.cloexecPipe() else {
            aborted("pipe() failed: \(String(cString: strerror(errno)))")
            return false
        }
        // The channel idle client sessions move to the new process on (live migration): ours is
        // migration[0], the new process gets migration[1] as fd 5.
        var migration: [Int32] = [-1, -1]
        if socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &migration) != 0 {
            migration = [-1, -1]
            logger.warning("binary upgrade: socketpair() failed (\(String(cString: strerror(errno)))): clients will finish here instead of moving")
        }
        // Cancels for clients that stay here arrive at the new process: it passes them back on
        // cancelPair (ours [0], its fd 6).
        var cancelPair: [Int32] = [-1, -1]
        if socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &cancelPair) != 0 {
            cancelPair = [-1, -1]
        }
        func closeMigration() { for fd in migration + cancelPair where fd >= 0 { close(fd) } }
        // Stop accepting before the new process starts: new connections wait in the socket's backlog
        // until it accepts them (two processes accepting from one socket race for every connection).
        guard let held = runtime.releaseTCPListener() else {
            close(ready.read); close(ready.write)
            closeMigration()
            aborted("no listening socket to hand over")
            return false
        }
        func resumeAccepting() {
            do {
                try runtime.readoptTCPListener(held)
            } catch {
                logger.error("binary upgrade: cannot accept again on the listening socket: \(error)")
            }
        }
        var args = Array(CommandLine.arguments.dropFirst())
        if let i = args.firstIndex(of: "--inherit-fd"), i + 1 < args.count { args.removeSubrange(i...(i + 1)) }
        args.removeAll { $0.hasPrefix("--inherit-fd=") }
        args += ["--inherit-fd", "3"]
        var extraEnv = [ProcessRunner.readyFDEnv: "4", ProcessRunner.upgradeEnv: "1",
                        MigrationSender.firstClientIDEnv: String(runtime.lastConnectionID)]
        var fds: [(Int32, Int32)] = [(held, 3), (ready.write, 4)]
        if migration[1] >= 0 {
            extraEnv[MigrationSender.envKey] = "5"
            fds.append((migration[1], 5))
        }
        if cancelPair[1] >= 0 {
            extraEnv[CancelRelay.envKey] = "6"
            fds.append((cancelPair[1], 6))
        }
        if daemon { extraEnv[ProcessRunner.daemonChildEnv] = "1" }
        let child: pid_t
        do {
            // Foreground: the new process shares our stdio (same terminal, file or journal) and
            // process group. Daemon: its own session, stdio on /dev/null, logs to syslog.
            child = try Spawn.spawn(path: exe, args: args, extraEnv: extraEnv, removeEnv: ["INHERIT_FD"],
                                    fds: fds,
                                    newSession: daemon, nullStdio: daemon)
        } catch {
            close(ready.read); close(ready.write)
            closeMigration()
            resumeAccepting()
            aborted("\(error)")
            return false
        }
        close(ready.write)
        if migration[1] >= 0 { close(migration[1]) }
        if cancelPair[1] >= 0 { close(cancelPair[1]) }
        logger.info("binary upgrade: started \(exe) as pid \(child); waiting until it serves")
        let result = Spawn.waitForReady(fd: ready.read, timeoutMs: Self.upgradeReadyTimeoutMs)
        close(ready.read)
        guard result == .ready else {
            kill(child, SIGKILL)
            var status: Int32 = 0
            waitpid(child, &status, 0)
            if migration[0] >= 0 { close(migration[0]) }
            if cancelPair[0] >= 0 { close(cancelPair[0]) }
            resumeAccepting()
            switch result {
            case .failed(let why): aborted("the new process (pid \(child)) failed to start: \(why)")
            case .timedOut: aborted("the new process (pid \(child)) did not become ready in \(Self.upgradeReadyTimeoutMs / 1000) s")
            case .died, .ready: aborted("the new process (pid \(child)) exited before it was ready")
            }
            return false
        }
        close(held)  // the new process has its own descriptor for the socket
        SystemdNotify.send("MAINPID=\(child)")
        logger.info("binary upgrade: new process pid \(child) is serving; this process (pid \(getpid())) stops accepting and lets its \(runtime.currentClients) clients finish (up to shutdown_timeout \(runtime.config.general.shutdownTimeout) ms)")
        lock.withLock { handedOver = true }
        // Closing our Unix listener makes NIO unlink the path, which now names the new process's
        // socket: keep a hard link to it and put it back right after.
        var aside: String?
        if let path = unixSocketPath, let id = SocketFile.identity(path), id != unixSocketID {
            let tmp = path + ".upgrade.\(getpid())"
            unlink(tmp)
            if link(path, tmp) == 0 { aside = tmp }
        }
        runtime.stopAccepting()
        if let tmp = aside, let path = unixSocketPath, rename(tmp, path) != 0 {
            logger.warning("could not restore \(path) for the new process: \(String(cString: strerror(errno)))")
            unlink(tmp)
        }
        if cancelPair[0] >= 0 { runtime.serveForwardedCancels(socket: cancelPair[0]) }
        if migration[0] >= 0 {
            logger.info("binary upgrade: handing idle client sessions to pid \(child) (each at its next idle point)")
            runtime.startMigration(MigrationSender(socket: migration[0]))
        }
        return true
    }
}

/// Daemon mode: the foreground process starts a detached copy of itself and exits once it serves.
enum Daemon {
    static func detach(config: Config, logger: Logger) -> Int32 {
        let pidFile = config.general.daemonPidFile
        if let pid = livePid(in: pidFile) {
            logger.error("another pg_doorman (pid \(pid)) is running with pid file \(pidFile); not starting")
            return ProcessRunner.exOSErr
        }
        if let notify = ProcessInfo.processInfo.environment["NOTIFY_SOCKET"], !notify.isEmpty {
            logger.warning("-d/--daemon under systemd (NOTIFY_SOCKET is set): use Type=notify without -d, or Type=forking with PIDFile=\(pidFile)")
        }
        guard let ready = Spawn.cloexecPipe() else { return ProcessRunner.exOSErr }
        umask(0o027)
        let child: pid_t
        do {
            child = try Spawn.spawn(
                path: Spawn.executablePath, args: Array(CommandLine.arguments.dropFirst()),
                extraEnv: [ProcessRunner.daemonChildEnv: "1", ProcessRunner.readyFDEnv: "3"],
                removeEnv: [ProcessRunner.upgradeEnv],
                fds: [(ready.write, 3)], newSession: true, nullStdio: true)
        } catch {
            close(ready.read); close(ready.write)
            logger.error("cannot daemonize: \(error)")
            return ProcessRunner.exOSErr
        }
        close(ready.write)
        let result = Spawn.waitForReady(fd: ready.read, timeoutMs: 15_000)
        close(ready.read)
        let ident = config.general.syslogProgName ?? "pg_doorman"
        let logs = LogSink.syslogAvailable
            ? "logs go to syslog as '\(ident)'"
            : "no syslog socket (/dev/log) on this host, so the daemon's log is discarded; run without -d to see it"
        switch result {
        case .ready:
            print("pg_doorman: running as daemon, pid \(child), pid file \(pidFile); \(logs)")
            return 0
        case .failed(let why):
            logger.error("the daemon (pid \(child)) could not start: \(why)")
        case .timedOut:
            kill(child, SIGKILL)
            logger.error("the daemon (pid \(child)) did not report ready within 15 s; killed; \(logs)")
        case .died:
            logger.error("the daemon (pid \(child)) exited during startup; \(logs)")
        }
        var status: Int32 = 0
        waitpid(child, &status, WNOHANG)
        return 1
    }

    /// The pid in the file if that process is alive and is a pg_doorman.
    static func livePid(in path: String) -> pid_t? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
              let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0,
              kill(pid, 0) == 0 || errno == EPERM
        else { return nil }
        let cmdline = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
        return cmdline.contains("pg_doorman") ? pid : nil
    }

    /// Writes our pid; refuses when another live pooler owns the file (unless this is an upgrade).
    static func writePidFile(_ path: String, force: Bool) -> String? {
        if !force, let other = livePid(in: path), other != getpid() {
            return "another pg_doorman (pid \(other)) owns pid file \(path)"
        }
        let tmp = path + ".tmp.\(getpid())"
        guard FileManager.default.createFile(atPath: tmp, contents: "\(getpid())\n".data(using: .utf8)),
              rename(tmp, path) == 0
        else { return "cannot write pid file \(path): \(String(cString: strerror(errno)))" }
        return nil
    }

    static func removePidFileIfOurs(_ path: String) {
        if let text = try? String(contentsOfFile: path, encoding: .utf8),
           pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)) == getpid() {
            unlink(path)
        }
    }
}

/// Identity of a socket file, to tell ours from the one a new process bound at the same path.
enum SocketFile {
    struct ID: Equatable {
        var dev: UInt64
        var ino: UInt64
    }

    static func identity(_ path: String) -> ID? {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        return ID(dev: UInt64(st.st_dev), ino: UInt64(st.st_ino))
    }
}

/// Minimal sd_notify: one datagram to $NOTIFY_SOCKET when systemd started us with Type=notify.
enum SystemdNotify {
    static func send(_ message: String) {
        guard let path = ProcessInfo.processInfo.environment["NOTIFY_SOCKET"], !path.isEmpty else { return }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }  // abstract namespace
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard bytes.count < capacity else { return }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        let len = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count)
        _ = message.withCString { msg in
            withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, msg, strlen(msg), 0, $0, len)
                }
            }
        }
    }
}
