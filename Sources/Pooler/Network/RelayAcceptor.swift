#if canImport(Glibc)
import Glibc
#endif
import CRelay
import NIOCore

/// A listening socket watched by a `RelayLoop`: connections are accepted on the loop that will
/// relay them, with no SwiftNIO channel and no move between threads (login included; see
/// `ClientSession.startOnRelay`). Every RelayLoop watches the TCP listener (EPOLLEXCLUSIVE: one
/// wakes per connection). The acceptor does not own the listening descriptor: `Listener` does.
/// Confined to its loop.
final class RelayAcceptor {
    let loop: RelayLoop
    let fd: CInt
    /// A new connection (non-blocking, close-on-exec) and its peer's address, on `loop`.
    private let accepted: (CInt, SocketAddress?) -> Void
    /// Told once per back-off (out of descriptors or memory).
    private let backingOff: (String) -> Void
    private var watching = false
    private var stopped = false
    /// At most this many connections per readiness event: the loop's other sockets get their turn.
    static let acceptsPerEvent = 16
    /// How long accepting pauses after a failure other than a reset connection (out of descriptors
    /// or memory, most likely).
    static let backOff = TimeAmount.seconds(1)

    /// What a failed accept4(2) means.
    enum Failure: Equatable {
        /// Interrupted, or a connection reset before it was accepted: try the next.
        case retry
        /// Nothing more to accept now.
        case drained
        /// Out of descriptors or memory, or anything unexpected: stop watching for a while (a
        /// level-triggered listener that keeps failing would otherwise wake the loop on every turn).
        case backOff
    }

    static func failure(errno e: CInt) -> Failure {
        switch e {
        case EINTR, ECONNABORTED, EPROTO, EPERM: return .retry
        case EAGAIN, EWOULDBLOCK: return .drained
        default: return .backOff
        }
    }

    init(fd: CInt, loop: RelayLoop, accepted: @escaping (CInt, SocketAddress?) -> Void,
         backingOff: @escaping (String) -> Void) {
        self.fd = fd
        self.loop = loop
        self.accepted = accepted
        self.backingOff = backingOff
    }

    /// Starts watching (on `loop`); false when epoll refuses the descriptor.
    func start() -> Bool {
        loop.assertInEventLoop()
        stopped = false
        guard !watching else { return true }
        watching = loop.register(acceptor: self)
        return watching
    }

    /// Stops watching for good (on `loop`); the descriptor stays open.
    func stop() {
        loop.assertInEventLoop()
        stopped = true
        unwatch()
    }

    private func unwatch() {
        guard watching else { return }
        watching = false
        loop.deregister(acceptor: self)
    }

    /// The listener is readable: accept what waits (up to `acceptsPerEvent`).
    func acceptReady() {
        var taken = 0
        while taken < Self.acceptsPerEvent && watching {
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let conn = c_relay_accept(fd, &storage, &length)
            if conn < 0 {
                let e = errno
                switch Self.failure(errno: e) {
                case .retry: continue
                case .drained: return
                case .backOff:
                    backingOff(String(cString: strerror(e)))
                    unwatch()
                    _ = loop.scheduleTask(in: Self.backOff) { [self] in
                        if !stopped { _ = start() }
                    }
                    return
                }
            }
            taken += 1
            accepted(conn, Self.address(storage))
        }
    }

    /// The peer's address as SwiftNIO spells it (what pg_hba and the logs read). Without a host name:
    /// SwiftNIO's other initialiser formats the address as text (inet_ntop, sprintf: ~1,900
    /// instructions) at every accept; `ipAddress` and `description` format it when they are read.
    static func address(_ storage: sockaddr_storage) -> SocketAddress? {
        var storage = storage
        switch Int32(storage.ss_family) {
        case AF_INET:
            return withUnsafeBytes(of: &storage) { SocketAddress($0.load(as: sockaddr_in.self), host: "") }
        case AF_INET6:
            return withUnsafeBytes(of: &storage) { SocketAddress($0.load(as: sockaddr_in6.self), host: "") }
        case AF_UNIX:
            return withUnsafeBytes(of: &storage) { SocketAddress($0.load(as: sockaddr_un.self)) }
        default:
            return nil
        }
    }

    /// The peer's address of a connected socket (getpeername(2)); nil when it cannot be read.
    static func peerAddress(of fd: CInt) -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) }
        }
        return rc == 0 ? address(storage) : nil
    }
}
