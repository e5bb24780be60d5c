import NIOCore
import NIOPosix
import NIOSSL

/// Sends CancelRequests to PostgreSQL for clients' cancels and the pooler's own timeouts: a
/// short-lived connection per cancel (over TLS when the cancelled backend's connection uses TLS),
/// never a pooled one.
struct CancelForwarder {
    let group: EventLoopGroup
    let tls: TLSContexts

    /// `settings`: the pool's server TLS settings when the cancelled server connection uses TLS.
    func send(host: String, port: Int, processID: Int32, secretKey: Int32, tls settings: ServerTLSSettings? = nil) {
        if let settings, !host.hasPrefix("/") {
            return sendTLS(host: host, port: port, processID: processID, secretKey: secretKey, tls: settings)
        }
        let bootstrap = ClientBootstrap(group: group).connectTimeout(.seconds(3))
        let connected = host.hasPrefix("/")
            ? bootstrap.connect(unixDomainSocketPath: "\(host)/.s.PGSQL.\(port)")
            : bootstrap.connect(host: host, port: port)
        connected.whenSuccess { channel in
            var buf = channel.allocator.buffer(capacity: 16)
            FrontendMessage.cancelRequest(processID: processID, secretKey: secretKey, into: &buf)
            channel.writeAndFlush(buf).whenComplete { _ in channel.close(promise: nil) }
        }
    }

    /// A CancelRequest to a backend that uses TLS: SSLRequest, handshake, then the 16-byte packet.
    private func sendTLS(host: String, port: Int, processID: Int32, secretKey: Int32, tls settings: ServerTLSSettings) {
        guard let context = try? tls.serverContext(for: settings) else { return }
        let attempt = ServerTLSAttempt(context: context, serverHost: host, required: true)
        var packet = ByteBufferAllocator().buffer(capacity: 16)
        FrontendMessage.cancelRequest(processID: processID, secretKey: secretKey, into: &packet)
        let bootstrap = ClientBootstrap(group: group).connectTimeout(.seconds(3))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(TLSCancelHandler(attempt: attempt, packet: packet))
                }
            }
        bootstrap.connect(host: host, port: port).whenSuccess { channel in
            // Never leave the socket open if the server stays silent.
            channel.eventLoop.scheduleTask(in: .seconds(5)) { channel.close(promise: nil) }
        }
    }
}

/// Sends SSLRequest, switches to TLS on `S`, writes the CancelRequest, closes.
final class TLSCancelHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let attempt: ServerTLSAttempt
    private let packet: ByteBuffer
    private var answered = false

    init(attempt: ServerTLSAttempt, packet: ByteBuffer) {
        self.attempt = attempt
        self.packet = packet
    }

    func channelActive(context: ChannelHandlerContext) {
        var out = context.channel.allocator.buffer(capacity: 8)
        out.writeInteger(Int32(8))
        out.writeInteger(Int32(80_877_103))
        context.writeAndFlush(wrapOutboundOut(out), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }
        answered = true
        var b = unwrapInboundIn(data)
        guard b.readInteger(as: UInt8.self) == UInt8(ascii: "S"), b.readableBytes == 0,
              let handler = try? NIOSSLClientHandler(context: attempt.context, serverHostname: attempt.hostname),
              (try? context.pipeline.syncOperations.addHandler(handler, position: .before(self))) != nil
        else {
            context.close(promise: nil)
            return
        }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(packet)).whenComplete { _ in channel.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
