import Testing
@testable import Pooler

struct SessionParametersTests {
    typealias P = SessionParameters

    @Test func startupKeysBecomeCanonicalParameters() {
        let p = P.fromStartup(["user": "u", "database": "d", "timezone": "Asia/Tokyo", "DATESTYLE": "German",
                               "application_name": "app", "_pq_.compression": "on", "replication": "false",
                               "is_superuser": "on", "extra_float_digits": "3"])
        #expect(p.values == ["TimeZone": "Asia/Tokyo", "DateStyle": "German", "application_name": "app",
                             "extra_float_digits": "3"])
    }

    @Test func optionsAreParsedAndOwnKeysWin() {
        let p = P.fromStartup(["user": "u", "options": "-c search_path=a,b --statement-timeout=5s -cwork_mem=8MB -v",
                               "statement_timeout": "7s"])
        #expect(p.values == ["search_path": "a,b", "statement_timeout": "7s", "work_mem": "8MB"])
    }

    @Test func optionsBackslashEscapesASpace() {
        #expect(P.parseOptions(#"-c application_name=my\ app -c x.y=1"#).map { "\($0.0)=\($0.1)" }
                == ["application_name=my app", "x.y=1"])
    }

    @Test func pinnedParametersAreNotTakenFromTheClient() {
        let p = P.fromStartup(["user": "u", "TimeZone": "UTC", "search_path": "x"], pinned: ["search_path"])
        #expect(p.values == ["TimeZone": "UTC"])
    }

    @Test func changesSetWhatDiffersAndResetWhatThePoolerSet() {
        let baseline = ["TimeZone": "Etc/UTC", "DateStyle": "ISO, MDY", "application_name": "pg_doorman",
                        "is_superuser": "off"]
        let client = P(["TimeZone": "Asia/Tokyo", "statement_timeout": "1500"])
        // A server left in another client's TimeZone, with another client's statement_timeout and
        // work_mem, and DateStyle changed by someone.
        let server = ["TimeZone": "Europe/Berlin", "DateStyle": "German, DMY", "application_name": "pg_doorman",
                      "is_superuser": "off", "statement_timeout": "1500", "work_mem": "8MB"]
        let changes = client.changes(server: server, baseline: baseline)
        #expect(changes == [P.Change(name: "DateStyle", value: "ISO, MDY"), P.Change(name: "TimeZone", value: "Asia/Tokyo"),
                            P.Change(name: "work_mem", value: nil)])
        #expect(P.query(for: changes) == "SELECT pg_catalog.set_config(E'DateStyle', E'ISO, MDY', false), "
                + "pg_catalog.set_config(E'TimeZone', E'Asia/Tokyo', false); RESET \"work_mem\"")
    }

    @Test func nothingToChangeOnAMatchingServer() {
        let baseline = ["TimeZone": "Etc/UTC", "is_superuser": "off"]
        #expect(P().changes(server: baseline, baseline: baseline).isEmpty)
        let client = P(["TimeZone": "Asia/Tokyo"])
        #expect(client.changes(server: ["TimeZone": "Asia/Tokyo", "is_superuser": "off"], baseline: baseline).isEmpty)
    }

    @Test func literalsSurviveQuotesAndBackslashes() {
        #expect(P.literal(#"it's a \ path"#) == #"E'it''s a \\ path'"#)
        #expect(P.identifier(#"we"ird"#) == #""we""ird""#)
    }

    private func set(_ text: String, complete: Bool = true) -> [String]? {
        Array(text.utf8).withUnsafeBytes { P.parseSet($0, complete: complete) }.map { [$0.0, $0.1] }
    }

    @Test func recognisesSessionSets() {
        #expect(set("SET extra_float_digits = 3") == ["extra_float_digits", "3"])
        #expect(set("  set SESSION statement_timeout TO '5s';") == ["statement_timeout", "5s"])
        #expect(set("SET search_path TO a, b") == ["search_path", "a, b"])
        #expect(set("SET application_name = 'it''s'") == ["application_name", "it's"])
        #expect(set("SET TIMEZONE TO 'UTC'") == ["TimeZone", "UTC"])
    }

    @Test func ignoresWhatIsNotASessionSet() {
        #expect(set("SET LOCAL statement_timeout = 5") == nil)
        #expect(set("SET statement_timeout TO DEFAULT") == nil)
        #expect(set("SET statement_timeout = 5; SELECT 1") == nil)
        #expect(set("SELECT 'SET x = 1'") == nil)
        #expect(set("SETx = 1") == nil)
        #expect(set("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE") == nil)
        #expect(set("SET statement_timeout = 5", complete: false) == nil)
        #expect(set("SET statement_timeout = 5\0trailing", complete: false) == ["statement_timeout", "5"])
    }
}

struct ClientSessionStateMachineParameterTests {
    typealias Machine = ClientSessionStateMachine

    @Test func setupRepliesAreNotTheClients() {
        var m = Machine(sessionMode: false)
        m.serverAttached(rewriterAvailable: false)
        m.setupSent()
        m.count(UInt8(ascii: "Q"))
        let none = UnsafeRawBufferPointer(start: nil, count: 0)
        #expect(m.rawBackend(UInt8(ascii: "T"), prefix: none) == .setupReply)
        #expect(m.rawBackend(UInt8(ascii: "S"), prefix: none) == .parameterStatus)
        let set = Array("SET\0".utf8)
        #expect(set.withUnsafeBytes { m.rawBackend(UInt8(ascii: "C"), prefix: $0) } == .setupReply)
        #expect([UInt8(ascii: "I")].withUnsafeBytes { m.rawBackend(UInt8(ascii: "Z"), prefix: $0) } == .setupDone)
        #expect(m.leftSessionState.isEmpty, "the pooler's own SET does not make the server dirty")
        #expect(m.expectedReady == 1)
        #expect([UInt8(ascii: "I")].withUnsafeBytes { m.rawBackend(UInt8(ascii: "Z"), prefix: $0) }
                == .transactionBoundary)
    }

    @Test func setupErrorIsReported() {
        var m = Machine(sessionMode: false)
        m.setupSent()
        #expect(m.rawBackend(UInt8(ascii: "E"), prefix: UnsafeRawBufferPointer(start: nil, count: 0)) == .setupFailed)
        #expect(m.errorCount == 0)
    }

    @Test func clientReadyDueLeavesOutThePoolersQuery() {
        var m = Machine(sessionMode: false)
        m.setupSent()
        m.count(UInt8(ascii: "Q"))
        #expect(m.expectedReady == 2)
        #expect(m.clientReadyDue == 1)
    }

    @Test func clientSetsTakeEffectWhenTheirTransactionEndsWell() {
        var m = Machine(sessionMode: false)
        m.clientSet()
        #expect(m.settlePendingSets() == nil, "not before its ReadyForQuery")
        _ = m.readyForQuery(status: UInt8(ascii: "I"))
        #expect(m.settlePendingSets() == true)
        #expect(m.pendingSets == 0)

        m.clientSet()
        _ = m.readyForQuery(status: UInt8(ascii: "T"))
        #expect(m.settlePendingSets() == nil, "inside a transaction block")
        m.errorResponse()
        _ = m.readyForQuery(status: UInt8(ascii: "I"))
        #expect(m.settlePendingSets() == false, "rolled back by the error")
        #expect(m.pendingSets == 0)
    }
}
