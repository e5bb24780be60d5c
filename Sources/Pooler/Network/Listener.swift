import ConfigKit
import Logging
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// The client listeners: the TCP socket (opened by hand so its descriptor can be handed to the next
/// process on binary upgrade, or inherited from the previous one) and the optional Unix socket.
///
/// With RelayLoops, every RelayLoop watches the TCP socket (`RelayAcceptor`) and its connections go
/// to `acceptOnRelay` there: they log in and are relayed on that loop, with no SwiftNIO channel
/// (one that asks for TLS moves to SwiftNIO then). Without RelayLoops, and always for the Unix
/// socket, SwiftNIO accepts and every connection goes to `accept`, on its event loop.
final class Listener {
    private let bootstrap: ServerBootstrap
    private var channels: [Channel] = []
    private var tcp: Channel?
    /// The descriptor of the TCP listener (handed to the next process by a binary upgrade).
    private(set) var tcpFD: Int32 = -1
    private let relays: [RelayLoop]
    private let acceptOnRelay: (CInt, SocketAddress?, RelayLoop) -> Void
    private let logger: Logger
    /// The RelayLoops' watches of the TCP socket (empty: SwiftNIO accepts, or not listening).
    private var acceptors: [RelayAcceptor] = []

    /// `accept` sets a new SwiftNIO connection up (adds its handler); it runs on the connection's
    /// loop. `acceptOnRelay` does the same for a descriptor accepted on a RelayLoop, on that loop.
    init(group: EventLoopGroup, relays: [RelayLoop], backlog: Int32, tcpNoDelay: Bool, logger: Logger,
         accept: @escaping (Channel) throws -> Void,
         acceptOnRelay: @escaping (CInt, SocketAddress?, RelayLoop) -> Void) {
        self.relays = relays
        self.acceptOnRelay = acceptOnRelay
        self.logger = logger
        bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: backlog)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // NIO sets TCP_NODELAY=1 on a listener by default, after our own options: accepted
            // sockets inherit it, so `tcp_no_delay: false` would have no effect without this.
            .serverChannelOption(.tcpOption(.tcp_nodelay), value: tcpNoDelay ? 1 : 0)
            .childChannelInitializer { channel in
                // Synchronously (we are on the channel's loop): no future and promise per connection.
                do {
                    // Clients mostly send short queries: their read buffer starts small (NIO keeps it
                    // between reads, so it is memory every idle client holds: 7.8 -> 5.1 KiB per idle
                    // client measured) and grows as reads fill it. Set synchronously: a
                    // `childChannelOption` costs a future per connection (~8,000 instructions).
                    try channel.syncOptions?.setOption(.recvAllocator, value: Self.clientReadBuffers)
                    try accept(channel)
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
    }

    static let clientReadBuffers = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 65_536)

    /// Binds the TCP listener (`inheritedFD`: a listening socket passed by the previous process) and
    /// the Unix socket when `unix_socket_dir` is set.
    func open(_ general: General, backlog: Int32, inheritedFD: Int32?, logger: Logger) throws {
        let fd: Int32
        if let inheritedFD {
            fd = inheritedFD
            ListenSocket.setCloseOnExec(fd, true)
            logger.info("binary upgrade: adopted listening socket fd \(fd)")
        } else {
            fd = try ListenSocket.open(host: general.host, port: Int(general.port), backlog: backlog)
        }
        tcpFD = fd
        if Self.acceptedSocketsInheritTCPOptions { Self.setTCPOptions(fd: fd, general) }
        try listenTCP(fd)
        logger.info("listening on \(general.host):\(general.port)")
        if let dir = general.unixSocketDir {
            let path = "\(dir)/.s.PGSQL.\(general.port)"
            unlink(path)
            // Create the socket file with its final mode (no window with the default umask).
            let mode = mode_t(general.unixSocketModeBits ?? 0o600)
            let oldMask = umask(~mode & 0o777)
            let bound = bootstrap.bind(unixDomainSocketPath: path)
            let unix: Channel
            do {
                unix = try bound.wait()
                umask(oldMask)
            } catch {
                umask(oldMask)
                throw error
            }
            chmod(path, mode)
            channels.append(unix)
            logger.info("listening on unix socket \(path)")
        }
    }

    /// Binary upgrade, step 1: stop accepting on the TCP socket but keep the socket itself (and its
    /// backlog) alive in a duplicate descriptor, returned for the new process. Two processes never
    /// accept from one socket at the same time.
    func releaseTCP() -> Int32? {
        guard tcpFD >= 0 else { return nil }
        if !acceptors.isEmpty {
            stopAcceptors()
            return tcpFD
        }
        guard let channel = tcp else { return nil }
        let held = fcntl(tcpFD, F_DUPFD_CLOEXEC, 3)
        guard held >= 0 else { return nil }
        try? channel.close().wait()
        channels.removeAll { $0 === channel }
        tcp = nil
        tcpFD = held
        return held
    }

    /// Binary upgrade aborted: accept again on the socket kept by `releaseTCP`.
    func readoptTCP(_ fd: Int32) throws {
        try listenTCP(fd)
        tcpFD = fd
    }

    /// Accepts on `fd`: on every RelayLoop when there are some, else through SwiftNIO.
    private func listenTCP(_ fd: Int32) throws {
        guard !relays.isEmpty else {
            let channel = try bootstrap.withBoundSocket(fd).wait()
            tcp = channel
            channels.append(channel)
            return
        }
        // accept4(2) loops until EAGAIN: on a blocking listener the last one would hang the loop.
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0 else {
            throw ListenSocket.Failure(description: "cannot make the listening socket non-blocking: \(String(cString: strerror(errno)))")
        }
        let logger = self.logger
        for relay in relays {
            let acceptor = RelayAcceptor(fd: fd, loop: relay, accepted: { [acceptOnRelay] conn, address in
                acceptOnRelay(conn, address, relay)
            }, backingOff: { reason in
                logger.warning("cannot accept client connections (\(reason)): not accepting on \(relay.name) for \(RelayAcceptor.backOff.nanoseconds / 1_000_000_000) s")
            })
            guard try relay.submit({ acceptor.start() }).wait() else {
                stopAcceptors()
                throw ListenSocket.Failure(description: "cannot watch the listening socket on \(relay.name)")
            }
            acceptors.append(acceptor)
        }
    }

    private func stopAcceptors() {
        for acceptor in acceptors { try? acceptor.loop.submit { acceptor.stop() }.wait() }
        acceptors.removeAll()
    }

    /// The port actually bound (useful when the config says 0).
    var boundPort: Int? {
        if tcpFD >= 0, let port = ListenSocket.port(of: tcpFD) { return port }
        return channels.first?.localAddress?.port
    }

    /// Closes the listeners; connected clients are not touched.
    func close() {
        if !acceptors.isEmpty {
            stopAcceptors()
            Glibc.close(tcpFD)
            tcpFD = -1
        }
        for l in channels { try? l.close().wait() }
        channels.removeAll()
    }

    /// RELOAD: new client connections get the new TCP options (they inherit them from the listener).
    func applyTCPOptions(_ general: General) {
        if Self.acceptedSocketsInheritTCPOptions && tcpFD >= 0 { Self.setTCPOptions(fd: tcpFD, general) }
    }

    // MARK: - Socket options of accepted clients

    /// Linux copies TCP_NODELAY, SO_KEEPALIVE, the keepalive timings and TCP_USER_TIMEOUT from a
    /// listening socket to the sockets it accepts (and arms the keepalive timer), so setting them on
    /// the listener saves six setsockopt(2) calls per client connection.
    #if os(Linux)
    static let acceptedSocketsInheritTCPOptions = true
    #else
    static let acceptedSocketsInheritTCPOptions = false
    #endif

    /// The client-side TCP options from the config: (level, name, value).
    static func clientTCPOptions(_ general: General) -> [(Int32, Int32, Int32)] {
        let tcp = Int32(IPPROTO_TCP)
        return [
            (tcp, Int32(TCP_NODELAY), general.tcpNoDelay ? 1 : 0), (Int32(SOL_SOCKET), Int32(SO_KEEPALIVE), 1),
            (tcp, Int32(TCP_KEEPIDLE), Int32(clamping: max(1, general.tcpKeepalivesIdle))),
            (tcp, Int32(TCP_KEEPINTVL), Int32(clamping: max(1, general.tcpKeepalivesInterval))),
            (tcp, Int32(TCP_KEEPCNT), Int32(clamping: max(1, general.tcpKeepalivesCount))),
            (tcp, Int32(TCP_USER_TIMEOUT), Int32(clamping: general.tcpUserTimeout * 1000)),
        ]
    }

    /// Sets the client TCP options on a socket (the listener, where accepted sockets inherit them).
    /// With setsockopt(2) on the descriptor: NIO's `setOption` costs a future per option.
    static func setTCPOptions(fd: Int32, _ general: General) {
        for (level, name, value) in clientTCPOptions(general) {
            var v = value
            _ = setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    /// Sets the client TCP options on one accepted connection (where they are not inherited).
    static func configureTCP(_ channel: Channel, _ general: General) {
        let fd = Transport.socketDescriptor(of: channel)
        if fd >= 0 { return setTCPOptions(fd: fd, general) }
        for (level, name, value) in clientTCPOptions(general) {
            let option = ChannelOptions.Types.SocketOption(level: SocketOptionLevel(level), name: SocketOptionName(name))
            channel.setOption(option, value: SocketOptionValue(value)).whenComplete { _ in }
        }
    }

    /// SO_SNDBUF and SO_RCVBUF of an accepted Unix-socket client (`unix_socket_buffer_size`; on its
    /// loop; best effort).
    static func setUnixBuffers(_ channel: Channel, bytes: Int) {
        guard bytes > 0, let options = channel.syncOptions else { return }
        let value = SocketOptionValue(clamping: bytes)
        try? options.setOption(ChannelOptions.socketOption(.so_sndbuf), value: value)
        try? options.setOption(ChannelOptions.socketOption(.so_rcvbuf), value: value)
    }
}
