import Atomics
import NIOCore
import NIOPosix

/// Opens and logs in new server connections for pools.
final class ServerConnector {
    private let nextID = ManagedAtomic<Int>(1)
    let tcpNoDelay: Bool

    init(tcpNoDelay: Bool = true) {
        self.tcpNoDelay = tcpNoDelay
    }

    func connect(pool: ServerPool, on loop: EventLoop) -> EventLoopFuture<ServerConnection> {
        let settings = pool.settings
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
        if tcpNoDelay { bootstrap = bootstrap.channelOption(.socketOption(.tcp_nodelay), value: 1) }
        let connected: EventLoopFuture<Channel>
        if settings.serverHost.hasPrefix("/") {
            connected = bootstrap.connect(unixDomainSocketPath: "\(settings.serverHost)/.s.PGSQL.\(settings.serverPort)")
        } else {
            connected = bootstrap.connect(host: settings.serverHost, port: settings.serverPort)
        }
        let login = connected.flatMap { channel in
            server.startLogin(channel: channel, settings: settings, clientKey: pool.scramClientKey)
        }
        // The whole login, not only the TCP connect, is bounded by connect_timeout.
        let deadline = loop.scheduleTask(in: timeout) {
            server.close()
        }
        login.whenComplete { _ in deadline.cancel() }
        return login.flatMapErrorThrowing { error in
            if error is ServerError { throw error }
            throw PoolError.connectFailed("\(settings.serverHost):\(settings.serverPort): \(error)")
        }
    }
}
