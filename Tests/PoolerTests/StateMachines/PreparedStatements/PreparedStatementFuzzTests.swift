import NIOCore
import Testing
@testable import Pooler

/// Random batches from several clients over several small-capacity backends: every batch's reply
/// bytes through the rewriter must equal what the client's own direct backend answers.
struct PreparedStatementFuzzTests {
    static let queries = ["SELECT 1", "SELECT 2", "UPDATE t", "SELECT 3 FAIL", "SELECT BAD", "SELECT $1"]
    static let names = ["a", "b", "c", ""]

    @Test(arguments: 0..<60)
    func randomBatchesMatchDirectBackend(seed: Int) {
        var rng = FuzzRNG(seed: UInt64(seed) &* 7919 &+ 1)
        let world = PooledWorld(servers: 3, cacheCapacity: 4, serverCapacity: 2)
        let clients = (0..<3).map { _ in world.client() }
        var maybeExists = Array(repeating: Set<String>(), count: clients.count)
        for step in 0..<40 {
            let ci = Int.random(in: 0..<clients.count, using: &rng)
            let c = clients[ci]
            let server = Int.random(in: 0..<world.servers.count, using: &rng)
            var batch: [(UInt8, ByteBuffer)] = []
            // A Close only counts once the batch is known to have had no error (a skipped Close
            // leaves the statement, and re-Parsing an existing name is where the pooler is
            // deliberately more lenient than PostgreSQL).
            var closed: Set<String> = []
            if Int.random(in: 0..<10, using: &rng) == 0 {
                batch = [FE.query(Bool.random(using: &rng) ? "SELECT 1" : "SELECT FAIL")]
            } else {
                for _ in 0..<Int.random(in: 1...6, using: &rng) {
                    let name = Self.names.randomElement(using: &rng)!
                    switch Int.random(in: 0..<9, using: &rng) {
                    case 0, 1:
                        if name.isEmpty || !maybeExists[ci].contains(name) {
                            let q = Self.queries.randomElement(using: &rng)!
                            batch.append(FE.parse(name, q, Bool.random(using: &rng) ? [] : [23]))
                            if !name.isEmpty {
                                maybeExists[ci].insert(name)
                                closed.remove(name)
                            }
                        }
                    case 2, 3:
                        batch.append(FE.bind("", name, [String(step)]))
                        if Bool.random(using: &rng) { batch.append(FE.describe("P", "")) }
                        batch.append(FE.execute())
                    case 4:
                        batch.append(FE.describe("S", name))
                    case 5:
                        batch.append(FE.close("S", name))
                        closed.insert(name)
                    case 6:
                        batch.append(FE.close("P", ""))
                    case 7:
                        batch.append(FE.flush)
                    default:
                        batch.append(FE.execute())
                    }
                }
                batch.append(FE.sync)
            }
            let delivery: PooledClient.Delivery = Bool.random(using: &rng) ? .batched : .interleaved
            // Plain backend reads relayed raw (the session's fast path) on every other step.
            c.plainReplies = (step + seed) % 2 == 0
            let r = c.run(batch, on: server, delivery)
            #expect(r.pooled == r.direct, "seed \(seed) step \(step): \(r.pooled.types) vs \(r.direct.types)")
            #expect(!c.rewriter.needsServerFiltering)
            if r.pooled != r.direct { return }
            if !r.direct.types.contains("E") { maybeExists[ci].subtract(closed) }
        }
        for s in world.servers {
            #expect(s.statements.count <= 2)
            #expect(s.pg.statements.count <= 2 + s.statements.pendingCloseCount)
        }
    }
}
