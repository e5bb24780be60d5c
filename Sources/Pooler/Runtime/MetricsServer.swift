import ConfigKit
import NIOCore
import NIOHTTP1
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

/// The HTTP listener of `web.enabled`: `GET /metrics` answers with `MetricsView` in Prometheus'
/// text format; anything else gets 404 (405 for other methods). One response per connection
/// (`Connection: close`), which is all a scraper needs.
final class MetricsServer {
    struct ListenError: Error, CustomStringConvertible { let description: String }

    private let channel: Channel

    private init(channel: Channel) { self.channel = channel }

    /// Binds `web.host:web.port` with SO_REUSEPORT, so that a binary upgrade's new process can bind
    /// it while the old one still serves.
    static func start(web: Web, group: EventLoopGroup, runtime: PoolerRuntime) throws -> MetricsServer {
        let channel = try ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(ChannelOptions.Types.SocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_REUSEPORT)), value: 1)
            .childChannelInitializer { channel in
                do {
                    let pipeline = channel.pipeline.syncOperations
                    // A connection that sends no complete request within 30 s is closed (a scraper
                    // sends one at once; an idle or half-open one must not hold a descriptor).
                    try pipeline.addHandler(IdleStateHandler(readTimeout: .seconds(30)))
                    try pipeline.configureHTTPServerPipeline(withErrorHandling: true)
                    try pipeline.addHandler(MetricsHTTPHandler(runtime: runtime))
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
            .bind(host: web.host, port: Int(web.port)).wait()
        return MetricsServer(channel: channel)
    }

    var localPort: Int? { channel.localAddress?.port }

    func stop() { channel.close(promise: nil) }
}

private final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let runtime: PoolerRuntime
    private var request: HTTPRequestHead?

    init(runtime: PoolerRuntime) { self.runtime = runtime }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            request = head
        case .body:
            break
        case .end:
            guard let head = request else { return }
            request = nil
            let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
            guard head.method == .GET || head.method == .HEAD else {
                return respond(context, .methodNotAllowed, "only GET\n", head: head)
            }
            guard path == "/metrics" else { return respond(context, .notFound, "see /metrics\n", head: head) }
            let loop = context.eventLoop
            runtime.sessionSnapshots(on: loop).whenComplete { [self] result in
                switch result {
                case .success(let snapshots):
                    let text = MetricsView(runtime: runtime, snapshots: snapshots).render()
                    respond(context, .ok, text, head: head, contentType: PrometheusText.contentType)
                case .failure(let error):
                    respond(context, .internalServerError, "\(error)\n", head: head)
                }
            }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent { return context.close(promise: nil) }
        context.fireUserInboundEventTriggered(event)
    }

    private func respond(_ context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ body: String,
                         head: HTTPRequestHead, contentType: String = "text/plain; charset=utf-8") {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))),
                      promise: nil)
        if head.method != .HEAD {
            var buffer = context.channel.allocator.buffer(capacity: body.utf8.count)
            buffer.writeString(body)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
    }
}
