import Testing
@testable import Pooler

@Suite struct ScramServerTests {
    @Test func reproducesRFC7677Exchange() throws {
        var server = ScramServer(verifier: RFC7677.verifier, serverNonce: RFC7677.serverNoncePart)
        let serverFirst = try server.receiveClientFirst(bytes(RFC7677.clientFirst)).get()
        // Combined nonce = client nonce followed by the server's part, as in the RFC.
        #expect(text(serverFirst) == RFC7677.serverFirst)
        let result = try server.receiveClientFinal(bytes(RFC7677.clientFinal)).get()
        #expect(text(result.serverFinal) == RFC7677.serverFinal)
        #expect(result.clientKey == Base64.decode(RFC7677.clientKey)!)
        #expect(server.isFinished)
    }

    @Test func sharedKeysServeManyExchanges() throws {
        // A pool keeps one Keys (HMACs keyed once) for every login: using it must not change it.
        let keys = ScramServer.Keys(RFC7677.verifier)
        for _ in 0..<3 {
            var server = ScramServer(keys: keys, serverNonce: RFC7677.serverNoncePart)
            _ = try server.receiveClientFirst(bytes(RFC7677.clientFirst)).get()
            let result = try server.receiveClientFinal(bytes(RFC7677.clientFinal)).get()
            #expect(text(result.serverFinal) == RFC7677.serverFinal)
        }
        var wrong = ScramServer(keys: keys, serverNonce: RFC7677.serverNoncePart)
        _ = try wrong.receiveClientFirst(bytes(RFC7677.clientFirst)).get()
        let tampered = RFC7677.clientFinal.dropLast(4) + "AAA="
        #expect(throws: ScramError.self) { try wrong.receiveClientFinal(bytes(String(tampered))).get() }
    }

    @Test func randomServerNonceIs24PrintableCharacters() throws {
        var server = ScramServer(verifier: RFC7677.verifier, randomBytes: counterBytes(start: 250))
        #expect(server.serverNonce == Base64.encode((0..<18).map { UInt8(truncatingIfNeeded: 250 + $0) }))
        #expect(server.serverNonce.utf8.count == 24)
        let serverFirst = text(try server.receiveClientFirst(bytes("n,,n=,r=abc")).get())
        #expect(serverFirst == "r=abc\(server.serverNonce),s=\(RFC7677.salt),i=4096")
    }

    // MARK: Round trips with ScramClient

    private func roundTrip(client: inout ScramClient, server: inout ScramServer)
        -> Result<[UInt8], ScramError> {
        let serverFirst: [UInt8]
        switch server.receiveClientFirst(client.clientFirst()) {
        case .success(let value): serverFirst = value
        case .failure(let error): return .failure(error)
        }
        let clientFinal: [UInt8]
        switch client.receiveServerFirst(serverFirst) {
        case .success(let value): clientFinal = value
        case .failure(let error): return .failure(error)
        }
        switch server.receiveClientFinal(clientFinal) {
        case .success(let (serverFinal, clientKey)):
            if case .failure(let error) = client.receiveServerFinal(serverFinal) { return .failure(error) }
            return .success(clientKey)
        case .failure(let error):
            return .failure(error)
        }
    }

    @Test func passwordClientRoundTrip() throws {
        let verifier = ScramVerifier.generate(password: "s3cret", randomBytes: counterBytes(start: 1))
        var server = ScramServer(verifier: verifier, randomBytes: counterBytes(start: 100))
        var client = ScramClient(credential: .password("s3cret"), randomBytes: counterBytes(start: 200))
        let clientKey = try roundTrip(client: &client, server: &server).get()
        #expect(client.isFinished && server.isFinished)
        #expect(ScramPrimitives.sha256(clientKey) == verifier.storedKey)
    }

    @Test func passthroughClientRoundTrip() throws {
        let verifier = ScramVerifier.generate(password: "s3cret", randomBytes: counterBytes(start: 1))
        // A client logs in to the pooler with the password...
        var frontServer = ScramServer(verifier: verifier, randomBytes: counterBytes(start: 100))
        var realClient = ScramClient(credential: .password("s3cret"), randomBytes: counterBytes(start: 200))
        let clientKey = try roundTrip(client: &realClient, server: &frontServer).get()

        // ...and the pooler reuses its ClientKey towards "PostgreSQL" (same verifier), with and
        // without the ServerKey.
        for credential in [ScramClient.Credential.passthrough(clientKey: clientKey, verifier: verifier),
                           .passthrough(clientKey: clientKey, serverKey: nil)] {
            var backend = ScramServer(verifier: verifier, randomBytes: counterBytes(start: 50))
            var pooler = ScramClient(credential: credential, randomBytes: counterBytes(start: 60))
            #expect(try roundTrip(client: &pooler, server: &backend).get() == clientKey)
            #expect(pooler.isFinished && backend.isFinished)
        }
    }

    @Test func plaintextPasswordVerifierWorksWithUnicode() throws {
        let verifier = ScramVerifier.generate(password: "pässwörd\u{00A0}✓", randomBytes: counterBytes(start: 9))
        var server = ScramServer(verifier: verifier, randomBytes: counterBytes(start: 100))
        var client = ScramClient(credential: .password("pässwörd\u{00A0}✓"), randomBytes: counterBytes(start: 200))
        _ = try roundTrip(client: &client, server: &server).get()
    }

    @Test func wrongPasswordFailsWithBadProof() {
        let verifier = ScramVerifier.generate(password: "s3cret", randomBytes: counterBytes(start: 1))
        var server = ScramServer(verifier: verifier, randomBytes: counterBytes(start: 100))
        var client = ScramClient(credential: .password("wrong"), randomBytes: counterBytes(start: 200))
        let error = roundTrip(client: &client, server: &server).failure
        #expect(error == .invalidProof)
        #expect(error?.kind == .invalidCredentials)
        #expect(error?.clientMessage == "Authentication failed. Invalid credentials or authentication protocol error.")
        #expect(!server.isFinished)
    }

    @Test func passthroughWithWrongClientKeyFailsWithBadProof() {
        let verifier = ScramVerifier.generate(password: "s3cret", randomBytes: counterBytes(start: 1))
        var server = ScramServer(verifier: verifier, randomBytes: counterBytes(start: 100))
        var client = ScramClient(credential: .passthrough(clientKey: Array(repeating: 3, count: 32), verifier: verifier),
                                 randomBytes: counterBytes(start: 200))
        #expect(roundTrip(client: &client, server: &server).failure == .invalidProof)
    }

    // MARK: client-first-message

    @Test(arguments: ["n,,n=user,r=abc", "y,,n=user,r=abc", "n,a=admin,n=user,r=abc", "n,,n=,r=abc,x=ext"])
    func acceptsClientFirstVariants(message: String) {
        var server = ScramServer(verifier: RFC7677.verifier, serverNonce: "SRV")
        #expect(text(server.receiveClientFirst(bytes(message)).success ?? []).hasPrefix("r=abcSRV,s="))
    }

    @Test func refusesChannelBinding() {
        var server = ScramServer(verifier: RFC7677.verifier, serverNonce: "SRV")
        let error = server.receiveClientFirst(bytes("p=tls-server-end-point,,n=,r=abc")).failure
        #expect(error == .channelBindingNotSupported)
        #expect(error?.kind == .protocolViolation)
        #expect(error?.clientMessage
                == "Authentication protocol error. Your client may not support SCRAM authentication properly.")
    }

    @Test func refusesMandatoryExtension() {
        var server = ScramServer(verifier: RFC7677.verifier, serverNonce: "SRV")
        #expect(server.receiveClientFirst(bytes("n,,m=foo,n=,r=abc")).failure == .unsupportedMandatoryExtension)
    }

    @Test(arguments: ["", "n", "x,,n=,r=abc", "n,,", "n,,r=abc", "n,,n=", "n,,n=,r=", "n,,n=,r=a\u{7F}b",
                      "n,,n=,x=abc", "n,b=admin,n=,r=abc", "nn,,n=,r=abc", "n,,n=,r=abc,", "n,,n,r=abc"])
    func rejectsMalformedClientFirst(message: String) {
        var server = ScramServer(verifier: RFC7677.verifier, serverNonce: "SRV")
        let error = server.receiveClientFirst(bytes(message)).failure
        if case .malformedClientFirst = error {} else { Issue.record("\(message): \(String(describing: error))") }
    }

    // MARK: client-final-message

    private func serverAfterFirst(_ clientFirst: String = RFC7677.clientFirst) throws -> ScramServer {
        var server = ScramServer(verifier: RFC7677.verifier, serverNonce: RFC7677.serverNoncePart)
        _ = try server.receiveClientFirst(bytes(clientFirst)).get()
        return server
    }

    @Test func tamperedNonceIsAProtocolError() throws {
        var server = try serverAfterFirst()
        let tampered = RFC7677.clientFinal.replacingOccurrences(of: "hNlF$k0", with: "hNlF$k1")
        let error = server.receiveClientFinal(bytes(tampered)).failure
        #expect(error == .nonceMismatch)
        #expect(error?.kind == .protocolViolation)
        #expect(error?.clientMessage == "Authentication protocol error. Your client sent an invalid SCRAM final message.")
    }

    @Test func tamperedChannelBindingIsAProtocolError() throws {
        var server = try serverAfterFirst()
        // "eSws" = base64("y,,"), but the client announced "n,,".
        let tampered = RFC7677.clientFinal.replacingOccurrences(of: "c=biws", with: "c=eSws")
        #expect(server.receiveClientFinal(bytes(tampered)).failure == .channelBindingMismatch)
    }

    @Test func channelBindingMustCoverTheAuthzid() throws {
        var server = try serverAfterFirst("n,a=admin,n=user,r=rOprNGfwEbeRWgbNEkqO")
        #expect(server.receiveClientFinal(bytes(RFC7677.clientFinal)).failure == .channelBindingMismatch)
    }

    @Test(arguments: [
        "",
        "c=biws",
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,c=biws,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=,x=1",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=***",
        "c=***,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    ])
    func rejectsMalformedClientFinal(message: String) throws {
        var server = try serverAfterFirst()
        let error = server.receiveClientFinal(bytes(message)).failure
        if case .malformedClientFinal = error {} else { Issue.record("\(message): \(String(describing: error))") }
    }

    @Test func extensionsBeforeTheProofAreCoveredByTheSignature() throws {
        // An extension inserted before p= changes AuthMessage, so the RFC proof no longer matches.
        var server = try serverAfterFirst()
        let withExtension = RFC7677.clientFinal.replacingOccurrences(of: ",p=", with: ",x=1,p=")
        #expect(server.receiveClientFinal(bytes(withExtension)).failure == .invalidProof)
    }

    @Test func messagesOutOfOrderAreRejected() throws {
        var server = ScramServer(verifier: RFC7677.verifier, serverNonce: "SRV")
        if case .unexpectedMessage = server.receiveClientFinal(bytes(RFC7677.clientFinal)).failure {} else {
            Issue.record("client-final before client-first accepted")
        }
        var done = try serverAfterFirst()
        _ = try done.receiveClientFinal(bytes(RFC7677.clientFinal)).get()
        if case .unexpectedMessage = done.receiveClientFinal(bytes(RFC7677.clientFinal)).failure {} else {
            Issue.record("second client-final accepted")
        }
        var failed = try serverAfterFirst()
        _ = failed.receiveClientFinal(bytes("garbage"))
        if case .unexpectedMessage = failed.receiveClientFinal(bytes(RFC7677.clientFinal)).failure {} else {
            Issue.record("retry after failure accepted")
        }
    }
}
