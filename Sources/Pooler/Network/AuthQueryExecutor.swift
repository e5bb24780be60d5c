import NIOCore

/// Runs auth_query lookups over a small pool of its own (`workers` connections, logged in as the
/// auth_query `user`): it borrows a server, owns it for one request/reply (as a client would),
/// reads the reply with `AuthQueryResultReader`, and gives the server back.
///
/// Failures are answers, not hangs: a PostgreSQL that cannot be reached fails the checkout within
/// the pool's query_wait_timeout, and a reply that does not come within `queryTimeout` closes the
/// connection and reports `.unavailable`.
final class AuthQueryExecutor {
    let pool: ServerPool
    let query: String
    let queryTimeout: TimeAmount

    init(pool: ServerPool, query: String, queryTimeout: TimeAmount) {
        self.pool = pool
        self.query = query
        self.queryTimeout = queryTimeout
    }

    /// Looks `user` up; `done` runs once, on some event loop.
    func fetch(user: String, on loop: EventLoop, done: @escaping (AuthQueryFetch) -> Void) {
        pool.acquire(on: loop) { [self] result in
            switch result {
            case .failure(let error):
                done(.unavailable("\(error)"))
            case .success(let server):
                let run = Run(server: server, pool: pool, done: done)
                let start = { [self] in run.start(query: query, user: user, timeout: queryTimeout) }
                if server.loop.inEventLoop { start() } else { server.loop.execute(start) }
            }
        }
    }

    func shutdown() { pool.shutdown() }

    /// One lookup on one server connection (confined to the server's loop).
    private final class Run: ServerOwner {
        let server: ServerConnection
        let pool: ServerPool
        var loop: EventLoop { server.loop }
        private var done: ((AuthQueryFetch) -> Void)?
        private var reader = AuthQueryResultReader()
        private var inbound = ByteBuffer()
        private var timer: Scheduled<Void>?

        init(server: ServerConnection, pool: ServerPool, done: @escaping (AuthQueryFetch) -> Void) {
            self.server = server
            self.pool = pool
            self.done = done
        }

        func start(query: String, user: String, timeout: TimeAmount) {
            server.attach(to: self)
            timer = loop.scheduleTask(in: timeout) { [self] in
                finish(.unavailable("auth_query did not answer within \(timeout.nanoseconds / 1_000_000) ms"),
                       reusable: false)
            }
            var out = ByteBufferAllocator().buffer(capacity: 64 + query.utf8.count + user.utf8.count)
            AuthQueryResultReader.request(query: query, user: user, into: &out)
            server.write(out)
            server.flush()
        }

        private func finish(_ outcome: AuthQueryFetch, reusable: Bool) {
            guard let callback = done else { return }
            done = nil
            timer?.cancel()
            timer = nil
            if reusable && server.detachClean() {
                pool.release(server)
            } else {
                server.owner = nil
                server.broken = true
                pool.discard(server)
            }
            callback(outcome)
        }

        func serverRead(_ buffer: ByteBuffer) {
            guard done != nil else { return }
            var b = buffer
            inbound.writeBuffer(&b)
            do {
                while let (type, body) = try MessageFramer.next(&inbound) {
                    switch reader.receive(type: type, body: body) {
                    case .more:
                        continue
                    case .done(let outcome, let reusable):
                        return finish(outcome, reusable: reusable && inbound.readableBytes == 0)
                    }
                }
                inbound.discardReadBytes()
            } catch {
                finish(.unavailable("malformed reply to auth_query"), reusable: false)
            }
        }

        func serverReadComplete() {}

        func serverClosed(_ server: ServerConnection) {
            finish(.unavailable("the auth_query connection closed"), reusable: false)
        }

        func serverWritabilityChanged(_ writable: Bool) {}
    }
}
