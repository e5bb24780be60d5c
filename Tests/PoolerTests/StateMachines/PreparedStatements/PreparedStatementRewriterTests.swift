import NIOCore
import Testing
@testable import Pooler

struct PreparedStatementRewriterTests {
    typealias M = (UInt8, ByteBuffer)

    // MARK: Parse

    @Test func namedParseIsForwardedUnderDoormanName() {
        let world = PooledWorld(servers: 1)
        let c = world.client()
        let r = c.run([FE.parse("s1", "SELECT 1", [23]), FE.sync], on: 0)
        #expect(r.pooled == r.direct)
        #expect(r.pooled.types == "1Z")
        let sent = FE.split(c.lastToServer)
        #expect(sent.count == 2)
        let expected = FE.parse("DOORMAN_1", "SELECT 1", [23]).1
        #expect(sent[0].0 == UInt8(ascii: "P") && sent[0].1 == expected)
        #expect(world.servers[0].pg.statements["DOORMAN_1"]?.query == "SELECT 1")
        #expect(world.servers[0].statements.contains("DOORMAN_1"))
        #expect(world.servers[0].statements.misses == 1)
    }

    /// The rewriter remembers the statement the last Bind named; closing and redefining the name
    /// (or DEALLOCATE) must not leave the old statement bound.
    @Test(arguments: [PooledClient.Delivery.batched, .interleaved])
    func bindAfterRedefinitionUsesTheNewStatement(_ delivery: PooledClient.Delivery) {
        let world = PooledWorld(servers: 1)
        let c = world.client()
        let exec = [FE.bind("", "s", []), FE.describe("P", ""), FE.execute(), FE.sync]
        var r = c.run([FE.parse("s", "SELECT 1")] + exec, on: 0, delivery)
        #expect(r.pooled == r.direct)
        r = c.run(exec, on: 0, delivery)
        #expect(r.pooled == r.direct)
        r = c.run([FE.close("S", "s"), FE.parse("s", "SELECT 2")] + exec, on: 0, delivery)
        #expect(r.pooled == r.direct)
        #expect(r.pooled.types == "31" + "2TDCZ")
        r = c.run(exec, on: 0, delivery)
        #expect(r.pooled == r.direct)
        let bind = FE.split(c.lastToServer).first.map { Array($0.1.readableBytesView) } ?? []
        #expect(bind.first == 0 && String(decoding: bind.dropFirst().prefix { $0 != 0 }, as: UTF8.self) == "DOORMAN_2")
        let deallocated = c.rewriter.simpleQuery("DEALLOCATE s")
        #expect(deallocated == .deallocate(name: "s", existed: true))
        r = c.run(exec, on: 0, delivery)
        #expect(r.pooled.types == "EZ")
    }

    /// Backend reads whose awaited replies are all plain are relayed raw, the rewriter told each
    /// message's type: the client sees the same bytes, the statements end up the same.
    @Test(arguments: [PooledClient.Delivery.batched, .interleaved])
    func plainRepliesRelayedRawGiveTheSameResults(_ delivery: PooledClient.Delivery) {
        var transcripts: [[[UInt8]]] = []
        for plain in [false, true] {
            let world = PooledWorld(servers: 2)
            let c = world.client()
            c.plainReplies = plain
            var replies: [[UInt8]] = []
            let exec = [FE.bind("", "s", ["1"]), FE.execute(), FE.sync]
            for batch in [[FE.parse("s", "SELECT $1", [23])] + exec, exec, exec, [FE.query("SELECT FAIL")], exec,
                          [FE.bind("", "s", ["1"]), FE.execute(), FE.query("SELECT 1"), FE.sync], exec,
                          [FE.query("DISCARD ALL")], exec] {
                for server in [0, 1] {
                    let r = c.run(batch, on: server, delivery)
                    #expect(r.pooled == r.direct)
                    replies.append(r.pooled)
                }
            }
            #expect(c.rewriter.namedStatementCount == 0)  // DISCARD ALL seen by either path
            #expect(plain ? c.plainReads > 0 : c.plainReads == 0)
            transcripts.append(replies)
        }
        #expect(transcripts[0] == transcripts[1])
    }

    /// Pending synthetic or dropped replies, renamed errors and undos make the replies not plain.
    @Test func injectedAndSyntheticRepliesAreNotPlain() {
        let world = PooledWorld(servers: 3)
        let a = world.client(), b = world.client()
        a.run([FE.parse("x", "SELECT 1"), FE.sync], on: 0)
        // Whether the batch's replies were relayed raw (one backend read per batched run).
        func plain(_ batch: [(UInt8, ByteBuffer)], on server: Int) -> Bool {
            let before = b.plainReads
            let r = b.run(batch, on: server)
            #expect(r.pooled == r.direct)
            return b.plainReads > before
        }
        // A Parse sent to the backend: undone if it fails.
        #expect(!plain([FE.parse("y", "SELECT 1"), FE.sync], on: 1))
        #expect(plain([FE.bind("", "y"), FE.execute(), FE.sync], on: 1))
        // Behind an Execute in flight, a Parse the backend already has is answered synthetically.
        #expect(plain([FE.bind("", "y"), FE.execute(), FE.sync], on: 0))
        #expect(!plain([FE.bind("", "y"), FE.execute(), FE.parse("z", "SELECT 1"), FE.sync], on: 0))
        // A Bind of a known statement on a backend that lacks it: a Parse is injected, its reply dropped.
        #expect(!plain([FE.bind("", "y"), FE.execute(), FE.sync], on: 2))
        #expect(plain([FE.bind("", "y"), FE.execute(), FE.sync], on: 2))
    }

    @Test(arguments: [PooledClient.Delivery.batched, .interleaved])
    func secondParseOfSameContentIsSkippedWithSyntheticParseComplete(_ delivery: PooledClient.Delivery) {
        let world = PooledWorld(servers: 1)
        let a = world.client(), b = world.client()
        a.run([FE.parse("x", "SELECT 1"), FE.sync], on: 0, delivery)
        let parses = world.servers[0].pg.parsesReceived
        let r = b.run([FE.parse("y", "SELECT 1"), FE.bind("", "y", ["7"]), FE.describe("P", ""), FE.execute(), FE.sync], on: 0, delivery)
        #expect(world.servers[0].pg.parsesReceived == parses)
        #expect(r.pooled == r.direct)
        #expect(r.pooled.types == "12TDCZ")
        #expect(world.servers[0].statements.hits == 2)  // Parse y, Bind y
    }

    @Test(arguments: [PooledClient.Delivery.batched, .interleaved])
    func syntheticParseCompleteWithFlush(_ delivery: PooledClient.Delivery) {
        let world = PooledWorld(servers: 1)
        let a = world.client(), b = world.client()
        a.run([FE.parse("x", "SELECT 1"), FE.sync], on: 0)
        // P B D E H, then S separately
        var r = b.run([FE.parse("y", "SELECT 1"), FE.bind("", "y"), FE.describe("P", ""), FE.execute(), FE.flush],
                      on: 0, delivery, release: false)
        #expect(r.pooled == r.direct)
        #expect(r.pooled.types == "12TDC")
        r = b.run([FE.sync], on: 0, delivery)
        #expect(r.pooled == r.direct)
        // A Parse alone followed by Flush: the ParseComplete comes with no backend message at all.
        r = b.run([FE.parse("z", "SELECT 1"), FE.flush], on: 0, delivery, release: false)
        #expect(r.pooled.types == "1")
        #expect(r.pooled == r.direct)
        r = b.run([FE.describe("S", "z"), FE.flush], on: 0, delivery, release: false)
        #expect(r.pooled == r.direct)
        #expect(r.pooled.types == "tT")
        r = b.run([FE.sync], on: 0, delivery)
        #expect(r.pooled == r.direct)
    }

    @Test func syntheticParseCompleteOrderedAfterEarlierReplies() {
        let world = PooledWorld(servers: 1)
        let a = world.client(), b = world.client()
        a.run([FE.parse("x", "SELECT 2"), FE.sync], on: 0)
        // Replies to the first Bind/Execute must precede the synthetic ParseComplete of the second Parse.
        let r = b.run([FE.parse("p", "SELECT 1"), FE.bind("", "p"), FE.execute(),
                       FE.parse("q", "SELECT 2"), FE.bind("", "q"), FE.execute(), FE.sync], on: 0)
        #expect(r.pooled == r.direct)
        #expect(r.pooled.types == "12DC12DCZ")
    }

    // MARK: Transactions on different servers

    @Test(arguments: [PooledClient.Delivery.batched, .interleaved])
    func statementFollowsClientToAnotherServer(_ delivery: PooledClient.Delivery) {
        let world = PooledWorld(servers: 2)
        let c = world.client()
        var r = c.run([FE.parse("s", "SELECT $1", [23]), FE.bind("", "s", ["1"]), FE.execute(), FE.sync], on: 0, delivery)
        #expect(r.pooled == r.direct)
        r = c.run([FE.bind("", "s", ["2"]), FE.execute(), FE.sync], on: 1, delivery)
        #expect(r.pooled == r.direct)
        #expect(r.pooled.types == "2DCZ")
        #expect(world.servers[1].pg.statements["DOORMAN_1"] != nil)
        #expect(world.servers[1].statements.misses == 1)
        // Describe('S') on a third hop back to server 0: already there.
        r = c.run([FE.describe("S", "s"), FE.sync], on: 0, delivery)
        #expect(r.pooled == r.direct)
        #expect(r.pooled.types == "tTZ")
    }

    @Test func bindIsRewrittenByteExactly() {
        let world = PooledWorld(servers: 2)
        let c = world.client()
        c.run([FE.parse("stmt_name", "SELECT $1, $2", [23, 25]), FE.sync], on: 0)
        c.run([FE.bind("portal1", "stmt_name", ["42", nil], resultFormats: [1]), FE.sync], on: 1, release: false)
        let sent = FE.split(c.lastToServer)
        #expect(sent.map(\.0) == [UInt8(ascii: "P"), UInt8(ascii: "B"), UInt8(ascii: "S")])
        #expect(sent[0].1 == FE.parse("DOORMAN_1", "SELECT $1, $2", [23, 25]).1)
        #expect(sent[1].1 == FE.bind("portal1", "DOORMAN_1", ["42", nil], resultFormats: [1]).1)
        // Unnamed parses, Execute and Sync are copied unchanged.
        c.rewriter.serverReleased()
        c.run([FE.parse("", "SELECT 3", [0]), FE.execute("p"), FE.sync], on: 0)
        #expect(Array(c.lastToServer.readableBytesView)
                == Array(FE.encode([FE.parse("", "SELECT 3", [0]), FE.execute("p"), FE.sync]).readableBytesView))
    }

    // MARK: Collisions and sharing

    @Test func sameNameDifferentQueriesDoNotCollide() {
        let world = PooledWorld(servers: 1)
        let a = world.client(), b = world.client()
        var r = a.run([FE.parse("s", "SELECT 'a'"), FE.bind("", "s"), FE.execute(), FE.sync], on: 0)
        #expect(r.pooled == r.direct)
        r = b.run([FE.parse("s", "SELECT 'b'"), FE.bind("", "s"), FE.execute(), FE.sync], on: 0)
        #expect(r.pooled == r.direct)
        r = a.run([FE.bind("", "s"), FE.execute(), FE.sync], on: 0)
        #expect(r.pooled == r.direct)
        #expect(a.rewriter.statement(named: "s")!.name != b.rewriter.statement(named: "s")!.name)
    }

    @Test func sameQueryFromTwoClientsSharesServerName() {
        let world = PooledWorld(servers: 1)
        let a = world.client(), b = world.client()
        a.run([FE.parse("a1", "SELECT 9"), FE.sync], on: 0)
        b.run([FE.parse("b1", "SELECT 9"), FE.sync], on: 0)
        #expect(a.rewriter.statement(named: "a1") === b.rewriter.statement(named: "b1"))
        #expect(world.cache.count == 1)
        #expect(world.servers[0].pg.statements.count == 1)
        // different parameter types → different statement
        b.run([FE.parse("b2", "SELECT 9", [23]), FE.sync], on: 0)
        #expect(world.cache.count == 2)
    }

    // MARK: Unnamed statement

    @Test(arguments: [PooledClient.Delivery.batched, .interleaved])
    func unnamedStatementReplayedOnNewServer(_ delivery: PooledClient.Delivery) {
        let world = PooledWorld(servers: 2)
        let c = world.client(), other = world.client()
        var r = c.run([FE.parse("", "SELECT 5"), FE.bind("", ""), FE.execute(), FE.sync], on: 0, delivery)
        #expect(r.pooled == r.direct)
        // another client leaves a different unnamed statement on server 1
        other.run([FE.parse("", "SELECT 6"), FE.sync], on: 1)
        r = c.run([FE.bind("", ""), FE.execute(), FE.sync], on: 1, delivery)
        #expect(r.pooled == r.direct)
        #expect(r.pooled.types == "2DCZ")
        // a simple query drops the unnamed statement, as PostgreSQL does
        r = c.run([FE.query("SELECT 1")], on: 1, delivery)
        #expect(r.pooled == r.direct)
        other.run([FE.parse("", "SELECT 6"), FE.sync], on: 0)
        r = c.run([FE.bind("", ""), FE.execute(), FE.sync], on: 0, delivery)
        #expect(r.pooled == r.direct)
        #expect(r.pooled.types == "EZ")
    }

    @Test func bindOfUnnamedWithoutParseFailsLikePostgres() {
        let world = PooledWorld(servers: 1)
        let c = world.client(), other = world.client()
        other.run([FE.parse("", "SELECT 6"), FE.sync], on: 0)
        let r = c.run([FE.bind("", ""), FE.execute(), FE.sync], on: 0)
        #expect(r.pooled == r.direct)
        #expect(r.pooled.types == "EZ")
    }

    @Test func unknownNamesAreReportedByTheBackend() {
        let world = PooledWorld(servers: 1)
        let c = world.client()
        var r = c.run([FE.bind("", "nope"), FE.execute(), FE.sync], on: 0)
        #expect(r.pooled == r.direct)
        #expect(r.pooled.types == "EZ")
        r = c.run([FE.parse("ok", "SELECT 1"), FE.describe("S", "nope"), FE.bind("", "ok"), FE.sync], on: 0)
        #expect(r.pooled == r.direct)
        #expect(r.pooled.types == "1EZ")
        // The Parse before the error did succeed and stays recorded.
        #expect(world.servers[0].statements.contains("DOORMAN_1"))
    }

    // MARK: Close

    @Test func closeStatementIsAnsweredLocally() {
        let world = PooledWorld(servers: 2)
        let c = world.client()
        c.run([FE.parse("s", "SELECT 1"), FE.sync], on: 0)
        let closes = world.servers[1].pg.closesReceived
        var r = c.run([FE.close("S", "s"), FE.close("P", "whatever"), FE.sync], on: 1)
        #expect(r.pooled == r.direct)
        #expect(r.pooled.types == "33Z")
        #expect(world.servers[1].pg.closesReceived == closes + 1)  // only the portal Close
        #expect(c.rewriter.statement(named: "s") == nil)
        r = c.run([FE.bind("", "s"), FE.sync], on: 0)
        #expect(r.pooled == r.direct)
        #expect(r.pooled.types == "EZ")
        // the statement stays on server 0 for others
        #expect(world.servers[0].pg.statements["DOORMAN_1"] != nil)
        // re-Parse after Close works and reuses DOORMAN_1 without sending a Parse
        r = c.run([FE.parse("s", "SELECT 1"), FE.bind("", "s"), FE.execute(), FE.sync], on: 0)
        #expect(r.pooled == r.direct)
    }

    @Test(arguments: [PooledClient.Delivery.batched, .interleaved])
    func parseOfExistingNameFailsLikePostgres(_ delivery: PooledClient.Delivery) {
        let world = PooledWorld(servers: 2)
        let c = world.client()
        c.run([FE.parse("s", "SELECT 1"), FE.sync], on: 0, delivery)
        // On the same backend and on one that lacks the statement: 42P05 naming "s", batch skipped.
        for server in [0, 1] {
            let r = c.run([FE.parse("s", "SELECT 2"), FE.bind("", "s"), FE.execute(), FE.sync], on: server, delivery)
            #expect(r.pooled == r.direct)
            #expect(r.pooled.types == "EZ")
            #expect(c.rewriter.statement(named: "s")?.query == Array("SELECT 1".utf8))
        }
        let r = c.run([FE.bind("", "s"), FE.execute(), FE.sync], on: 1, delivery)
        #expect(r.pooled == r.direct)
        #expect(r.pooled.types == "2DCZ")
    }

    @Test func syncsIgnoredDuringExtendedCopyInAreReported() {
        let cache = PreparedStatementCache(capacity: 10)
        var r = PreparedStatementRewriter(cache: cache)
        let server = ServerStatements(capacity: 10)
        var toServer = ByteBufferAllocator().buffer(capacity: 64), now = ByteBufferAllocator().buffer(capacity: 0)
        for (t, b) in [FE.parse("", "COPY t FROM STDIN"), FE.bind("", ""), FE.execute(), FE.sync] {
            _ = r.clientMessage(type: t, body: b, server: server, toServer: &toServer, toClientNow: &now)
        }
        var toClient = ByteBufferAllocator().buffer(capacity: 64)
        let empty = ByteBufferAllocator().buffer(capacity: 0)
        r.serverMessage(type: UInt8(ascii: "1"), body: empty, toClient: &toClient)
        r.serverMessage(type: UInt8(ascii: "2"), body: empty, toClient: &toClient)
        var g = ByteBufferAllocator().buffer(capacity: 3)
        g.writeInteger(UInt8(0)); g.writeInteger(UInt16(0))
        r.serverMessage(type: UInt8(ascii: "G"), body: g, toClient: &toClient)
        #expect(r.isInCopyIn)
        #expect(r.takeIgnoredSyncs() == 1)
        #expect(r.takeIgnoredSyncs() == 0)
        _ = r.clientMessage(type: UInt8(ascii: "c"), body: empty, server: server, toServer: &toServer, toClientNow: &now)
        #expect(!r.isInCopyIn)
    }

    @Test func closeOfUnnamedStatementIsForwarded() {
        let world = PooledWorld(servers: 1)
        let c = world.client()
        let r = c.run([FE.parse("", "SELECT 1"), FE.close("S", ""), FE.bind("", ""), FE.sync], on: 0)
        #expect(r.pooled == r.direct)
        #expect(r.pooled.types == "13EZ")
        #expect(!c.rewriter.hasUnnamedStatement)
    }

    // MARK: Errors

    @Test(arguments: [PooledClient.Delivery.batched, .interleaved])
    func errorMidPipelineSuppressesLaterSyntheticReplies(_ delivery: PooledClient.Delivery) {
        let world = PooledWorld(servers: 1)
        let a = world.client(), c = world.client()
        a.run([FE.parse("x", "SELECT 1"), FE.parse("y", "UPDATE FAIL"), FE.sync], on: 0)
        let r = c.run([FE.parse("f", "UPDATE FAIL"), FE.bind("", "f"), FE.execute(),
                       FE.parse("p", "SELECT 1"), FE.close("S", "f"), FE.bind("", "p"), FE.execute(), FE.sync], on: 0, delivery)
        #expect(r.pooled == r.direct)
        #expect(r.pooled.types == "12EZ")
        // p was never created (skipped), f was never closed (skipped)
        #expect(c.rewriter.statement(named: "p") == nil)
        #expect(c.rewriter.statement(named: "f") != nil)
        let r2 = c.run([FE.bind("", "p"), FE.sync, FE.bind("", "f"), FE.sync], on: 0, delivery)
        #expect(r2.pooled == r2.direct)
        #expect(r2.pooled.types == "EZ2Z")
    }

    @Test(arguments: [PooledClient.Delivery.batched, .interleaved])
    func failedParseIsNotRecorded(_ delivery: PooledClient.Delivery) {
        let world = PooledWorld(servers: 1)
        let c = world.client()
        var r = c.run([FE.parse("bad", "SELECT BAD"), FE.bind("", "bad"), FE.sync], on: 0, delivery)
        #expect(r.pooled == r.direct)
        #expect(r.pooled.types == "EZ")
        #expect(world.servers[0].statements.count == 0)
        #expect(c.rewriter.statement(named: "bad") == nil)
        r = c.run([FE.bind("", "bad"), FE.sync], on: 0, delivery)
        #expect(r.pooled == r.direct)
        // a later good Parse of the same name works
        r = c.run([FE.parse("bad", "SELECT 1"), FE.bind("", "bad"), FE.execute(), FE.sync], on: 0, delivery)
        #expect(r.pooled == r.direct)
    }

    @Test func errorBeforeSyncWithFlushThenSyncLater() {
        let world = PooledWorld(servers: 1)
        let a = world.client(), c = world.client()
        a.run([FE.parse("x", "SELECT 1"), FE.sync], on: 0)
        var r = c.run([FE.parse("f", "UPDATE FAIL"), FE.bind("", "f"), FE.execute(), FE.flush], on: 0, release: false)
        #expect(r.pooled == r.direct)
        // the backend is now skipping; messages sent before Sync produce nothing
        r = c.run([FE.parse("p", "SELECT 1"), FE.bind("", "p"), FE.execute(), FE.flush], on: 0, release: false)
        #expect(r.pooled == r.direct)
        #expect(r.pooled.isEmpty)
        r = c.run([FE.sync], on: 0)
        #expect(r.pooled == r.direct)
        #expect(c.rewriter.statement(named: "p") == nil)
        r = c.run([FE.parse("p", "SELECT 1"), FE.bind("", "p"), FE.execute(), FE.sync], on: 0)
        #expect(r.pooled == r.direct)
    }

    @Test func injectedParseFailureIsReportedAndRecovered() {
        let world = PooledWorld(servers: 2)
        world.servers[1].pg.rejects = "tbl"
        let c = world.client()
        c.run([FE.parse("s", "SELECT * FROM tbl"), FE.sync], on: 0)
        let r = c.run([FE.bind("", "s"), FE.execute(), FE.sync], on: 1).pooled
        #expect(r.types == "EZ")
        #expect(!world.servers[1].statements.contains("DOORMAN_1"))
        #expect(!c.rewriter.needsServerFiltering)
        world.servers[1].pg.rejects = nil
        let r2 = c.run([FE.bind("", "s"), FE.execute(), FE.sync], on: 1)
        #expect(r2.pooled.types == "2DCZ")
    }

    @Test func releaseWithRepliesOutstandingReportsUncertainty() {
        let world = PooledWorld(servers: 1)
        let c = world.client()
        var toServer = ByteBufferAllocator().buffer(capacity: 64)
        var now = ByteBufferAllocator().buffer(capacity: 0)
        let (t, b) = FE.parse("s", "SELECT 1")
        _ = c.rewriter.clientMessage(type: t, body: b, server: world.servers[0].statements, toServer: &toServer, toClientNow: &now)
        #expect(c.rewriter.needsServerFiltering)
        let uncertain = c.rewriter.serverReleased()
        #expect(uncertain)
        #expect(!c.rewriter.needsServerFiltering)
    }

    // MARK: Eviction

    @Test(arguments: [PooledClient.Delivery.batched, .interleaved])
    func evictionInTheMiddleOfABatch(_ delivery: PooledClient.Delivery) {
        let world = PooledWorld(servers: 2, serverCapacity: 1)
        let c = world.client()
        var r = c.run([FE.parse("a", "SELECT 'a'"), FE.parse("b", "SELECT 'b'"), FE.parse("c", "SELECT 'c'"),
                       FE.bind("", "a"), FE.execute(), FE.bind("", "b"), FE.execute(), FE.bind("", "c"), FE.execute(),
                       FE.sync], on: 0, delivery)
        #expect(r.pooled == r.direct)
        #expect(world.servers[0].statements.count == 1)
        #expect(world.servers[0].statements.pendingCloseCount == 2)
        // the next batch closes the evicted statements first; their CloseCompletes are dropped
        r = c.run([FE.bind("", "a"), FE.execute(), FE.sync], on: 0, delivery)
        #expect(r.pooled == r.direct)
        // Close a, Close b, Parse a (evicting c, whose Close waits for the next batch)
        #expect(world.servers[0].pg.statements.count == 2)
        #expect(world.servers[0].statements.count == 1)
        #expect(world.servers[0].statements.pendingCloseCount == 1)
        // rotate across both servers
        for round in 0..<3 {
            for name in ["a", "b", "c"] {
                r = c.run([FE.bind("", name), FE.describe("P", ""), FE.execute(), FE.sync], on: round % 2, delivery)
                #expect(r.pooled == r.direct)
            }
        }
        #expect(world.servers[0].pg.statements.count <= 2)
        #expect(world.servers[1].pg.statements.count <= 2)
    }

    @Test func evictedButUnclosedStatementIsRevived() {
        let world = PooledWorld(servers: 1, serverCapacity: 1)
        let c = world.client()
        c.run([FE.parse("a", "SELECT 'a'"), FE.sync], on: 0)
        let r = c.run([FE.parse("b", "SELECT 'b'"), FE.bind("", "a"), FE.execute(), FE.sync], on: 0)
        #expect(r.pooled == r.direct)
        // "a" was evicted by "b" and then needed again in the same batch: no second Parse of it
        #expect(world.servers[0].pg.parsesReceived == 2)
        #expect(world.servers[0].statements.contains("DOORMAN_1"))
    }

    @Test func poolCacheEvictionKeepsClientsWorking() {
        let world = PooledWorld(servers: 2, cacheCapacity: 1)
        let a = world.client(), b = world.client()
        a.run([FE.parse("s", "SELECT 1"), FE.sync], on: 0)
        b.run([FE.parse("s", "SELECT 2"), FE.sync], on: 0)
        #expect(world.cache.count == 1)
        let r = a.run([FE.bind("", "s"), FE.execute(), FE.sync], on: 1)
        #expect(r.pooled == r.direct)
    }

    // MARK: DEALLOCATE / DISCARD

    @Test func deallocateIsAnsweredLocally() {
        let world = PooledWorld(servers: 1)
        let c = world.client()
        c.run([FE.parse("s", "SELECT 1"), FE.parse("t", "SELECT 2"), FE.sync], on: 0)
        for sql in ["DEALLOCATE s", "deallocate s;"] {
            let action = c.rewriter.simpleQuery(sql)
            var local = ByteBufferAllocator().buffer(capacity: 64)
            PreparedStatementRewriter.writeLocalReply(action, transactionStatus: UInt8(ascii: "I"), into: &local)
            let direct = c.direct.receive(FE.encode([FE.query(sql)]))
            #expect(local == direct)
        }
        let r = c.run([FE.bind("", "s"), FE.sync, FE.bind("", "t"), FE.sync], on: 0)
        #expect(r.pooled == r.direct)
        #expect(r.pooled.types == "EZ2Z")
        #expect(c.rewriter.simpleQuery("DEALLOCATE PREPARE ALL") == .deallocateAll)
        #expect(c.rewriter.namedStatementCount == 0)
        #expect(c.rewriter.simpleQuery("DEALLOCATE \"Mixed\"\"Case\"") == .deallocate(name: "Mixed\"Case", existed: false))
        #expect(c.rewriter.simpleQuery("SELECT 1") == .none)
    }

    @Test func discardAllClearsClientAndServerState() {
        let world = PooledWorld(servers: 1)
        let c = world.client()
        c.run([FE.parse("s", "SELECT 1"), FE.sync], on: 0)
        #expect(c.rewriter.simpleQuery("DISCARD ALL") == .discardAll)
        var r = c.run([FE.query("DISCARD ALL")], on: 0)
        #expect(r.pooled == r.direct)
        #expect(world.servers[0].statements.count == 0)
        #expect(c.rewriter.namedStatementCount == 0)
        // another client re-prepares on the same server after the backend forgot everything
        let d = world.client()
        r = d.run([FE.parse("s", "SELECT 1"), FE.bind("", "s"), FE.execute(), FE.sync], on: 0)
        #expect(r.pooled == r.direct)
    }

    @Test func removeAllForgetsServerStatementsAndPendingCloses() {
        let world = PooledWorld(servers: 1)
        let c = world.client()
        c.run([FE.parse("s", "SELECT 1"), FE.sync], on: 0)
        world.servers[0].statements.removeAll()
        #expect(world.servers[0].statements.count == 0)
        #expect(world.servers[0].statements.pendingCloseCount == 0)
    }
}
