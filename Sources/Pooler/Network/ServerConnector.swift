import Atomics
import NIOCore
import NIOPosix

/// Opens and logs in new server connections for pools.
final class ServerConnector {
    private let nextID = ManagedAtomic<Int>(1)
    let tcpNoDelay: Bool
    /// TLS contexts (client-facing and per pool server-facing), rebuilt at start and RELOAD.
    let tls = TLSContexts()

    /// RelayLoops by their NIO companion's identity (empty: no RelayLoops).
    let relays: [ObjectIdentifier: RelayLoop]

    init(tcpNoDelay: Bool = true, relays: [ObjectIdentifier: RelayLoop] = [:]) {
        self.tcpNoDelay = tcpNoDelay
        self.relays = relays
    }

    /// Opens a connection for a client on `loop`. With RelayLoops, a transaction-mode connection
    /// logs in on the NIO loop and then moves to its RelayLoop (`ServerConnection.moveToRelay`):
    /// the relayed clients live there.
    func connect(pool: ServerPool, on loop: EventLoop) -> EventLoopFuture<ServerConnection> {
        guard !relays.isEmpty else { return connectNIO(pool: pool, on: loop) }
        let relay: RelayLoop?
        let nio: EventLoop
        if let r = loop as? RelayLoop, let companion = r.companion {
            relay = r
            nio = companion
        } else {
            relay = pool.settings.mode == .transaction ? relays[ObjectIdentifier(loop)] : nil
            nio = loop
        }
        let login = connectNIO(pool: pool, on: nio)
        guard let relay else { return login }
        return login.flatMap { $0.moveToRelay(relay) }
    }

    private func connectNIO(pool: ServerPool, on loop: EventLoop) -> EventLoopFuture<ServerConnection> {
        let settings = pool.settings
        let tlsSettings = settings.serverTLS
        // TLS is never used over Unix sockets (as libpq).
        let tcp = !settings.serverHost.hasPrefix("/")
        let first: ServerTLSAttempt?
        if tcp && tlsSettings.mode.requestsTLSFirst {
            do {
                let context = try tls.serverContext(for: tlsSettings)
                first = ServerTLSAttempt(context: context, serverHost: settings.serverHost,
                                         required: tlsSettings.mode.requiresTLS)
            } catch {
                return loop.makeFailedFuture(ServerTLSError(message: "\(settings.serverHost):\(settings.serverPort): cannot set up TLS: \(error)"))
            }
        } else {
            first = nil
        }
        let login = attempt(pool: pool, settings: settings, on: loop, tls: first)
        guard tcp && tlsSettings.mode == .allow else { return login }
        // allow: PostgreSQL refused the plain startup (e.g. only hostssl lines): once more over TLS.
        return login.flatMapError { error in
            guard error is ServerError, let context = try? self.tls.serverContext(for: tlsSettings) else {
                return loop.makeFailedFuture(error)
            }
            let retry = ServerTLSAttempt(context: context, serverHost: settings.serverHost, required: true)
            return self.attempt(pool: pool, settings: settings, on: loop, tls: retry).flatMapError { retryError in
                loop.makeFailedFuture(retryError is ServerError ? retryError : error)
            }
        }
    }

    private func attempt(pool: ServerPool, settings: PoolSettings, on loop: EventLoop,
                         tls: ServerTLSAttempt?) -> EventLoopFuture<ServerConnection> {
        let server = ServerConnection(
            id: nextID.loadThenWrappingIncrement(ordering: .relaxed), loop: loop, pool: pool,
            epoch: pool.epoch, lifetimeMs: settings.serverLifetimeMs)
        let timeout = TimeAmount.milliseconds(Int64(max(1, settings.connectTimeoutMs)))
        var bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelInitializer { channel in
                channel.pipeline.addHandler(server)
            }
        // Always said: NIO's ClientBootstrap sets TCP_NODELAY=1 unless told otherwise.
        bootstrap = bootstrap.channelOption(.tcpOption(.tcp_nodelay), value: tcpNoDelay ? 1 : 0)
        let connected: EventLoopFuture<Channel>
        if settings.serverHost.hasPrefix("/") {
            connected = bootstrap.connect(unixDomainSocketPath: "\(settings.serverHost)/.s.PGSQL.\(settings.serverPort)")
        } else {
            connected = bootstrap.connect(host: settings.serverHost, port: settings.serverPort)
        }
        let login = connected.flatMap { channel in
            server.startLogin(channel: channel, settings: settings, clientKey: pool.scramClientKey, tls: tls)
        }
        // The whole login, not only the TCP connect, is bounded by connect_timeout.
        let deadline = loop.scheduleTask(in: timeout) {
            server.close()
        }
        login.whenComplete { _ in deadline.cancel() }
        return login.flatMapErrorThrowing { error in
            if error is ServerError { throw error }
            if let e = error as? ServerTLSError {
                throw ServerTLSError(message: "\(settings.serverHost):\(settings.serverPort): \(e.message)")
            }
            // One short line (no NIO type dumps): clients see it, and the pool decides from it
            // whether to retry (`ConnectRetry`).
            throw PoolError.connectFailed("\(settings.serverHost):\(settings.serverPort): \(ConnectRetry.reason(error))")
        }
    }
}
