import Testing
@testable import Pooler

@Suite struct ScramClientTests {
    @Test func reproducesRFC7677Exchange() throws {
        var client = ScramClient(credential: .password("pencil"), username: "user", clientNonce: RFC7677.clientNonce)
        #expect(text(client.clientFirst()) == RFC7677.clientFirst)
        let final = try client.receiveServerFirst(bytes(RFC7677.serverFirst)).get()
        #expect(text(final) == RFC7677.clientFinal)
        #expect(client.receiveServerFinal(bytes(RFC7677.serverFinal)).success != nil)
        #expect(client.isFinished)
    }

    @Test func passthroughReproducesRFC7677ProofWithoutPassword() throws {
        let verifier = RFC7677.verifier
        var client = ScramClient(credential: .passthrough(clientKey: Base64.decode(RFC7677.clientKey)!, verifier: verifier),
                                 username: "user", clientNonce: RFC7677.clientNonce)
        #expect(text(try client.receiveServerFirst(bytes(RFC7677.serverFirst)).get()) == RFC7677.clientFinal)
        #expect(client.receiveServerFinal(bytes(RFC7677.serverFinal)).success != nil)
    }

    @Test func passthroughWithoutServerKeySkipsSignatureCheck() throws {
        var client = ScramClient(credential: .passthrough(clientKey: Base64.decode(RFC7677.clientKey)!, serverKey: nil),
                                 username: "user", clientNonce: RFC7677.clientNonce)
        _ = try client.receiveServerFirst(bytes(RFC7677.serverFirst)).get()
        #expect(client.receiveServerFinal(bytes("v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")).success != nil)
    }

    @Test func defaultClientFirstHasEmptyUserAndRandomNonce() {
        let client = ScramClient(credential: .password("x"), randomBytes: counterBytes(start: 0))
        #expect(client.clientNonce.utf8.count == 24)
        #expect(!client.clientNonce.contains(","))
        #expect(text(client.clientFirst()) == "n,,n=,r=" + client.clientNonce)
    }

    @Test func escapesUsername() {
        let client = ScramClient(credential: .password("x"), username: "a=b,c", clientNonce: "abc")
        #expect(text(client.clientFirst()) == "n,,n=a=3Db=2Cc,r=abc")
    }

    @Test func wrongServerSignatureIsRejected() throws {
        var client = ScramClient(credential: .password("pencil"), username: "user", clientNonce: RFC7677.clientNonce)
        _ = try client.receiveServerFirst(bytes(RFC7677.serverFirst)).get()
        #expect(client.receiveServerFinal(bytes("v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")).failure
                == .invalidServerSignature)
        #expect(!client.isFinished)
    }

    @Test func serverErrorIsReported() throws {
        var client = ScramClient(credential: .password("pencil"), clientNonce: RFC7677.clientNonce)
        _ = try client.receiveServerFirst(bytes(RFC7677.serverFirst)).get()
        let error = client.receiveServerFinal(bytes("e=invalid-proof")).failure
        #expect(error == .serverError("invalid-proof"))
        #expect(error?.kind == .invalidCredentials)
    }

    @Test(arguments: [
        ("r=someoneElse%hv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", ScramError.serverNonceMismatch),
        ("r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", .serverNonceMismatch),
    ])
    func serverNonceMustExtendOurs(serverFirst: String, expected: ScramError) {
        var client = ScramClient(credential: .password("pencil"), clientNonce: RFC7677.clientNonce)
        #expect(client.receiveServerFirst(bytes(serverFirst)).failure == expected)
    }

    @Test(arguments: [
        "",
        "garbage",
        "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==",
        "r=rOprNGfwEbeRWgbNEkqOxyz,s=***,i=4096",
        "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0",
        "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-5",
        "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=abc",
        "m=ext,r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        "s=W22ZaJ0SNY7soEsUEjb6gQ==,r=rOprNGfwEbeRWgbNEkqOxyz,i=4096",
    ])
    func malformedServerFirstIsRejected(serverFirst: String) {
        var client = ScramClient(credential: .password("pencil"), clientNonce: RFC7677.clientNonce)
        let error = client.receiveServerFirst(bytes(serverFirst)).failure
        if case .malformedServerFirst = error {} else { Issue.record("unexpected \(String(describing: error))") }
        #expect(error?.kind == .protocolViolation)
    }

    @Test func passthroughRefusesADifferentVerifier() {
        let configured = ScramVerifier.derive(password: "pencil", salt: Array(repeating: 1, count: 16))
        var client = ScramClient(credential: .passthrough(clientKey: Array(repeating: 0, count: 32), verifier: configured),
                                 clientNonce: RFC7677.clientNonce)
        let error = client.receiveServerFirst(bytes(RFC7677.serverFirst)).failure
        #expect(error == .passthroughVerifierMismatch(expectedIterations: 4096, expectedSalt: Base64.encode(configured.salt),
                                                      serverIterations: 4096, serverSalt: RFC7677.salt))
        #expect(error?.kind == .configuration)

        let sameSaltOtherIterations = ScramVerifier.derive(password: "pencil", salt: Base64.decode(RFC7677.salt)!,
                                                           iterations: 10)
        var other = ScramClient(credential: .passthrough(clientKey: Array(repeating: 0, count: 32),
                                                         verifier: sameSaltOtherIterations),
                                clientNonce: RFC7677.clientNonce)
        if case .passthroughVerifierMismatch = other.receiveServerFirst(bytes(RFC7677.serverFirst)).failure {} else {
            Issue.record("iteration mismatch not reported")
        }
    }

    @Test func messagesOutOfOrderAreRejected() throws {
        var client = ScramClient(credential: .password("pencil"), clientNonce: RFC7677.clientNonce)
        if case .unexpectedMessage = client.receiveServerFinal(bytes(RFC7677.serverFinal)).failure {} else {
            Issue.record("server-final before server-first accepted")
        }
        var twice = ScramClient(credential: .password("pencil"), username: "user", clientNonce: RFC7677.clientNonce)
        _ = try twice.receiveServerFirst(bytes(RFC7677.serverFirst)).get()
        if case .unexpectedMessage = twice.receiveServerFirst(bytes(RFC7677.serverFirst)).failure {} else {
            Issue.record("second server-first accepted")
        }
    }
}
