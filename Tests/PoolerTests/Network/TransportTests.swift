import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import Pooler

/// Writes numbered chunks through a Transport as fast as it can, while the peer does not read
/// at first: the kernel buffer fills, the rest must queue in NIO, and nothing may overtake it.
private final class Writer: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let chunks: Int
    let chunkSize: Int
    let tls: Bool
    var output: Transport!
    let direct = NIOLockedValueBox<Bool?>(nil)
    let fallbacks = NIOLockedValueBox(0)

    init(chunks: Int, chunkSize: Int, tls: Bool) {
        self.chunks = chunks
        self.chunkSize = chunkSize
        self.tls = tls
    }

    func handlerAdded(context: ChannelHandlerContext) {
        output = Transport(context: context)
        if tls { output.disableDirect() }
    }

    func channelActive(context: ChannelHandlerContext) {
        direct.withLockedValue { $0 = output.isDirect }
        for i in 0..<chunks {
            var b = context.channel.allocator.buffer(capacity: chunkSize)
            b.writeRepeatingByte(UInt8(truncatingIfNeeded: i % 251), count: chunkSize)
            output.write(b)
            if i % 7 == 0 { output.flush() }
        }
        output.flush()
        fallbacks.withLockedValue { $0 = output.fallbackWrites }
    }
}

/// Collects everything it receives.
private final class Reader: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let expected: Int
    let promise: EventLoopPromise<ByteBuffer>
    var received: ByteBuffer

    init(expected: Int, promise: EventLoopPromise<ByteBuffer>) {
        self.expected = expected
        self.promise = promise
        self.received = ByteBufferAllocator().buffer(capacity: expected)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var b = unwrapInboundIn(data)
        received.writeBuffer(&b)
        if received.readableBytes >= expected { promise.succeed(received) }
    }
}

@Suite struct TransportTests {
    private func run(tls: Bool) throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        defer { try? group.syncShutdownGracefully() }
        let chunks = 2_000, chunkSize = 4_096
        let writer = Writer(chunks: chunks, chunkSize: chunkSize, tls: tls)
        let server = try ServerBootstrap(group: group)
            .childChannelInitializer { $0.pipeline.addHandler(writer) }
            .bind(host: "127.0.0.1", port: 0).wait()
        defer { try? server.close().wait() }
        let loop = group.next()
        let done = loop.makePromise(of: ByteBuffer.self)
        let client = try ClientBootstrap(group: loop)
            .channelOption(.autoRead, value: false)
            .channelInitializer { $0.pipeline.addHandler(Reader(expected: chunks * chunkSize, promise: done)) }
            .connect(to: server.localAddress!).wait()
        defer { try? client.close().wait() }
        // Let the writer fill the socket buffers before anything is read.
        sleepMilliseconds(300)
        try client.setOption(.autoRead, value: true).wait()
        client.read()
        let received = try done.futureResult.wait()
        #expect(writer.direct.withLockedValue { $0 } == !tls)
        #expect(received.readableBytes == chunks * chunkSize)
        if !tls {
            // The kernel could not take it all while nobody read: the queued path was used.
            #expect(writer.fallbacks.withLockedValue { $0 } > 0)
        }
        var ok = true
        received.withUnsafeReadableBytes { p in
            for i in 0..<chunks where ok {
                for j in stride(from: 0, to: chunkSize, by: 511) where p[i * chunkSize + j] != UInt8(truncatingIfNeeded: i % 251) {
                    ok = false
                }
            }
        }
        #expect(ok, "bytes arrived out of order")
    }

    @Test func directWritesKeepOrderWhenTheSocketBufferFills() throws {
        try run(tls: false)
    }

    @Test func withoutDirectWritesEverythingGoesThroughNIO() throws {
        try run(tls: true)
    }

    @Test func socketDescriptorMatchesNIOsTransportAccess() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let server = try ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
        defer { try? server.close().wait() }
        try server.eventLoop.submit {
            let ours = Transport.socketDescriptor(of: server)
            let nios = try server.pipeline.syncOperations.withUnsafeTransportIfAvailable(of: NIOBSDSocket.Handle.self) { $0 }
            #expect(ours >= 0)
            #expect(ours == nios)
        }.wait()
    }

    /// A few bytes kept from a large read buffer are copied out (a waiting client must not pin a
    /// RelayLoop's 64 KiB buffer); dense buffers and small ones are kept as they are.
    @Test func keptBytesDoNotPinALargeBuffer() {
        var big = ByteBufferAllocator().buffer(capacity: 65_536)
        big.writeBytes(Array(repeating: UInt8(7), count: 20))
        let kept = big.keptCompact()
        #expect(kept.storageCapacity < 1_024)
        #expect(Array(kept.readableBytesView) == Array(repeating: UInt8(7), count: 20))
        var dense = ByteBufferAllocator().buffer(capacity: 65_536)
        dense.writeBytes(Array(repeating: UInt8(1), count: 60_000))
        #expect(dense.keptCompact().storageCapacity == dense.storageCapacity)
        var small = ByteBufferAllocator().buffer(capacity: 512)
        small.writeBytes([1, 2, 3])
        #expect(small.keptCompact().storageCapacity == small.storageCapacity)
        // A slice of a large storage: judged by the storage, not by the slice.
        var slice = dense.getSlice(at: dense.readerIndex + 100, length: 10)!
        slice = slice.keptCompact()
        #expect(slice.storageCapacity < 1_024)
    }
}

private func sleepMilliseconds(_ ms: Int) {
    var ts = timespec(tv_sec: ms / 1000, tv_nsec: (ms % 1000) * 1_000_000)
    nanosleep(&ts, nil)
}
