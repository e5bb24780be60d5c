import NIOCore
import Testing
@testable import Pooler

/// The pooler's own login to PostgreSQL, driven by server messages built here (no socket).
struct BackendLoginStateMachineTests {
    typealias Machine = BackendLoginStateMachine

    /// Feeds every message in `messages` (encoded backend messages) and returns the last action.
    @discardableResult
    static func feed(_ m: inout Machine, _ build: (inout ByteBuffer) -> Void) -> Machine.Action {
        var buf = ByteBufferAllocator().buffer(capacity: 64)
        build(&buf)
        var last = Machine.Action.wait
        while let (type, body) = try? MessageFramer.next(&buf) { last = m.receive(type: type, body: body) }
        return last
    }

    static func sent(_ action: Machine.Action) -> ByteBuffer? {
        if case .send(let out) = action { return out }
        return nil
    }

    static func isReady(_ a: Machine.Action) -> Bool { if case .ready = a { return true } else { return false } }
    static func failure(_ a: Machine.Action) -> ServerError? { if case .fail(let e) = a { return e } else { return nil } }

    static func afterLogin(_ buf: inout ByteBuffer) {
        BackendMessage.authenticationOk(into: &buf)
        BackendMessage.parameterStatus("TimeZone", "Etc/UTC", into: &buf)
        BackendMessage.parameterStatus("application_name", "pg_doorman", into: &buf)
        BackendMessage.backendKeyData(processID: 42, secretKey: 7, into: &buf)
        BackendMessage.readyForQuery(into: &buf)
    }

    @Test func md5LoginThenParametersAndKey() throws {
        var m = Machine(user: "u", credential: .plaintext("secret"), clientKey: nil)
        let md5 = Self.feed(&m) { BackendMessage.authenticationMD5(salt: [1, 2, 3, 4], into: &$0) }
        let reply = try #require(Self.sent(md5))
        var r = reply
        #expect(r.readInteger(as: UInt8.self) == UInt8(ascii: "p"))
        _ = r.readInteger(as: Int32.self)
        let expected = MD5Password.challengeResponse(md5Hash: MD5Password.hash(password: "secret", user: "u"),
                                                     salt: [1, 2, 3, 4])
        #expect(r.readCString() == expected)
        #expect(Self.isReady(Self.feed(&m, Self.afterLogin)))
        #expect(m.processID == 42 && m.secretKey == 7)
        #expect(m.parameters.map { $0.0 } == ["TimeZone", "application_name"])
        if case .ready = m.state {} else { Issue.record("state \(m.state)") }
    }

    @Test func scramLoginAgainstOurOwnServerSide() throws {
        var m = Machine(user: "user", credential: .plaintext("pencil"), clientKey: nil)
        var server = ScramServer(verifier: RFC7677.verifier)
        let sasl = Self.feed(&m) { BackendMessage.authenticationSASL(mechanisms: ["SCRAM-SHA-256"], into: &$0) }
        var first = try #require(Self.sent(sasl))
        if case .scram = m.state {} else { Issue.record("state \(m.state)") }
        first.moveReaderIndex(forwardBy: 5)
        #expect(first.readCString() == "SCRAM-SHA-256")
        let n = first.readInteger(as: Int32.self) ?? 0
        let clientFirstBytes = first.readBytes(length: Int(n))
        let clientFirst = try #require(clientFirstBytes)
        let serverFirst = try server.receiveClientFirst(clientFirst).get()
        let cont = Self.feed(&m) { BackendMessage.authenticationSASL(code: 11, data: serverFirst, into: &$0) }
        var final = try #require(Self.sent(cont))
        final.moveReaderIndex(forwardBy: 5)
        let clientFinalBytes = final.readBytes(length: final.readableBytes)
        let clientFinal = try #require(clientFinalBytes)
        let (serverFinal, _) = try server.receiveClientFinal(clientFinal).get()
        let fin = Self.feed(&m) { BackendMessage.authenticationSASL(code: 12, data: serverFinal, into: &$0) }
        #expect(Self.failure(fin) == nil)
        #expect(Self.isReady(Self.feed(&m, Self.afterLogin)))
    }

    @Test func readyForQueryBeforeAuthenticationOkIsRefused() {
        var m = Machine(user: "u", credential: .plaintext("x"), clientKey: nil)
        let z = Self.feed(&m) { BackendMessage.readyForQuery(into: &$0) }
        let e = Self.failure(z)
        #expect(e?.code == .protocolViolation)
        if case .failed = m.state {} else { Issue.record("state \(m.state)") }
    }

    @Test func saslContinueWithoutSASLIsRefused() {
        var m = Machine(user: "u", credential: .plaintext("x"), clientKey: nil)
        let cont = Self.feed(&m) { BackendMessage.authenticationSASL(code: 11, data: [1], into: &$0) }
        #expect(Self.failure(cont) != nil)
    }

    @Test func serverErrorFailsTheLoginWithItsCode() {
        var m = Machine(user: "u", credential: .plaintext("x"), clientKey: nil)
        let err = Self.feed(&m) {
            BackendMessage.errorResponse(severity: "FATAL", code: .invalidPassword, message: "no", into: &$0)
        }
        let e = Self.failure(err)
        #expect(e?.code == .invalidPassword)
    }

    @Test func scramWantedButOnlyAnMD5HashConfigured() {
        var m = Machine(user: "u", credential: .md5Hash("md5" + String(repeating: "0", count: 32)), clientKey: nil)
        let sasl = Self.feed(&m) { BackendMessage.authenticationSASL(mechanisms: ["SCRAM-SHA-256"], into: &$0) }
        let e = Self.failure(sasl)
        #expect(e?.message.contains("MD5 hash") == true)
    }
}
