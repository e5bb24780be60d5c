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

/// The process around the pooler: config load, logging, signals, shutdown.
public enum ProcessRunner {
    static let exConfig: Int32 = 78

    public static func main(_ options: ProcessOptions) -> Int32 {
        let loaded = ConfigLoader.load(path: options.configPath)
        for d in loaded.diagnostics where d.severity == .warning {
            FileHandle.standardError.write("warning: \(d.description)\n".data(using: .utf8)!)
        }
        guard let config = loaded.config, !loaded.hasErrors else {
            for d in loaded.diagnostics where d.severity == .error {
                FileHandle.standardError.write("Config parse error: \(d.description)\n".data(using: .utf8)!)
            }
            return exConfig
        }
        let levels = LogLevels(startup: options.logLevel)
        let sink = LogSink()
        LoggingSystem.bootstrap { label in
            PoolerLogHandler(label: label, format: options.logFormat, color: options.color, levels: levels, sink: sink)
        }
        let logger = Logger(label: "pg_doorman")
        let runtime = PoolerRuntime(config: config, configPath: options.configPath, logger: logger, logLevels: levels)
        do {
            try runtime.start()
        } catch {
            logger.error("cannot listen on \(config.general.host):\(config.general.port): \(error)")
            return exConfig
        }
        logger.info("pg_doorman \(PoolerVersion.semver) started, \(runtime.pools.count) pool(s), pid \(getpid())")

        let signals = SignalHandlers(runtime: runtime, logger: logger)
        runtime.onShutdownRequest = { signals.gracefulShutdown(reason: "admin SHUTDOWN") }
        runtime.onUpgradeRequest = { logger.warning("UPGRADE: binary upgrade is not available in this build") }
        signals.install()
        // Park the main thread; signal handlers end the process.
        while true { sleep(3600) }
    }
}

/// SIGHUP reloads, SIGTERM exits at once, SIGINT shuts down gracefully.
final class SignalHandlers {
    let runtime: PoolerRuntime
    let logger: Logger
    private var sources: [DispatchSourceSignal] = []
    private let queue = DispatchQueue(label: "pg_doorman.signals")
    private var shuttingDown = false

    init(runtime: PoolerRuntime, logger: Logger) {
        self.runtime = runtime
        self.logger = logger
    }

    func install() {
        for sig in [SIGHUP, SIGTERM, SIGINT, SIGUSR2, SIGPIPE] { signal(sig, SIG_IGN) }
        add(SIGHUP) { [self] in
            logger.info("Got SIGHUP, reloading configuration")
            _ = runtime.reload()
        }
        add(SIGTERM) { [self] in
            logger.info("Got SIGTERM, closing with \(runtime.currentClients) clients")
            runtime.stop()
            exit(0)
        }
        add(SIGINT) { [self] in
            gracefulShutdown(reason: "SIGINT")
        }
        add(SIGUSR2) { [self] in
            logger.warning("Got SIGUSR2: binary upgrade is not available in this build; still serving")
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
            let timeoutMs = runtime.config.general.shutdownTimeout
            logger.info("\(reason): graceful shutdown, waiting up to \(timeoutMs) ms for \(runtime.currentClients) clients")
            runtime.stop()
            let deadline = Date().addingTimeInterval(Double(timeoutMs) / 1000)
            while runtime.currentClients > 0 && Date() < deadline { usleep(100_000) }
            if runtime.currentClients > 0 {
                logger.warning("graceful shutdown timed out with \(runtime.currentClients) clients; closing forcibly")
            }
            exit(0)
        }
    }
}
