import NIOCore
@testable import Pooler

/// A pool of fake backends, and clients that each also talk to their own direct (unpooled) fake
/// backend, so that every batch's pooled reply bytes can be compared with the direct ones.
final class PooledWorld {
    let cache: PreparedStatementCache
    var servers: [(pg: FakePostgres, statements: ServerStatements)]

    init(servers: Int, cacheCapacity: Int = 100, serverCapacity: Int = 100) {
        cache = PreparedStatementCache(capacity: cacheCapacity)
        self.servers = (0..<servers).map { _ in (FakePostgres(), ServerStatements(capacity: serverCapacity)) }
    }

    func client() -> PooledClient { PooledClient(world: self) }
}

final class PooledClient {
    let world: PooledWorld
    var rewriter: PreparedStatementRewriter
    let direct = FakePostgres()
    /// Everything sent to backends by the rewriter, for inspection.
    var lastToServer = ByteBufferAllocator().buffer(capacity: 0)
    /// Relay a backend read the way the session does when every awaited reply is plain: raw, the
    /// rewriter told each message's type (`plainReply`). Off: every message through `serverReply`.
    var plainReplies = true
    /// Backend reads relayed through `plainReply`.
    var plainReads = 0

    init(world: PooledWorld) {
        self.world = world
        rewriter = PreparedStatementRewriter(cache: world.cache)
    }

    enum Delivery {
        /// All client messages first, then all backend replies.
        case batched
        /// The backend answers each message before the next one is rewritten.
        case interleaved
    }

    /// Sends `messages` through the rewriter to backend `server` and directly to the client's own
    /// backend; returns (pooled reply bytes, direct reply bytes). Releases the backend when the
    /// rewriter has nothing in flight afterwards and `release` is set (transaction mode at RFQ 'I').
    @discardableResult
    func run(_ messages: [(UInt8, ByteBuffer)], on server: Int, _ delivery: Delivery = .batched,
             release: Bool = true) -> (pooled: [UInt8], direct: [UInt8]) {
        let (pg, statements) = world.servers[server]
        var toClient = ByteBufferAllocator().buffer(capacity: 256)
        var allToServer = ByteBufferAllocator().buffer(capacity: 256)
        // Replies go through the rewriter the way the session relays them: kept messages as runs
        // of the backend's bytes (ForwardRuns), edits spliced in.
        func feed(_ replies: ByteBuffer) {
            var input = replies
            if plainReplies && rewriter.peekRepliesArePlain() {
                plainReads += 1
                while let (t, body) = try! MessageFramer.next(&input) {
                    body.withUnsafeReadableBytes { b in
                        rewriter.plainReply(type: t, tag: UnsafeRawBufferPointer(rebasing: b.prefix(15)),
                                            bodyLength: b.count)
                    }
                }
                toClient.writeImmutableBuffer(replies)
                return
            }
            var runs = ForwardRuns(input)
            var extra = ByteBuffer()
            while let (t, body) = try! MessageFramer.next(&input) {
                let start = input.readerIndex - 5 - body.readableBytes
                extra.clear()
                let keep = rewriter.serverReply(type: t, body: body, extra: &extra)
                runs.message(at: start, end: input.readerIndex, keep: keep, then: &extra)
            }
            precondition(input.readableBytes == 0)
            var out = runs.finish(at: input.readerIndex)
            toClient.writeBuffer(&out)
        }
        switch delivery {
        case .interleaved:
            // Message by message, each copied into its own buffer.
            for (t, body) in messages {
                var toServer = ByteBufferAllocator().buffer(capacity: 64)
                var now = ByteBufferAllocator().buffer(capacity: 0)
                let r = rewriter.clientMessage(type: t, body: body, server: statements, toServer: &toServer, toClientNow: &now)
                precondition(r == .ok)
                toClient.writeImmutableBuffer(now)
                allToServer.writeImmutableBuffer(toServer)
                feed(pg.receive(toServer))
            }
        case .batched:
            // The way the session relays one read: unchanged messages as runs of the client's
            // bytes, injections and replacements spliced in.
            var input = FE.encode(messages)
            var runs = ForwardRuns(input)
            var inject = ByteBuffer()
            while let (t, body) = try! MessageFramer.next(&input) {
                let start = input.readerIndex - 5 - body.readableBytes
                var now = ByteBufferAllocator().buffer(capacity: 0)
                let verdict = rewriter.clientMessage(type: t, body: body, server: statements, inject: &inject, toClientNow: &now)
                if case .malformed = verdict { preconditionFailure("malformed") }
                toClient.writeImmutableBuffer(now)
                runs.message(at: start, end: input.readerIndex, keep: verdict == .forward, precededBy: &inject)
            }
            let toServer = runs.finish(at: input.readerIndex)
            allToServer.writeImmutableBuffer(toServer)
            feed(pg.receive(toServer))
        }
        lastToServer = allToServer
        if release, !rewriter.needsServerFiltering { rewriter.serverReleased() }
        let direct = direct.receive(FE.encode(messages))
        return (Array(toClient.readableBytesView), Array(direct.readableBytesView))
    }
}

extension Array where Element == UInt8 {
    var types: String { FE.types(ByteBuffer(bytes: self)) }
}
