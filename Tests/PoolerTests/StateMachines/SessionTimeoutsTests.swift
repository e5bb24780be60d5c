import NIOCore
import Testing
@testable import Pooler

@Suite struct SessionTimeoutsTests {
    let t0 = NIODeadline.uptimeNanoseconds(10_000_000_000)
    func at(_ ms: Int64) -> NIODeadline { t0 + .milliseconds(ms) }

    let all = SessionTimeouts.Limits(queryMs: 2_000, idleTransactionMs: 3_000, transactionMs: 10_000, clientIdleMs: 5_000)

    func check(_ now: Int64, _ activity: SessionTimeouts.Activity, txn: Int64? = nil, cancelSent: Bool = false,
               _ limits: SessionTimeouts.Limits? = nil) -> SessionTimeouts.Action? {
        SessionTimeouts.check(now: at(now), activity: activity, transactionSince: txn.map(at), cancelSent: cancelSent,
                              limits: limits ?? all)
    }

    /// Each timeout fires exactly at its limit, not a millisecond before.
    @Test(arguments: [
        // (activity kind, since, now, expected)
        ("running", 0, 1_999, nil), ("running", 0, 2_000, "cancel"),
        ("idleInTx", 100, 3_099, nil), ("idleInTx", 100, 3_100, "idleInTx"),
        ("idle", 0, 4_999, nil), ("idle", 0, 5_000, "idle"),
        ("waiting", 0, 60_000, nil),
    ] as [(String, Int64, Int64, String?)])
    func firesAtItsLimit(kind: String, since: Int64, now: Int64, expected: String?) {
        let activity: SessionTimeouts.Activity
        switch kind {
        case "running": activity = .running(since: at(since))
        case "idleInTx": activity = .idleInTransaction(since: at(since))
        case "idle": activity = .idle(since: at(since))
        default: activity = .waitingForServer
        }
        let action = check(now, activity)
        let names: [SessionTimeouts.Action: String] = [.cancelStatement: "cancel", .closeIdleInTransaction: "idleInTx",
                                                      .closeIdleClient: "idle", .closeTransaction: "txn"]
        #expect(action.flatMap { names[$0] } == expected)
    }

    @Test func zeroTurnsEachOff() {
        let off = SessionTimeouts.Limits.off
        #expect(off.isOff)
        #expect(check(1_000_000, .running(since: at(0)), txn: 0, off) == nil)
        #expect(check(1_000_000, .idleInTransaction(since: at(0)), txn: 0, off) == nil)
        #expect(check(1_000_000, .idle(since: at(0)), off) == nil)
    }

    @Test func aStatementIsCancelledOnce() {
        #expect(check(2_500, .running(since: at(0))) == .cancelStatement)
        #expect(check(9_000, .running(since: at(0)), cancelSent: true) == nil)
    }

    /// transaction_timeout wins over the others, whether a statement runs or not; not while queued.
    @Test func transactionTimeoutComesFirst() {
        #expect(check(10_000, .running(since: at(9_000)), txn: 0) == .closeTransaction)
        #expect(check(10_000, .idleInTransaction(since: at(9_500)), txn: 0) == .closeTransaction)
        #expect(check(9_999, .idleInTransaction(since: at(9_500)), txn: 0) == nil)
        #expect(check(20_000, .waitingForServer, txn: 0) == nil)
    }

    /// A client idle outside a transaction is not subject to the transaction's limits, and one idle
    /// inside a transaction is not cut off by client_idle_timeout.
    @Test func eachLimitAppliesOnlyToItsState() {
        let onlyIdle = SessionTimeouts.Limits(clientIdleMs: 1_000)
        #expect(check(5_000, .idleInTransaction(since: at(0)), txn: 0, onlyIdle) == nil)
        let onlyIdleTx = SessionTimeouts.Limits(idleTransactionMs: 1_000)
        #expect(check(5_000, .idle(since: at(0)), onlyIdleTx) == nil)
        #expect(check(5_000, .running(since: at(0)), txn: 0, onlyIdleTx) == nil)
    }

    @Test func disconnectsCarryPostgreSQLsCodes() {
        #expect(SessionTimeouts.Action.closeIdleInTransaction.fatal?.0 == "25P03")
        #expect(SessionTimeouts.Action.closeTransaction.fatal?.0 == "25P04")
        #expect(SessionTimeouts.Action.closeIdleClient.fatal?.0 == "57P05")
        #expect(SessionTimeouts.Action.cancelStatement.fatal == nil)
    }

    @Test func aStalledCopyIsEnded() {
        let copy = SessionTimeouts.Limits(copyDataMs: 1_000)
        func c(_ now: Int64, moved: Int64?) -> SessionTimeouts.Action? {
            SessionTimeouts.check(now: at(now), activity: .running(since: at(0)), transactionSince: nil, cancelSent: false,
                                  copyDataAt: moved.map(at), limits: copy)
        }
        #expect(c(5_000, moved: 4_500) == nil)
        #expect(c(5_000, moved: 4_000) == .closeStalledCopy)
        #expect(c(5_000, moved: nil) == nil)  // no COPY in progress
        #expect(SessionTimeouts.Action.closeStalledCopy.fatal?.0 == "57014")
    }
}
