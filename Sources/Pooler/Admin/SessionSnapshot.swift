import NIOCore

/// A consistent copy of one client session's state, taken on the session's own event loop.
struct SessionSnapshot {
    var id: Int32
    var database: String
    var user: String
    var applicationName: String
    var peer: String
    var tls: Bool
    var state: String
    var transactionCount: Int
    var queryCount: Int
    var errorCount: Int
    var ageSeconds: Int64
    var pool: ServerPool?
    var server: ServerSnapshot?
    var isAdmin: Bool
    var namedStatements = 0
    var unnamedStatements = 0
    var statementBytes = 0
    var usedFlush = false
    /// The client's own session parameters that differ from the pool's ("name=value, …").
    var parameters = ""
    /// Statements of this client cancelled by query_timeout.
    var queryTimeouts = 0
}

struct ServerSnapshot {
    var id: Int
    var processID: Int32
    var createdAt: NIODeadline
    var transactionCount: Int
    var queryCount: Int
    var bytesSent: Int
    var bytesReceived: Int
    var state: String
    var tls = false
    var prepareHits: UInt64 = 0
    var prepareMisses: UInt64 = 0
    var prepareSize = 0
}

extension ServerConnection {
    func snapshot(state: String) -> ServerSnapshot {
        ServerSnapshot(id: id, processID: processID, createdAt: createdAt, transactionCount: transactionCount,
                       queryCount: queryCount, bytesSent: bytesSent, bytesReceived: bytesReceived, state: state,
                       tls: usesTLS, prepareHits: statements.hits, prepareMisses: statements.misses,
                       prepareSize: statements.count)
    }
}

extension PoolerRuntime {
    /// Snapshots of every session, each taken on its own loop.
    func sessionSnapshots(on loop: EventLoop) -> EventLoopFuture<[SessionSnapshot]> {
        let byLoop = Dictionary(grouping: clients, by: { ObjectIdentifier($0.loop) })
        let futures = byLoop.values.map { sessions -> EventLoopFuture<[SessionSnapshot]> in
            let l = sessions[0].loop
            return l.submit { sessions.map { $0.snapshot() } }
        }
        return EventLoopFuture.whenAllSucceed(futures, on: loop).map { $0.flatMap { $0 }.sorted { $0.id < $1.id } }
    }
}

extension Array where Element == SessionSnapshot {
    /// The sessions of `pool`.
    func of(_ pool: ServerPool) -> [SessionSnapshot] { filter { $0.pool === pool } }

    /// How many are in `state` ("idle", "active", "waiting").
    func count(inState state: String) -> Int { reduce(0) { $0 + ($1.state == state ? 1 : 0) } }

    /// `pool`'s server connections: the idle ones and those its sessions (`self`) hold.
    func servers(of pool: ServerPool) -> [ServerSnapshot] {
        pool.idleServers().map { $0.snapshot(state: "idle") } + of(pool).compactMap(\.server)
    }
}
