import NIOCore
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

/// How a client session or a server connection reaches its socket: through an NIO channel (login,
/// TLS, admin) or a `RelaySocket` on a `RelayLoop` (plain relayed connections, see `RelayLoop`). The
/// sessions read, write, pause, and close only through this, so one connection has one event
/// system at a time and can move between them at a quiet point.
///
/// Through NIO, on a plain TCP or Unix socket, bytes go straight to the kernel with one `send(2)`
/// while NIO holds nothing unwritten for the channel: no pipeline traversal, no pending-write queue,
/// no flush bookkeeping. Whatever the kernel does not take (a full socket buffer, an error) is handed
/// to NIO, which queues it, waits for writability (and drives backpressure through `isWritable`) or
/// closes the channel on the error. Every write that goes through NIO is counted until it completes,
/// and no direct write happens while one is outstanding, so bytes never overtake each other.
///
/// TLS channels never write directly (`disableDirect()` before the TLS handler is added); the
/// descriptor is forgotten when the channel goes inactive, so a reused descriptor number is never
/// written to. Confined to the connection's event loop.
final class Transport {
    /// Dropped by `detach()` when the handler leaves the pipeline: the context holds the handler
    /// that holds this, so keeping it would keep the whole session alive after the channel is gone.
    private var context: ChannelHandlerContext?
    /// Set instead of `context` for a socket of our own.
    private(set) var socket: RelaySocket?
    private var fd: CInt = -1
    private var queuedInNIO = 0
    /// Writes that went through NIO's queue on a plain socket (tests, diagnostics).
    private(set) var fallbackWrites = 0

    init(socket: RelaySocket?) {
        self.socket = socket
    }

    init(context: ChannelHandlerContext) {
        self.context = context
        fd = Self.socketDescriptor(of: context.channel)
    }

    /// The channel's socket descriptor, or -1 (a channel without a socket: tests' EmbeddedChannel).
    /// Through NIO's supported `withUnsafeTransportIfAvailable(of:)`, asked once per channel and
    /// kept: its cast to the constrained existential makes the runtime demangle the same-type
    /// requirement on every call (+13,700 instructions per client connection, measured on
    /// 2026-12-05 against a cast through the underscored `_channelCore`, which a SwiftNIO release
    /// may change).
    static func socketDescriptor(of channel: Channel) -> CInt {
        channel.eventLoop.assertInEventLoop()
        let fd = try? channel.pipeline.syncOperations.withUnsafeTransportIfAvailable(of: NIOBSDSocket.Handle.self) { $0 }
        return (fd ?? nil) ?? -1
    }

    /// The plain socket's descriptor while writes may bypass NIO (or the socket is our own), else -1.
    var socketDescriptor: CInt { socket?.fd ?? fd }

    /// True while writes may bypass NIO (plain socket, channel open).
    var isDirect: Bool { fd >= 0 }

    /// Whether bytes may wait unwritten (always true through NIO without direct writes).
    var holdsQueuedBytes: Bool {
        if let socket { return socket.holdsQueuedBytes }
        return fd < 0 || queuedInNIO > 0
    }

    /// Call before a TLS handler joins the pipeline, and when the channel goes inactive.
    func disableDirect() { fd = -1 }

    /// The handler left the pipeline: forget the context; later writes and flushes do nothing.
    func detach() {
        fd = -1
        context = nil
        socket = nil
    }

    /// Still tied to its connection: the NIO handler is in its pipeline or the RelaySocket has not
    /// reported its close yet (`detach()` ends both).
    var isAttached: Bool { context != nil || socket != nil }

    /// The socket is open.
    var isActive: Bool {
        if let socket { return socket.isActive }
        return context?.channel.isActive ?? false
    }

    /// The socket takes more without queueing past the high water mark.
    var isWritable: Bool {
        if let socket { return socket.isWritable }
        return context?.channel.isWritable ?? false
    }

    /// Pauses or resumes reading (resuming asks for a read at once).
    func setReading(_ on: Bool) {
        if let socket { return socket.setReading(on) }
        guard let context else { return }
        context.channel.setOption(ChannelOptions.autoRead, value: on).whenComplete { _ in }
        if on { context.read() }
    }

    /// Closes the connection (the owner hears of it as from the peer: channelInactive or
    /// `relaySocketClosed`).
    func close() {
        if let socket { return socket.close() }
        context?.close(promise: nil)
    }

    /// Buffers for this connection (every channel of ours has NIO's default allocator).
    static let allocator = ByteBufferAllocator()


    /// Writes `buffer`: directly when possible (nothing to flush afterwards), else queued in NIO
    /// until `flush()`.
    @inline(__always)
    func write(_ buffer: ByteBuffer) {
        if let socket { return socket.write(buffer) }
        guard fd >= 0 else {
            context?.write(NIOAny(buffer), promise: nil)
            return
        }
        if queuedInNIO == 0 {
            let total = buffer.readableBytes
            let sent = buffer.withUnsafeReadableBytes { p in
                send(fd, p.baseAddress, p.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
            }
            if sent == total { return }
            // Short write, EAGAIN or an error: NIO takes the rest (and reports errors by closing).
            var rest = buffer
            if sent > 0 { rest.moveReaderIndex(forwardBy: sent) }
            queue(rest)
            context?.flush()
            return
        }
        queue(buffer)
    }

    /// Writes and flushes.
    @inline(__always)
    func writeAndFlush(_ buffer: ByteBuffer) {
        write(buffer)
        flush()
    }

    /// Holds writes until `uncork()` sends them together (a RelaySocket; NIO's direct writes are
    /// sent as they come).
    func cork() { socket?.cork() }

    func uncork() { socket?.uncork() }

    /// Flushes what NIO holds (nothing to do after direct writes).
    @inline(__always)
    func flush() {
        if (fd < 0 || queuedInNIO > 0) && socket == nil { context?.flush() }
    }

    private func queue(_ buffer: ByteBuffer) {
        guard let context else { return }
        queuedInNIO += 1
        fallbackWrites &+= 1
        let promise = context.eventLoop.makePromise(of: Void.self)
        promise.futureResult.whenComplete { [self] _ in queuedInNIO -= 1 }
        context.write(NIOAny(buffer), promise: promise)
    }
}


extension ByteBuffer {
    /// What a connection keeps past the read that brought it (a query waiting for a server, the
    /// start of a message, bytes the socket did not take): the bytes alone when they are a small
    /// part of a large storage — a RelayLoop's read buffer is 64 KiB and shared by all of its
    /// connections, so a kept slice of it would pin 64 KiB per waiting client.
    @inline(__always)
    func keptCompact() -> ByteBuffer {
        guard storageCapacity > 8_192 && readableBytes &* 4 < storageCapacity else { return self }
        var copy = Transport.allocator.buffer(capacity: readableBytes)
        copy.writeImmutableBuffer(self)
        return copy
    }
}
