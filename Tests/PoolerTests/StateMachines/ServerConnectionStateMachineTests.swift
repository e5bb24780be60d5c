import NIOCore
import Testing
@testable import Pooler

/// One server connection's life, driven by backend messages built here (no socket, a fixed clock).
struct ServerConnectionStateMachineTests {
    typealias Machine = ServerConnectionStateMachine
    static let now = NIODeadline.uptimeNanoseconds(50_000_000_000)

    static func login() -> BackendLoginStateMachine {
        BackendLoginStateMachine(user: "u", credential: .plaintext("secret"), clientKey: nil)
    }

    /// A machine that has logged in and is idle.
    static func idle(epoch: Int = 1, expiresAt: NIODeadline? = nil) -> Machine {
        var m = Machine(epoch: epoch, expiresAt: expiresAt)
        _ = m.connected(login: login(), tlsRequired: nil)
        let actions = feed(&m) { buf in
            BackendMessage.authenticationOk(into: &buf)
            BackendMessage.backendKeyData(processID: 1, secretKey: 2, into: &buf)
            BackendMessage.readyForQuery(into: &buf)
        }
        #expect(actions.last.map(describe) == "loggedIn")
        return m
    }

    /// Feeds every message `build` writes and returns the actions, one per message.
    static func feed(_ m: inout Machine, _ build: (inout ByteBuffer) -> Void) -> [Machine.MessageAction] {
        var buf = ByteBufferAllocator().buffer(capacity: 64)
        build(&buf)
        var actions: [Machine.MessageAction] = []
        while let (type, body) = try? MessageFramer.next(&buf) { actions.append(m.backendMessage(type: type, body: body)) }
        return actions
    }

    static func names(_ m: inout Machine, _ build: (inout ByteBuffer) -> Void) -> [String] {
        feed(&m, build).map(describe)
    }

    /// A short name for an action, to compare sequences as text.
    static func describe(_ a: Machine.MessageAction) -> String {
        switch a {
        case .none: return "none"
        case .send: return "send"
        case .loggedIn: return "loggedIn"
        case .loginFailed: return "loginFailed"
        case .parameterStatus: return "parameterStatus"
        case .discard: return "discard"
        case .cleanupFinished(let purpose, let usable): return "\(purpose)Finished(\(usable))"
        case .applyFinished(let error): return error.map { "applyFailed(\($0.code.code))" } ?? "applied"
        case .stop: return "stop"
        }
    }

    static func error(_ buf: inout ByteBuffer, _ code: SQLState = .syntaxError) {
        BackendMessage.errorResponse(severity: "ERROR", code: code, message: "boom", into: &buf)
    }

    // MARK: - Login

    @Test func loginWithoutTLSSendsTheStartupAndReportsTheKey() throws {
        var m = Machine(epoch: 3, expiresAt: nil)
        #expect(m.stateName == "login")
        #expect(m.connected(login: Self.login(), tlsRequired: nil) == .sendStartup)
        let actions = Self.feed(&m) { buf in
            BackendMessage.authenticationMD5(salt: [1, 2, 3, 4], into: &buf)
            BackendMessage.authenticationOk(into: &buf)
            BackendMessage.parameterStatus("TimeZone", "UTC", into: &buf)
            BackendMessage.backendKeyData(processID: 42, secretKey: 7, into: &buf)
            BackendMessage.readyForQuery(into: &buf)
        }
        #expect(actions.map(Self.describe) == ["send", "none", "none", "none", "loggedIn"])
        guard case .loggedIn(let pid, let secret, let parameters) = try #require(actions.last) else { return }
        #expect(pid == 42 && secret == 7)
        #expect(parameters.map { "\($0.0)=\($0.1)" } == ["TimeZone=UTC"])
        #expect(m.stateName == "idle")
        #expect(m.reuse(poolEpoch: 3, now: Self.now) == .reusable)
    }

    @Test func aLoginErrorClosesTheMachine() {
        var m = Machine(epoch: 1, expiresAt: nil)
        _ = m.connected(login: Self.login(), tlsRequired: nil)
        let actions = Self.feed(&m) { Self.error(&$0, .invalidPassword) }
        #expect(actions.map(Self.describe) == ["loginFailed"])
        #expect(m.isClosed)
        #expect(m.reuse(poolEpoch: 1, now: Self.now) == .closed)
    }

    @Test func tlsAnswers() {
        // (required, answer byte, trailing bytes) -> expected
        let table: [(Bool, Character, Int, Machine.TLSAnswer)] = [
            (true, "S", 0, .startTLS),
            (false, "S", 0, .startTLS),
            (true, "S", 3, .fail("received unencrypted data after SSL response")),
            (false, "N", 0, .sendStartup),
            (false, "N", 1, .fail("received unexpected data after SSL response")),
            (true, "N", 0, .fail("server does not support SSL, but SSL was required (server_tls_mode)")),
            (true, "E", 0, .fail("server rejected the SSLRequest with an error")),
            (true, "x", 0, .fail("received invalid response to SSL negotiation: 120")),
        ]
        for (required, answer, trailing, expected) in table {
            var m = Machine(epoch: 1, expiresAt: nil)
            #expect(m.connected(login: Self.login(), tlsRequired: required) == .sendSSLRequest)
            let got = m.tlsAnswer(UInt8(ascii: answer.unicodeScalars.first ?? "?"), trailingBytes: trailing)
            #expect(got == expected, "required \(required) answer \(answer) trailing \(trailing)")
            switch expected {
            case .startTLS, .sendStartup:
                // The login proceeds: the server's authentication request is read.
                let actions = Self.feed(&m) { BackendMessage.authenticationOk(into: &$0) }
                #expect(actions.map(Self.describe) == ["none"])
            case .fail:
                #expect(m.isClosed)
            }
        }
    }

    @Test func aSecondTLSAnswerIsAFailure() {
        var m = Machine(epoch: 1, expiresAt: nil)
        _ = m.connected(login: Self.login(), tlsRequired: false)
        #expect(m.tlsAnswer(UInt8(ascii: "N"), trailingBytes: 0) == .sendStartup)
        if case .fail = m.tlsAnswer(UInt8(ascii: "N"), trailingBytes: 0) {} else { Issue.record("accepted twice") }
        #expect(m.isClosed)
    }

    // MARK: - Idle, checkout, checkin

    @Test func anIdleServerThatSpeaksAnErrorIsDiscarded() {
        var m = Self.idle()
        do { let got = Self.names(&m) { BackendMessage.parameterStatus("x", "y", into: &$0) }; #expect(got == ["none"]) }
        do { let got = Self.names(&m) { Self.error(&$0, .adminShutdown) }; #expect(got == ["discard"]) }
        #expect(m.reuse(poolEpoch: 1, now: Self.now) == .broken)
    }

    @Test func whileActiveTheMachineReadsNothing() {
        var m = Self.idle()
        m.attach()
        #expect(m.isActive && m.stateName == "active")
        do { let got = Self.names(&m) { BackendMessage.readyForQuery(into: &$0) }; #expect(got == ["stop"]) }
        do { let r = m.detachClean(); #expect(r) }
        #expect(!m.isActive && m.stateName == "idle")
        do { let r = m.detachClean(); #expect(!r) }  // not active any more
    }

    @Test func cleanupTable() {
        // (replies the server gives to 2 cleanup queries) -> the actions, the reuse verdict after
        let table: [(String, (inout ByteBuffer) -> Void, [String], ServerReuse)] = [
            ("both fine", { buf in
                BackendMessage.commandComplete("ROLLBACK", into: &buf)
                BackendMessage.readyForQuery(into: &buf)
                BackendMessage.parameterStatus("TimeZone", "UTC", into: &buf)
                BackendMessage.commandComplete("DISCARD ALL", into: &buf)
                BackendMessage.readyForQuery(into: &buf)
            }, ["none", "none", "parameterStatus", "none", "cleanupFinished(true)"], .reusable),
            ("an error", { buf in
                Self.error(&buf)
                BackendMessage.readyForQuery(into: &buf)
                BackendMessage.commandComplete("DISCARD ALL", into: &buf)
                BackendMessage.readyForQuery(into: &buf)
            }, ["none", "none", "none", "cleanupFinished(false)"], .broken),
            ("left in a transaction", { buf in
                BackendMessage.readyForQuery(into: &buf)
                BackendMessage.readyForQuery(UInt8(ascii: "T"), into: &buf)
            }, ["none", "cleanupFinished(false)"], .broken),
        ]
        for (name, replies, expected, verdict) in table {
            var m = Self.idle()
            m.attach()
            #expect(m.detach(cleanupQueries: 2) == .runCleanup)
            #expect(m.stateName == "used")
            let got = Self.feed(&m, replies).map(Self.describe)
            #expect(got == expected, "\(name)")
            #expect(m.reuse(poolEpoch: 1, now: Self.now) == verdict, "\(name)")
        }
    }

    @Test func detachWithoutQueriesAndAfterAClose() {
        var m = Self.idle()
        m.attach()
        #expect(m.detach(cleanupQueries: 0) == .clean)
        m.attach()
        #expect(m.channelInactive() == .ownerLost)
        #expect(m.detach(cleanupQueries: 1) == .unusable)
    }

    @Test func applyReportsTheFirstErrorAndParameters() {
        var m = Self.idle()
        do { let r = m.beginApply(); #expect(r) }
        do { let r = m.beginApply(); #expect(!r) }  // busy
        let actions = Self.feed(&m) { buf in
            BackendMessage.parameterStatus("DateStyle", "ISO", into: &buf)
            Self.error(&buf, .invalidCatalogName)
            Self.error(&buf, .syntaxError)
            BackendMessage.readyForQuery(into: &buf)
        }
        #expect(actions.map(Self.describe) == ["parameterStatus", "none", "none",
                                               "applyFailed(\(SQLState.invalidCatalogName.code))"])
        #expect(m.reuse(poolEpoch: 1, now: Self.now) == .reusable)  // an error in a SET does not dirty it
        do { let r = m.beginApply(); #expect(r) }
        do { let got = Self.names(&m) { BackendMessage.readyForQuery(into: &$0) }; #expect(got == ["applied"]) }
    }

    @Test func livenessCheckAnswersOrTimesOut() {
        var m = Self.idle()
        do { let r = m.beginLivenessCheck(); #expect(r) }
        do { let got = Self.names(&m) { BackendMessage.readyForQuery(into: &$0) }; #expect(got == ["livenessFinished(true)"]) }
        do { let r = m.livenessTimedOut(); #expect(!r) }  // answered already

        do { let r = m.beginLivenessCheck(); #expect(r) }
        do { let r = m.livenessTimedOut(); #expect(r) }
        #expect(m.reuse(poolEpoch: 1, now: Self.now) == .broken)
        do { let r = m.beginLivenessCheck(); #expect(!r) }  // broken

        var cleaning = Self.idle()
        cleaning.attach()
        _ = cleaning.detach(cleanupQueries: 1)
        do { let r = cleaning.livenessTimedOut(); #expect(!r) }  // a cleanup is not a liveness check
    }

    @Test func aBrokenServerRunsNothing() {
        var m = Self.idle()
        m.broken = true
        do { let r = m.beginApply(); #expect(!r) }
        do { let r = m.beginLivenessCheck(); #expect(!r) }
    }

    // MARK: - Closing and failures

    @Test func closeInEachState() {
        var idle = Self.idle()
        #expect(idle.close() == .terminateAndClose)
        #expect(idle.close() == .alreadyClosed)
        var active = Self.idle()
        active.attach()
        #expect(active.close() == .close)
        var connecting = Machine(epoch: 1, expiresAt: nil)
        #expect(connecting.close() == .close)
    }

    @Test func channelInactiveInEachState() {
        var login = Machine(epoch: 1, expiresAt: nil)
        _ = login.connected(login: Self.login(), tlsRequired: nil)
        #expect(login.channelInactive() == .loginFailed)
        var tls = Machine(epoch: 1, expiresAt: nil)
        _ = tls.connected(login: Self.login(), tlsRequired: true)
        #expect(tls.channelInactive() == .loginFailed)
        var cleanup = Self.idle()
        cleanup.attach()
        _ = cleanup.detach(cleanupQueries: 1)
        #expect(cleanup.channelInactive() == .cleanupFailed(.cleanup))
        var check = Self.idle()
        _ = check.beginLivenessCheck()
        #expect(check.channelInactive() == .cleanupFailed(.liveness))
        var apply = Self.idle()
        _ = apply.beginApply()
        #expect(apply.channelInactive() == .applyFailed)
        var idle = Self.idle()
        #expect(idle.channelInactive() == .forget)
        #expect(idle.channelInactive() == .forget)
        #expect(idle.reuse(poolEpoch: 1, now: Self.now) == .closed)
    }

    @Test func errorsDuringLoginFailItOtherwiseClose() {
        var login = Machine(epoch: 1, expiresAt: nil)
        _ = login.connected(login: Self.login(), tlsRequired: true)
        #expect(login.errorCaught() == .failLogin)
        #expect(login.isClosed)
        var active = Self.idle()
        active.attach()
        #expect(active.errorCaught() == .close)
        #expect(active.reuse(poolEpoch: 1, now: Self.now) == .broken)
    }

    @Test func framingFailures() {
        var login = Machine(epoch: 1, expiresAt: nil)
        _ = login.connected(login: Self.login(), tlsRequired: nil)
        #expect(login.framingFailed() == .failLogin)
        var idle = Self.idle()
        #expect(idle.framingFailed() == .discard)
        #expect(idle.reuse(poolEpoch: 1, now: Self.now) == .broken)
    }

    // MARK: - The reuse verdict from the connection's facts

    @Test func reuseVerdicts() {
        var cancelled = Self.idle()
        cancelled.cancelForwarded = true
        #expect(cancelled.reuse(poolEpoch: 1, now: Self.now) == .cancelled)
        #expect(Self.idle(epoch: 1).reuse(poolEpoch: 2, now: Self.now) == .staleEpoch)
        #expect(Self.idle(expiresAt: Self.now - .seconds(1)).reuse(poolEpoch: 1, now: Self.now) == .expired)
        #expect(Self.idle(expiresAt: Self.now + .seconds(1)).reuse(poolEpoch: 1, now: Self.now) == .reusable)
    }
}
