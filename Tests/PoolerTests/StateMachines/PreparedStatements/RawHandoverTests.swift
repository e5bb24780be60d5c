import NIOCore
import Testing
@testable import Pooler

/// `adoptRawStream`: the session relayed messages raw and hands over mid-stream.
struct RawHandoverTests {
    private func backend(_ types: String) -> [(UInt8, ByteBuffer)] {
        types.map { t -> (UInt8, ByteBuffer) in
            var b = ByteBufferAllocator().buffer(capacity: 8)
            switch t {
            case "Z": b.writeInteger(UInt8(ascii: "I"))
            case "C": b.writeString("SELECT 1\0")
            case "E": b.writeString("SERROR\0C22012\0Mdivision by zero\0\0")
            default: break
            }
            return (t.asciiValue!, b)
        }
    }

    private func feed(_ r: inout PreparedStatementRewriter, _ types: String) -> String {
        var out = ByteBufferAllocator().buffer(capacity: 64)
        for (t, b) in backend(types) { r.serverMessage(type: t, body: b, toClient: &out) }
        return FE.types(out)
    }

    private func send(_ r: inout PreparedStatementRewriter, _ server: ServerStatements,
                      _ messages: [(UInt8, ByteBuffer)]) -> (toServer: String, toClient: String) {
        var toServer = ByteBufferAllocator().buffer(capacity: 64)
        var toClient = ByteBufferAllocator().buffer(capacity: 64)
        for (t, b) in messages {
            #expect(r.clientMessage(type: t, body: b, server: server, toServer: &toServer, toClientNow: &toClient) == .ok)
        }
        return (FE.types(toServer), FE.types(toClient))
    }

    @Test func rawRepliesPassThroughBeforeTheRewrittenOnes() {
        var r = PreparedStatementRewriter(cache: PreparedStatementCache(capacity: 10))
        let server = ServerStatements(capacity: 10)
        // Raw so far: one synced batch (P B E S) and an open one (P B) without replies yet.
        r.adoptRawStream(readyForQuery: 1, openMessages: 2, serverSkipping: false, openBatch: true,
                         unnamed: nil, unnamedOnServer: false)
        let sent = send(&r, server, [FE.parse("n", "SELECT 1"), FE.bind("", "n"), FE.execute(), FE.sync])
        #expect(sent.toServer == "PBES")
        #expect(sent.toClient == "")
        #expect(r.needsServerFiltering)
        // Replies: raw batch, raw open part, then the rewritten Parse (DOORMAN_n), Bind, Execute, Sync.
        #expect(feed(&r, "12CZ") == "12CZ")
        #expect(feed(&r, "12") == "12")
        #expect(feed(&r, "12DCZ") == "12DCZ")
        #expect(!r.needsServerFiltering)
        #expect(r.statement(named: "n") != nil)
    }

    @Test func errorInTheRawOpenPartSkipsTheRewrittenMessages() {
        var r = PreparedStatementRewriter(cache: PreparedStatementCache(capacity: 10))
        let server = ServerStatements(capacity: 10)
        r.adoptRawStream(readyForQuery: 0, openMessages: 3, serverSkipping: false, openBatch: true,
                         unnamed: nil, unnamedOnServer: false)
        _ = send(&r, server, [FE.parse("n", "SELECT 1"), FE.bind("", "n"), FE.execute(), FE.sync])
        // ParseComplete for the raw Parse, then an error: everything up to Sync is skipped.
        #expect(feed(&r, "1EZ") == "1EZ")
        #expect(r.statement(named: "n") == nil)
        #expect(!r.needsServerFiltering)
    }

    @Test func backendAlreadySkippingForwardsUntilSync() {
        var r = PreparedStatementRewriter(cache: PreparedStatementCache(capacity: 10))
        let server = ServerStatements(capacity: 10)
        r.adoptRawStream(readyForQuery: 0, openMessages: 0, serverSkipping: true, openBatch: true,
                         unnamed: nil, unnamedOnServer: false)
        let sent = send(&r, server, [FE.parse("n", "SELECT 1"), FE.bind("", "n"), FE.sync])
        #expect(sent.toServer == "PBS")
        #expect(feed(&r, "Z") == "Z")
        #expect(r.statement(named: "n") == nil)
    }

    @Test func adoptedUnnamedStatementIsReplayedOnAnotherBackend() {
        var r = PreparedStatementRewriter(cache: PreparedStatementCache(capacity: 10))
        let parse = FE.encode([FE.parse("", "SELECT 7")])
        r.adoptRawStream(readyForQuery: 0, openMessages: 0, serverSkipping: false, openBatch: false,
                         unnamed: parse, unnamedOnServer: false)
        let other = ServerStatements(capacity: 10)
        let sent = send(&r, other, [FE.bind("", ""), FE.execute(), FE.sync])
        #expect(sent.toServer == "PBES")
        #expect(feed(&r, "12DCZ") == "2DCZ")  // the replayed Parse's ParseComplete is dropped
    }

    @Test func unnamedWithUnknownBytesIsNotReplayed() {
        var r = PreparedStatementRewriter(cache: PreparedStatementCache(capacity: 10))
        r.adoptRawStream(readyForQuery: 0, openMessages: 0, serverSkipping: false, openBatch: false,
                         unnamed: ByteBuffer(), unnamedOnServer: false)
        let sent = send(&r, ServerStatements(capacity: 10), [FE.bind("", ""), FE.execute(), FE.sync])
        #expect(sent.toServer == "CBES")  // Close('S', "") so the backend reports the missing statement
    }
}
