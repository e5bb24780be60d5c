import ConfigKit
import Foundation
import Logging
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
        let env = ProcessInfo.processInfo.environment
        let loaded = ConfigLoader.load(path: options.configPath)
        for d in loaded.diagnostics where d.severity == .warning { stderr(d.description) }
        guard let config = loaded.config, !loaded.hasErrors else {
            for d in loaded.diagnostics where d.severity == .error { stderr("Config parse error: \(d.description)") }
            return exConfig
        }
        let isDaemonChild = env[daemonChildEnv] == "1"
        let isUpgradeChild = env[upgradeEnv] == "1"
        if options.daemon && !isDaemonChild {
            return Daemon.detach(config: config)
        }

        let levels = LogLevels(startup: options.logLevel)
        let sink = LogSink()
        if isDaemonChild || config.general.syslogProgName != nil {
            let ident = config.general.syslogProgName ?? "pg_doorman"
            openlog(strdup(ident), LOG_PID, LOG_USER)
            sink.useSyslog = true
        }
        LoggingSystem.bootstrap { label in
            PoolerLogHandler(label: label, format: sink.useSyslog ? .text : options.logFormat,
                             color: options.color && !sink.useSyslog, levels: levels, sink: sink)
        }
        let logger = Logger(label: "pg_doorman")
        let runtime = PoolerRuntime(config: config, configPath: options.configPath, logger: logger, logLevels: levels)
        do {
            try runtime.start(inheritedFD: options.inheritFd)
        } catch {
            logger.error("cannot start: \(error)")
            stderr("pg_doorman: cannot start: \(error)")
            return exConfig
        }
        if isDaemonChild {
            if let problem = Daemon.writePidFile(config.general.daemonPidFile, force: isUpgradeChild) {
                logger.error("\(problem)")
                return exOSErr
            }
        }
        logger.info("pg_doorman \(PoolerVersion.semver) started, \(runtime.pools.count) pool(s), pid \(getpid())")
        Spawn.signalReady(envKey: readyFDEnv)
        SystemdNotify.send("READY=1\nMAINPID=\(getpid())")

        let signals = SignalHandlers(runtime: runtime, logger: logger, options: options,
                                     daemon: isDaemonChild, pidFile: config.general.daemonPidFile)
        runtime.onShutdownRequest = { signals.gracefulShutdown(reason: "admin SHUTDOWN") }
        runtime.onUpgradeRequest = { signals.binaryUpgrade(reason: "admin UPGRADE") }
        signals.install()
        // Park the main thread; signal handlers end the process.
        while true { sleep(3600) }
    }
}

/// SIGHUP reloads, SIGTERM exits at once, SIGINT shuts down gracefully on a terminal (else upgrades),
/// SIGUSR2 upgrades the binary.
final class SignalHandlers {
    let runtime: PoolerRuntime
    let logger: Logger
    let options: ProcessOptions
    let daemon: Bool
    let pidFile: String
    private var sources: [DispatchSourceSignal] = []
    private let queue = DispatchQueue(label: "pg_doorman.signals")
    private var shuttingDown = false
    private var upgrading = false

    init(runtime: PoolerRuntime, logger: Logger, options: ProcessOptions, daemon: Bool, pidFile: String) {
        self.runtime = runtime
        self.logger = logger
        self.options = options
        self.daemon = daemon
        self.pidFile = pidFile
    }

    func install() {
        for sig in [SIGHUP, SIGTERM, SIGINT, SIGUSR2, SIGPIPE] { signal(sig, SIG_IGN) }
        add(SIGHUP) { [self] in
            logger.info("Got SIGHUP, reloading configuration")
            let (changed, diagnostics) = runtime.reload()
            if !changed && !diagnostics.contains(where: { $0.severity == .error }) { logger.info("config unchanged") }
        }
        add(SIGTERM) { [self] in
            logger.info("Got SIGTERM, closing with \(runtime.currentClients) clients")
            runtime.stop()
            if daemon { Daemon.removePidFileIfOurs(pidFile) }
            exit(0)
        }
        add(SIGINT) { [self] in
            let foregroundTTY = !daemon && isatty(STDIN_FILENO) == 1
            if foregroundTTY || ProcessInfo.processInfo.environment["PG_DOORMAN_CI_SHUTDOWN_ONLY"] == "1" {
                gracefulShutdown(reason: "SIGINT")
            } else {
                binaryUpgrade(reason: "SIGINT (no terminal)")
            }
        }
        add(SIGUSR2) { [self] in
            binaryUpgrade(reason: "SIGUSR2")
        }
    }

    private func add(_ sig: Int32, _ handler: @escaping () -> Void) {
        let src = DispatchSource.makeSignalSource(signal: sig, queue: queue)
        src.setEventHandler(handler: handler)
        src.resume()
        sources.append(src)
    }

    /// Stops accepting, lets connected clients finish within shutdown_timeout, then exits.
    func gracefulShutdown(reason: String) {
        queue.async { [self] in
            if shuttingDown { return }
            shuttingDown = true
            logger.info("\(reason): graceful shutdown, \(runtime.currentClients) clients connected")
            runtime.stopAccepting()
            runtime.closeClientsGracefully()
            drainAndExit(removePidFile: daemon)
        }
    }

    private func drainAndExit(removePidFile: Bool) {
        let timeoutMs = runtime.config.general.shutdownTimeout
        let deadline = Date().addingTimeInterval(Double(timeoutMs) / 1000)
        while runtime.currentClients > 0 && Date() < deadline { usleep(50_000) }
        if runtime.currentClients > 0 {
            logger.warning("shutdown_timeout (\(timeoutMs) ms) reached with \(runtime.currentClients) clients; closing forcibly")
        }
        runtime.stop()
        if removePidFile { Daemon.removePidFileIfOurs(pidFile) }
        logger.info("pg_doorman exits")
        exit(0)
    }

    /// Validates the binary on disk with `-t`, starts it with our listening socket, waits until it
    /// serves, then stops accepting and lets our clients finish.
    func binaryUpgrade(reason: String) {
        queue.async { [self] in
            if upgrading || shuttingDown {
                logger.warning("\(reason): an upgrade or shutdown is already in progress")
                return
            }
            upgrading = true
            defer { upgrading = false }
            let exe = Spawn.executablePath
            logger.info("\(reason): binary upgrade: validating \(exe) -t \(options.configPath)")
            let (rc, output) = Spawn.run(path: exe, args: ["-t", options.configPath])
            guard rc == 0 else {
                logger.error("BINARY UPGRADE ABORTED: `\(exe) -t \(options.configPath)` failed (exit \(rc)); still serving with the old process. \(output.replacingOccurrences(of: "\n", with: " | "))")
                return
            }
            var pipeFDs: [Int32] = [0, 0]
            guard pipe(&pipeFDs) == 0 else {
                logger.error("BINARY UPGRADE ABORTED: pipe() failed: \(String(cString: strerror(errno)))")
                return
            }
            let listenFD = runtime.listenerFD
            var args = Array(CommandLine.arguments.dropFirst())
            if let i = args.firstIndex(of: "--inherit-fd"), i + 1 < args.count { args.removeSubrange(i...(i + 1)) }
            args.removeAll { $0.hasPrefix("--inherit-fd=") }
            args += ["--inherit-fd", "3"]
            var extraEnv = [ProcessRunner.readyFDEnv: "4", ProcessRunner.upgradeEnv: "1"]
            if daemon { extraEnv[ProcessRunner.daemonChildEnv] = "1" }
            let child: pid_t
            do {
                child = try Spawn.spawn(path: exe, args: args, extraEnv: extraEnv,
                                        fds: [(listenFD, 3), (pipeFDs[1], 4)], newSession: daemon, nullStdio: daemon)
            } catch {
                close(pipeFDs[0]); close(pipeFDs[1])
                logger.error("BINARY UPGRADE ABORTED: \(error)")
                return
            }
            close(pipeFDs[1])
            let ready = Spawn.waitForByte(fd: pipeFDs[0], timeoutMs: 10_000)
            close(pipeFDs[0])
            guard ready else {
                kill(child, SIGKILL)
                var status: Int32 = 0
                waitpid(child, &status, 0)
                logger.error("BINARY UPGRADE ABORTED: the new process (pid \(child)) did not become ready in 10 s; still serving")
                return
            }
            shuttingDown = true
            SystemdNotify.send("MAINPID=\(child)")
            logger.info("binary upgrade: new process pid \(child) is serving; this process stops accepting and drains \(runtime.currentClients) clients")
            runtime.stopAccepting()
            // The new process owns the pid file now.
            drainAndExit(removePidFile: false)
        }
    }
}

/// Daemon mode: the foreground process starts a detached copy of itself and exits once it serves.
enum Daemon {
    static func detach(config: Config) -> Int32 {
        let pidFile = config.general.daemonPidFile
        if let pid = livePid(in: pidFile) {
            ProcessRunner.stderr("pg_doorman: another pg_doorman (pid \(pid)) is running with pid file \(pidFile); not starting")
            return ProcessRunner.exOSErr
        }
        var pipeFDs: [Int32] = [0, 0]
        guard pipe(&pipeFDs) == 0 else { return ProcessRunner.exOSErr }
        umask(0o027)
        let child: pid_t
        do {
            child = try Spawn.spawn(
                path: Spawn.executablePath, args: Array(CommandLine.arguments.dropFirst()),
                extraEnv: [ProcessRunner.daemonChildEnv: "1", ProcessRunner.readyFDEnv: "3"],
                fds: [(pipeFDs[1], 3)], newSession: true, nullStdio: true)
        } catch {
            ProcessRunner.stderr("pg_doorman: cannot daemonize: \(error)")
            return ProcessRunner.exOSErr
        }
        close(pipeFDs[1])
        let ready = Spawn.waitForByte(fd: pipeFDs[0], timeoutMs: 15_000)
        close(pipeFDs[0])
        let ident = config.general.syslogProgName ?? "pg_doorman"
        if ready {
            print("pg_doorman: running as daemon, pid \(child), pid file \(pidFile); logs go to syslog as '\(ident)'")
            return 0
        }
        ProcessRunner.stderr("pg_doorman: the daemon (pid \(child)) did not start; see syslog ('\(ident)') for why")
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
