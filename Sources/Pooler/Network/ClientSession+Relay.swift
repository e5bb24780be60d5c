#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// A client session on a RelayLoop: logged in through NIO, then moved in this process.
///
/// Handover rules (one event system per connection at a time, as for a binary upgrade): the move
/// happens on the NIO loop at the end of the login, only for a plain (non-TLS) transaction-mode
/// client with no server, nothing queued and nothing half received (`canHandOver`). The session is
/// written down as a `SessionHandover` record, its descriptor duplicated, this object leaves its
/// channel's pipeline (nothing NIO reports for the channel reaches it again, its close least of all)
/// and the channel is closed; a successor with the same id and cancel key takes its place in the registry; on the
/// RelayLoop the successor watches the duplicate and restores the record. Bytes the client sends
/// meanwhile wait in the kernel for the successor.
extension ClientSession: RelaySocketDelegate {
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
        relay.execute {
            guard let socket = RelaySocket(fd: fd, loop: relay, delegate: successor) else {
                return successor.lostOnTheWay()
            }
            successor.output = Transport(socket: socket)
            successor.restore(from: record)
        }
        output.detach()
        if let context {
            let channel = context.channel
            context.pipeline.syncOperations.removeHandler(context: context).whenComplete { _ in
                channel.close(promise: nil)
            }
        }
        return true
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
