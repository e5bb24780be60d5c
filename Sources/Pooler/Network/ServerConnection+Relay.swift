#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// A server connection on a RelayLoop: logged in through NIO, then moved.
///
/// Handover rules (one event system per connection at a time): the move happens right after the
/// backend login, on the NIO loop, before the connector hands the connection to its pool — so no
/// client, pool, or timer knows it yet. It moves only when it is plain (no TLS), idle, with nothing
/// queued in NIO and nothing half read; the descriptor is duplicated, the handler leaves the channel's
/// pipeline and the channel is closed (so its close never reaches the connection), and the duplicate
/// is watched by the RelayLoop, which the connection's `loop` names from then on. Bytes PostgreSQL sends meanwhile wait in the kernel for the new owner.
extension ServerConnection: RelaySocketDelegate {
    /// Moves this connection to `relay` when it may (see above); the future gives the connection,
    /// on `relay` when it moved, else where it was.
    func moveToRelay(_ relay: RelayLoop) -> EventLoopFuture<ServerConnection> {
        let here = loop
        here.assertInEventLoop()
        guard let output = transport, output.isDirect, !output.holdsQueuedBytes, !usesTLS, isIdleAfterLogin,
              channel != nil
        else { return here.makeSucceededFuture(self) }
        let fd = fcntl(output.socketDescriptor, F_DUPFD_CLOEXEC, 0)
        guard fd >= 0 else { return here.makeSucceededFuture(self) }
        leaveChannel()
        let promise = relay.makePromise(of: ServerConnection.self)
        relay.execute { [self] in
            adopt(loop: relay)
            guard let socket = RelaySocket(fd: fd, loop: relay, delegate: self) else {
                // (The descriptor is closed; the pool has not counted this connection yet: a
                // failed connect to it, nothing more.)
                return promise.fail(PoolError.connectFailed("cannot watch the server socket on \(relay.name)"))
            }
            useTransport(Transport(socket: socket))
            promise.succeed(self)
        }
        return promise.futureResult
    }

    func relaySocketRead(_ buffer: ByteBuffer) { received(buffer) }
    func relaySocketReadComplete() { readComplete() }
    func relaySocketWritabilityChanged(_ writable: Bool) { writabilityChanged(writable) }
    func relaySocketClosed() { closed() }
}
