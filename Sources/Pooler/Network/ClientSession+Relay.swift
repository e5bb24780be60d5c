#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix

/// A client session on a RelayLoop.
///
/// TCP clients are accepted on a RelayLoop (`RelayAcceptor`) and log in there (`startOnRelay`);
/// those that ask for TLS move to SwiftNIO before the answer (`moveToNIOForTLS`). Clients accepted
/// by SwiftNIO (the Unix socket, sessions adopted at a binary upgrade) log in there and move to a
/// RelayLoop in this process afterwards (`moveToRelay`).
///
/// Handover rules (one event system per connection at a time, as for a binary upgrade):
/// - to a RelayLoop: on the NIO loop at the end of the login, only for a plain (non-TLS)
///   transaction-mode client with no server, nothing queued and nothing half received
///   (`canHandOver`). The session is written down as a `SessionHandover` record, its descriptor
///   duplicated, this object leaves its channel's pipeline (nothing NIO reports for the channel
///   reaches it again, its close least of all) and the channel is closed; a successor with the same
///   id and cancel key takes its place in the registry; on the RelayLoop the successor watches the
///   duplicate and restores the record. Bytes the client sends meanwhile wait in the kernel for the
///   successor.
/// - to SwiftNIO for TLS: on the RelayLoop, right after the SSLRequest and before anything is
///   answered or counted (the client waits for the answer and may send nothing else). The socket
///   stops being watched and gives its descriptor up; a successor with the same id and cancel key
///   gets it as an NIO channel on the companion loop and answers the SSLRequest there.
extension ClientSession: RelaySocketDelegate {
    /// A TCP connection accepted on `relay` (this session's loop): the session watches it and waits
    /// for the startup packet.
    func startOnRelay(fd: CInt, peer address: SocketAddress?, relay: RelayLoop) {
        relay.assertInEventLoop()
        guard loop === relay, let socket = RelaySocket(fd: fd, loop: relay, delegate: self, nonBlocking: true) else {
            return
        }
        output = Transport(socket: socket)
        remoteAddress = address
        watchStartup()
        // The client sends its first packet right after connecting: usually it is there already.
        socket.readNow()
    }

    /// An SSLRequest to answer with TLS, read on a RelayLoop: the connection moves to SwiftNIO
    /// (see above) or, when it cannot, is closed.
    func moveToNIOForTLS() {
        let companion = (loop as? RelayLoop)?.companion
        let fd = inbound.readableBytes == 0 ? (output.socket?.giveUpDescriptor() ?? -1) : -1
        guard fd >= 0, let companion else { return close() }
        startupFinished()
        phase = .closed
        output.detach()
        let successor = ClientSession(runtime: runtime, loop: companion, id: id, secretKey: secretKey,
                                      connectedAt: connectedAt)
        successor.tlsOnArrival = true
        let logger = runtime.logger
        companion.execute {
            ClientSession.channel(connected: fd, on: companion) { successor }
                .whenFailure { error in logger.warning("cannot hand a TLS client to SwiftNIO: \(error)") }
        }
    }

    /// An NIO channel on `loop` for a connected descriptor, with the session `make` returns (made
    /// inside the channel's initializer) as its handler: a TLS client leaving a RelayLoop, a session
    /// adopted at a binary upgrade with the RelayLoops off.
    static func channel(connected fd: CInt, on loop: EventLoop,
                        session make: @escaping () -> ClientSession) -> EventLoopFuture<Channel> {
        ClientBootstrap(group: loop)
            .channelInitializer { channel in
                do {
                    try channel.pipeline.syncOperations.addHandler(make())
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
            .withConnectedSocket(fd)
    }

    /// Moves the session to `relay` when it may (see above); false when it stays.
    @discardableResult
    func moveToRelay(_ relay: RelayLoop) -> Bool {
        guard canHandOver, attached, output.isDirect, !output.holdsQueuedBytes else { return false }
        let fd = fcntl(output.socketDescriptor, F_DUPFD_CLOEXEC, 0)
        guard fd >= 0 else { return false }
        let record = makeHandover()
        let successor = ClientSession(runtime: runtime, loop: relay, id: id, secretKey: secretKey,
                                      connectedAt: connectedAt)
        successor.remoteAddress = remoteAddress
        successor.isUnixSocket = isUnixSocket
        successor.peer = peer
        successor.pool = pool
        successor.authQueryLogin = authQueryLogin
        authQueryLogin = nil
        phase = .closed
        if let timeoutWatch {
            timeoutWatch.remove(slot: watchSlot)
            self.timeoutWatch = nil
            watchSlot = -1
        }
        runtime.sessionStarted(successor)  // replaces this one (same id)
        relay.execute { successor.restoreOnRelay(fd: fd, from: record) }
        output.detach()
        if let context {
            let channel = context.channel
            context.pipeline.syncOperations.removeHandler(context: context).whenComplete { _ in
                channel.close(promise: nil)
            }
        }
        return true
    }

    /// A session written down as `record` (moved here from an NIO loop of this process, or adopted
    /// from an old process at a binary upgrade) goes on with `fd` on its RelayLoop (`loop`; call there).
    func restoreOnRelay(fd: CInt, from record: SessionHandover) {
        guard let relay = loop as? RelayLoop else {
            Glibc.close(fd)
            return lostOnTheWay()
        }
        guard let socket = RelaySocket(fd: fd, loop: relay, delegate: self) else { return lostOnTheWay() }
        output = Transport(socket: socket)
        restore(from: record)
    }

    /// The successor could not watch its descriptor (closed already): the client is gone.
    private func lostOnTheWay() {
        output = Transport(socket: nil)
        counted = true
        countedInClientLimits = true
        closed()
    }

    func relaySocketRead(_ buffer: ByteBuffer) { received(buffer) }
    func relaySocketReadComplete() { readComplete() }
    func relaySocketWritabilityChanged(_ writable: Bool) { clientWritabilityChanged(writable) }
    func relaySocketClosed() {
        closed()
        output?.detach()
    }
}

/// Leaves its channel when it moves to a RelayLoop (`moveToRelay`).
extension ClientSession: RemovableChannelHandler {}
