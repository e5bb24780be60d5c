import Testing
@testable import Pooler

/// The relay's decisions without a socket: each case is a transcript (what the client sent, what
/// the server answered) replayed as events, and the release verdict expected at its end.
struct ClientSessionStateMachineTests {
    typealias Machine = ClientSessionStateMachine

    /// One step of a transcript. Frontend and backend messages are a type letter and the first
    /// body bytes the relay would see.
    enum Step {
        case fe(Character, String = "")
        case be(Character, String = "")
    }

    /// Replays `steps` on the raw path (no rewriter) and returns the machine and whether the last
    /// backend message was a transaction boundary.
    static func replay(_ steps: [Step], session: Bool = false, rewriter: Bool = false,
                       canSwitch: Bool = false) -> (Machine, [Machine.RawFrontendAction], [Machine.BackendEffect]) {
        var m = Machine(sessionMode: session)
        m.serverAttached(rewriterAvailable: rewriter)
        var actions: [Machine.RawFrontendAction] = []
        var effects: [Machine.BackendEffect] = []
        for step in steps {
            switch step {
            case .fe(let t, let prefix):
                let type = t.asciiValue ?? 0
                let bytes = Array(prefix.utf8).map { $0 == UInt8(ascii: "0") ? 0 : $0 }  // '0' stands for NUL
                bytes.withUnsafeBytes {
                    actions.append(m.rawFrontend(type, prefix: $0, rewriterAvailable: rewriter, canSwitch: canSwitch))
                }
            case .be(let t, let prefix):
                let type = t.asciiValue ?? 0
                let bytes = Array(prefix.utf8) + (t == "C" ? [0] : [])
                bytes.withUnsafeBytes { effects.append(m.rawBackend(type, prefix: $0)) }
            }
        }
        return (m, actions, effects)
    }

    static let clean = Machine.Streams()
    static let none = Machine.ReleaseVerdict.release(.none)

    struct Case: CustomTestStringConvertible {
        var name: String
        var steps: [Step]
        var session = false
        var point: Machine.ReleasePoint
        var streams = ClientSessionStateMachineTests.clean
        var cleanup = true
        /// `cancel_on_client_disconnect` (default on).
        var cancel = true
        var expected: Machine.ReleaseVerdict
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "simple query, transaction mode: released at idle ReadyForQuery",
             steps: [.fe("Q"), .be("T"), .be("D"), .be("C", "SELECT 1"), .be("Z", "I")],
             point: .transactionBoundary, expected: none),
        Case(name: "session mode keeps its server at idle ReadyForQuery",
             steps: [.fe("Q"), .be("C", "SELECT 1"), .be("Z", "I")], session: true,
             point: .transactionBoundary, expected: .keep),
        Case(name: "session mode releases once the client terminated",
             steps: [.fe("Q"), .be("C", "SELECT 1"), .be("Z", "I"), .fe("X")], session: true,
             point: .transactionBoundary, expected: none),
        Case(name: "SET leaves session state: RESET ALL before reuse",
             steps: [.fe("Q"), .be("C", "SET"), .be("Z", "I")],
             point: .transactionBoundary, expected: .release(.init(rollback: false, reset: .parameters))),
        Case(name: "PREPARE, LISTEN, a cursor and a table: each reset on its own",
             steps: [.fe("Q"), .be("C", "PREPARE"), .be("C", "LISTEN"), .be("C", "DECLARE CURSOR"),
                     .be("C", "CREATE TABLE"), .be("Z", "I")],
             point: .transactionBoundary,
             expected: .release(.init(rollback: false, reset: [.statements, .listens, .cursors, .tempTables]))),
        Case(name: "SET without cleanup_server_connections: released as it is",
             steps: [.fe("Q"), .be("C", "SET"), .be("Z", "I")],
             point: .transactionBoundary, cleanup: false, expected: none),
        Case(name: "SELECT is not SET",
             steps: [.fe("Q"), .be("C", "SELECT 3"), .be("Z", "I")],
             point: .transactionBoundary, expected: none),
        Case(name: "client leaves inside a transaction: ROLLBACK first",
             steps: [.fe("Q"), .be("C", "BEGIN"), .be("Z", "T")],
             point: .clientClosed, expected: .release(.init(rollback: true, reset: []))),
        Case(name: "client leaves inside a failed transaction: ROLLBACK first",
             steps: [.fe("Q"), .be("E"), .be("Z", "E")],
             point: .clientClosed, expected: .release(.init(rollback: true, reset: []))),
        Case(name: "client leaves with a reply due: its statement cancelled, the server discarded",
             steps: [.fe("Q")],
             point: .clientClosed, expected: .cancelAndDiscard),
        Case(name: "client leaves with a reply due, cancel_on_client_disconnect off: discarded, not cancelled",
             steps: [.fe("Q")],
             point: .clientClosed, cancel: false, expected: .discard),
        Case(name: "client leaves mid-response (server message half received): discarded",
             steps: [.fe("Q"), .be("T"), .be("D"), .be("C", "SELECT 1"), .be("Z", "I")],
             point: .clientClosed, streams: .init(serverAtBoundary: false), expected: .discard),
        Case(name: "client leaves mid-message (its own message half sent): discarded",
             steps: [],
             point: .clientClosed, streams: .init(clientAtBoundary: false), expected: .discard),
        Case(name: "extended query with Sync: released after its ReadyForQuery",
             steps: [.fe("P", "0"), .fe("B", "00"), .fe("D", "P0"), .fe("E"), .fe("S"),
                     .be("1"), .be("2"), .be("T"), .be("D"), .be("C", "SELECT 1"), .be("Z", "I")],
             point: .transactionBoundary, expected: none),
        Case(name: "extended batch still open (Flush, no Sync): kept at the boundary",
             steps: [.fe("Q"), .be("Z", "I"), .fe("P", "0"), .fe("B", "00"), .fe("E"), .fe("H")],
             point: .transactionBoundary, expected: .keep),
        Case(name: "extended batch open when the client leaves: cancelled and discarded",
             steps: [.fe("P", "0"), .fe("B", "00"), .fe("E"), .fe("H"), .be("1"), .be("2"), .be("C", "SELECT 1")],
             point: .clientClosed, expected: .cancelAndDiscard),
        Case(name: "extended batch open when the client leaves, cancel off: discarded",
             steps: [.fe("P", "0"), .fe("B", "00"), .fe("E"), .fe("H"), .be("1"), .be("2"), .be("C", "SELECT 1")],
             point: .clientClosed, cancel: false, expected: .discard),
        Case(name: "pipeline with an error in the first batch: released after the last Sync",
             steps: [.fe("P", "0"), .fe("B", "00"), .fe("E"), .fe("S"), .fe("P", "0"), .fe("B", "00"), .fe("E"),
                     .fe("S"), .be("E"), .be("Z", "I"), .be("1"), .be("2"), .be("C", "SELECT 1"), .be("Z", "I")],
             point: .transactionBoundary, expected: none),
        Case(name: "COPY FROM STDIN in progress when the client leaves: cancelled and discarded",
             steps: [.fe("Q"), .be("G"), .fe("d")],
             point: .clientClosed, expected: .cancelAndDiscard),
        Case(name: "COPY FROM STDIN completed: released",
             steps: [.fe("Q"), .be("G"), .fe("d"), .fe("c"), .be("C", "COPY 1"), .be("Z", "I")],
             point: .transactionBoundary, expected: none),
        Case(name: "COPY FROM STDIN failed by the client: released after the error",
             steps: [.fe("Q"), .be("G"), .fe("d"), .fe("f"), .be("E"), .be("Z", "I")],
             point: .transactionBoundary, expected: none),
        Case(name: "COPY TO STDOUT interrupted by the client leaving: cancelled and discarded",
             steps: [.fe("Q"), .be("H"), .be("d")],
             point: .clientClosed, expected: .cancelAndDiscard),
        Case(name: "COPY TO STDOUT interrupted, cancel off: discarded",
             steps: [.fe("Q"), .be("H"), .be("d")],
             point: .clientClosed, cancel: false, expected: .discard),
        Case(name: "COPY TO STDOUT completed: released",
             steps: [.fe("Q"), .be("H"), .be("d"), .be("c"), .be("C", "COPY 1"), .be("Z", "I")],
             point: .transactionBoundary, expected: none),
        Case(name: "extended COPY FROM STDIN: the Syncs PostgreSQL ignores are not waited for",
             steps: [.fe("P", "0"), .fe("B", "00"), .fe("E"), .fe("S"), .fe("S"), .be("1"), .be("2"), .be("G"),
                     .fe("d"), .fe("c"), .fe("S"), .be("C", "COPY 1"), .be("Z", "I")],
             point: .transactionBoundary, expected: none),
        Case(name: "a statement named raw (no rewriter) marks the server for cleanup",
             steps: [.fe("P", "s1"), .fe("B", "0s"), .fe("E"), .fe("S"), .be("1"), .be("2"), .be("C", "SELECT 1"),
                     .be("Z", "I")],
             point: .transactionBoundary, expected: .release(.init(rollback: false, reset: .statements))),
        Case(name: "nothing sent while idle: released",
             steps: [.fe("Q"), .be("Z", "I")],
             point: .nothingSent, expected: none),
        Case(name: "nothing sent inside a transaction: kept",
             steps: [.fe("Q"), .be("Z", "T")],
             point: .nothingSent, expected: .keep),
        Case(name: "nothing sent while the rewriter waits for replies: kept",
             steps: [.fe("Q"), .be("Z", "I")],
             point: .nothingSent, streams: .init(rewriterExpectsReplies: true), expected: .keep),
        Case(name: "rewriter unsure what the server holds: discarded",
             steps: [.fe("Q"), .be("Z", "I")],
             point: .transactionBoundary, streams: .init(rewriterUncertain: true), expected: .discard),
        Case(name: "client closed while the rewriter waits for replies: discarded",
             steps: [.fe("Q"), .be("Z", "I")],
             point: .clientClosed, streams: .init(rewriterExpectsReplies: true), expected: .discard),
    ]

    @Test(arguments: cases)
    func releaseVerdict(_ c: Case) {
        let (m, _, _) = Self.replay(c.steps, session: c.session)
        #expect(m.releaseVerdict(at: c.point, streamsNow: c.streams, cleanupEnabled: c.cleanup,
                                 cancelOnClientDisconnect: c.cancel) == c.expected)
    }

    @Test func idleReadyForQueryIsTheBoundaryOnlyWhenNothingElseIsDue() {
        let (_, _, effects) = Self.replay([.fe("Q"), .fe("Q"), .be("Z", "I"), .be("Z", "I")])
        #expect(effects == [.none, .transactionBoundary])
        let (_, _, inTx) = Self.replay([.fe("Q"), .be("Z", "T")])
        #expect(inTx == [.none])
    }

    @Test func discardAllDropsTheServersStatements() {
        let (_, _, effects) = Self.replay([.fe("Q"), .be("C", "DISCARD ALL"), .be("Z", "I")])
        #expect(effects.first == .statementsDropped)
    }

    @Test func countsQueriesTransactionsAndErrors() {
        var (m, _, _) = Self.replay([.fe("Q"), .be("E"), .be("Z", "I"), .fe("P", "0"), .fe("B", "00"), .fe("E"),
                                     .fe("S"), .be("1"), .be("2"), .be("C", "SELECT 1"), .be("Z", "I")])
        m.transactionEnded()
        #expect(m.queryCount == 2)
        #expect(m.errorCount == 1)
        #expect(m.transactionCount == 1)
    }

    @Test func terminateIsNeverForwarded() {
        let (m, actions, _) = Self.replay([.fe("Q"), .fe("X")])
        #expect(actions == [.forwardForgettingUnnamedParse, .terminate])
        #expect(m.terminating)
    }

    @Test func namedStatementSwitchesToTheRewriterWhenPossible() {
        let (_, actions, _) = Self.replay([.fe("P", "0"), .fe("P", "s1")], rewriter: true, canSwitch: true)
        #expect(actions == [.forwardRememberingUnnamedParse, .switchToRewriter])
    }

    @Test func namedStatementGoesRawAndDirtyWhenTheSwitchIsImpossible() {
        let (m, actions, _) = Self.replay([.fe("P", "s1"), .fe("S")], rewriter: true, canSwitch: false)
        #expect(actions == [.forward, .forward])
        #expect(m.leftSessionState == .statements)
    }

    @Test func bindOfAnUnnamedStatementNotParsedHereIsRefusedWhenTheSwitchIsImpossible() {
        let (_, actions, _) = Self.replay([.fe("B", "00")], rewriter: true, canSwitch: false)
        #expect(actions == [.refuseUnknownUnnamed])
        let (_, parsedHere, _) = Self.replay([.fe("P", "0"), .fe("B", "00")], rewriter: true, canSwitch: false)
        #expect(parsedHere == [.forwardRememberingUnnamedParse, .forward])
    }

    @Test func switchIsImpossibleDuringCopyOrMidMessage() {
        var (m, _, _) = Self.replay([.fe("Q"), .be("G")], rewriter: true)
        #expect(!m.canSwitchToRewriter(rewriterAvailable: true, serverAtBoundary: true))
        m.serverDetached()
        m.serverAttached(rewriterAvailable: true)
        #expect(m.canSwitchToRewriter(rewriterAvailable: true, serverAtBoundary: true))
        #expect(!m.canSwitchToRewriter(rewriterAvailable: true, serverAtBoundary: false))
        #expect(!m.canSwitchToRewriter(rewriterAvailable: false, serverAtBoundary: true))
    }

    @Test func openBatchErrorMakesTheBackendSkipToSync() {
        let (m, _, _) = Self.replay([.fe("P", "0"), .fe("B", "00"), .fe("E"), .be("E")])
        #expect(m.backendSkipping)
        #expect(m.openMessages == 0)
        let (after, _, _) = Self.replay([.fe("P", "0"), .fe("B", "00"), .fe("E"), .be("E"), .fe("S")])
        #expect(!after.backendSkipping)
    }

    @Test func aNewServerStartsWithNothingDue() {
        var (m, _, _) = Self.replay([.fe("Q"), .be("C", "SET"), .be("Z", "T")])
        m.serverDetached()
        m.serverAttached(rewriterAvailable: false)
        #expect(m.expectedReady == 0)
        #expect(m.transactionStatus == .idle)
        #expect(m.leftSessionState.isEmpty)
        #expect(m.releaseVerdict(at: .clientClosed, streamsNow: Self.clean, cleanupEnabled: true,
                                 cancelOnClientDisconnect: true) == Self.none)
    }

    @Test func rewritingModeFollowsTheClientAcrossServers() {
        var m = Machine(sessionMode: false)
        m.serverAttached(rewriterAvailable: true)
        #expect(m.mode == .raw)
        m.switchedToRewriter()
        #expect(m.mode == .rewriting)
        m.serverDetached()
        #expect(m.mode == .raw)
        m.serverAttached(rewriterAvailable: true)
        #expect(m.mode == .rewriting)
    }

    @Test func messagesPostgreSQLRejectsInASessionAreRefused() {
        let (_, actions, _) = Self.replay([.fe("Q"), .fe("z"), .fe("p"), .fe("d"), .fe("c"), .fe("f")])
        #expect(actions == [.forwardForgettingUnnamedParse, .protocolViolation, .protocolViolation,
                            .forward, .forward, .forward])
        for byte in UInt8(0)...UInt8(255) {
            let accepted = Machine.acceptedInSession(byte) != nil
            #expect(accepted == "QPBEDCHSFXdcf".utf8.contains(byte), "type \(byte)")
        }
    }

    @Test func cleanupQueriesResetOnlyWhatWasLeft() {
        typealias C = Machine.Cleanup
        #expect(C.none.queries.isEmpty)
        #expect(C(rollback: true, reset: []).queries == ["ROLLBACK"])
        #expect(C(rollback: false, reset: .parameters).queries == ["SET SESSION AUTHORIZATION DEFAULT", "RESET ALL"])
        #expect(C(rollback: true, reset: [.statements, .cursors, .listens, .tempTables]).queries
                == ["ROLLBACK", "DEALLOCATE ALL", "CLOSE ALL", "UNLISTEN *", "DISCARD TEMP"])
    }
}
