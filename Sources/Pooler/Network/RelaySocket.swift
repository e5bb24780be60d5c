#if canImport(Glibc)
import Glibc
#endif
import CRelay
import NIOCore

/// What a `RelaySocket` tells the session or server that owns it (on the socket's loop).
protocol RelaySocketDelegate: AnyObject {
    /// Bytes arrived (the buffer is the loop's: keep a copy or the value, never assume it lasts).
    func relaySocketRead(_ buffer: ByteBuffer)
    /// The reads of one readiness event are delivered.
    func relaySocketReadComplete()
    /// `isWritable` changed.
    func relaySocketWritabilityChanged(_ writable: Bool)
    /// The descriptor is closed (end of stream, an error, or `close()`); called once.
    func relaySocketClosed()
}

/// A connected socket owned by a `RelayLoop`: read on readiness into the loop's buffer, written with
/// send(2) at once; what the kernel does not take waits here (in order) until the socket is writable.
/// Backpressure as NIO's channels: `isWritable` turns false above `highWater` queued bytes and true
/// again below `lowWater`. Confined to its loop.
final class RelaySocket {
    let loop: RelayLoop
    private(set) var fd: CInt
    private var slot = -1
    /// Strong while open, dropped at close (the delegate holds this socket: a cycle until
    /// then). Never weak: a weak reference gives the session a side table, and every retain and
    /// release of it on the hot path takes the slow path (measured: ~1,000 instructions per
    /// transaction).
    private(set) var delegate: RelaySocketDelegate?
    private var pending: [ByteBuffer] = []
    private var pendingHead = 0
    private(set) var pendingBytes = 0
    private var readingEnabled = true
    /// Set by `cork()`: writes gather in `corkBuffer` until `uncork()`.
    private var corking = false
    private var corkBuffer = ByteBuffer()
    private var writeWatched = false
    private(set) var isWritable = true
    static let highWater = 64 << 10
    static let lowWater = 32 << 10

    /// Takes ownership of `fd` (made non-blocking here unless `nonBlocking` says it is already) and
    /// starts watching it for reads; nil (fd closed) when it cannot be watched. Call on `loop`.
    init?(fd: CInt, loop: RelayLoop, delegate: RelaySocketDelegate, nonBlocking: Bool = false) {
        self.fd = fd
        self.loop = loop
        self.delegate = delegate
        guard nonBlocking || Self.makeNonBlocking(fd), let slot = loop.register(self, events: EPOLLIN.rawValue)
        else {
            Glibc.close(fd)
            self.fd = -1
            self.delegate = nil
            return nil
        }
        self.slot = slot
    }

    private static func makeNonBlocking(_ fd: CInt) -> Bool {
        let flags = fcntl(fd, F_GETFL)
        return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0
    }

    var isActive: Bool { fd >= 0 }

    /// Whether bytes wait here for the socket to take them.
    var holdsQueuedBytes: Bool { pendingBytes > 0 }

    /// Pauses or resumes reading.
    func setReading(_ on: Bool) {
        guard fd >= 0, on != readingEnabled else { return }
        readingEnabled = on
        updateInterest()
    }

    private func updateInterest() {
        var events: UInt32 = 0
        if readingEnabled { events |= EPOLLIN.rawValue }
        if writeWatched { events |= EPOLLOUT.rawValue }
        loop.modify(slot: slot, fd: fd, events: events)
    }

    // MARK: - Writing

    /// Sends `buffer` now, or queues it behind what is already waiting.
    @inline(__always)
    func write(_ buffer: ByteBuffer) {
        guard fd >= 0, buffer.readableBytes > 0 else { return }
        guard pendingBytes == 0 && !corking else { return corking ? gather(buffer) : enqueue(buffer) }
        let total = buffer.readableBytes
        let sent = buffer.withUnsafeReadableBytes { p in
            Glibc.send(fd, p.baseAddress, p.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
        }
        if sent == total { return }
        if sent < 0 {
            let e = errno
            if e != EAGAIN && e != EWOULDBLOCK && e != EINTR { return close() }
            return enqueue(buffer)
        }
        var rest = buffer
        rest.moveReaderIndex(forwardBy: sent)
        enqueue(rest)
    }

    /// Holds the writes that follow until `uncork()`, which sends them with one send(2): replies
    /// made in one step that the client reads together (a login's last SCRAM message and the login
    /// reply). `close()` sends what is held first.
    func cork() {
        guard fd >= 0 else { return }
        corking = true
    }

    /// Sends what `cork()` held.
    func uncork() {
        guard corking else { return }
        corking = false
        guard corkBuffer.readableBytes > 0 else { return }
        let held = corkBuffer
        corkBuffer = ByteBuffer()
        write(held)
    }

    private func gather(_ buffer: ByteBuffer) {
        if corkBuffer.capacity == 0 { corkBuffer = Transport.allocator.buffer(capacity: 512) }
        corkBuffer.writeImmutableBuffer(buffer)
    }

    private func enqueue(_ buffer: ByteBuffer) {
        pending.append(buffer.keptCompact())
        pendingBytes += buffer.readableBytes
        if !writeWatched {
            writeWatched = true
            updateInterest()
        }
        if isWritable && pendingBytes > Self.highWater {
            isWritable = false
            delegate?.relaySocketWritabilityChanged(false)
        }
    }

    /// The socket can take more: send what waits, in order.
    private func drain() {
        while pendingHead < pending.count {
            let buffer = pending[pendingHead]
            let total = buffer.readableBytes
            let sent = buffer.withUnsafeReadableBytes { p in
                Glibc.send(fd, p.baseAddress, p.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
            }
            if sent < 0 {
                let e = errno
                if e == EINTR { continue }
                if e == EAGAIN || e == EWOULDBLOCK { break }
                return close()
            }
            pendingBytes -= sent
            if sent < total {
                pending[pendingHead].moveReaderIndex(forwardBy: sent)
                break
            }
            pending[pendingHead] = ByteBuffer()
            pendingHead += 1
        }
        if pendingHead == pending.count {
            pending.removeAll(keepingCapacity: pending.count <= 16)
            pendingHead = 0
            writeWatched = false
            updateInterest()
        } else if pendingHead > 64 && pendingHead * 2 > pending.count {
            pending.removeFirst(pendingHead)
            pendingHead = 0
        }
        if !isWritable && pendingBytes < Self.lowWater {
            isWritable = true
            delegate?.relaySocketWritabilityChanged(true)
        }
    }

    // MARK: - Events

    /// Reads what has arrived already, as a readable event would (a connection just accepted: its
    /// first packet is usually there, and waiting for the event would cost a turn of the loop).
    func readNow() {
        guard fd >= 0, readingEnabled else { return }
        readReady()
    }

    /// Called by the loop for the descriptor's epoll events.
    @inline(__always)
    func handle(events: UInt32) {
        if events & EPOLLOUT.rawValue != 0 && writeWatched {
            drain()
            guard fd >= 0 else { return }
        }
        if events & (EPOLLIN.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 && readingEnabled {
            readReady()
        } else if events & (EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 {
            // Reads paused and the connection is gone (epoll reports hang-ups and errors whatever
            // the interest, and level-triggered it would report them on every turn: a busy loop).
            close()
        }
    }

    private func readReady() {
        // One reference to the delegate for the whole event, and the buffer as a local value: no
        // retain and release per read.
        guard let delegate else { return }
        let loop = self.loop
        var rounds = 0
        while fd >= 0 && readingEnabled {
            var buffer = loop.takeReadBuffer()
            buffer.clear()
            var r = 0
            let fd = self.fd
            let n = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: RelayLoop.readBufferSize) { p in
                r = Glibc.recv(fd, p.baseAddress, p.count, 0)
                return r > 0 ? r : 0
            }
            if r <= 0 {
                loop.returnReadBuffer(buffer)
                if r < 0 {
                    let e = errno
                    if e == EINTR { continue }
                    if e == EAGAIN || e == EWOULDBLOCK { break }
                }
                close()  // end of stream or a socket error
                break
            }
            rounds += 1
            delegate.relaySocketRead(buffer)
            loop.returnReadBuffer(buffer)
            if n < RelayLoop.readBufferSize || rounds >= 4 { break }
        }
        if rounds > 0 { delegate.relaySocketReadComplete() }
    }

    /// Stops watching and gives the descriptor up, open, to whoever takes it next (another event
    /// system); the delegate hears nothing more. -1 when closed already or bytes still wait unsent.
    func giveUpDescriptor() -> CInt {
        guard fd >= 0, pendingBytes == 0, corkBuffer.readableBytes == 0 else { return -1 }
        let given = fd
        loop.deregister(slot: slot, fd: fd)
        fd = -1
        delegate = nil
        return given
    }

    /// Closes the descriptor (what waits unsent is dropped) and tells the delegate once.
    func close() {
        uncork()  // what `cork()` held goes first (a failed send closes the socket already: checked next)
        guard fd >= 0 else { return }
        loop.deregister(slot: slot, fd: fd)
        Glibc.close(fd)
        fd = -1
        pending.removeAll()
        pendingHead = 0
        pendingBytes = 0
        let d = delegate
        delegate = nil
        d?.relaySocketClosed()
    }
}
