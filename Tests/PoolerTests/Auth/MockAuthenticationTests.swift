import Testing
@testable import Pooler

@Suite struct MockAuthenticationTests {
    let mock = MockAuthentication(secret: Array(repeating: 7, count: 32))

    @Test func challengeIsStablePerUserAndDiffersBetweenUsers() {
        let a1 = mock.scramVerifier(user: "nobody"), a2 = mock.scramVerifier(user: "nobody")
        let b = mock.scramVerifier(user: "somebody")
        #expect(a1 == a2)
        #expect(a1.salt != b.salt)
        #expect(a1.salt.count == ScramVerifier.defaultSaltLength)
        #expect(a1.iterations == ScramVerifier.defaultIterations)
        #expect(a1.storedKey.count == 32 && a1.serverKey.count == 32)
        // Another process (another secret) gives other salts.
        #expect(MockAuthentication(secret: Array(repeating: 8, count: 32)).scramVerifier(user: "nobody").salt != a1.salt)
        #expect(mock.md5Hash(user: "nobody") == mock.md5Hash(user: "nobody"))
        #expect(MD5Password.isHash(mock.md5Hash(user: "nobody")))
    }

    @Test func theSameServerFirstShapeAndTheSameFailure() throws {
        // A real verifier for "alice" and the mock one for "mallory": the client sees the same
        // kind of server-first message, and a proof fails with the same result.
        let real = ScramVerifier.derive(password: "secret", salt: Array(repeating: 1, count: 16))
        var realServer = ScramServer(verifier: real, serverNonce: "NONCE")
        var mockServer = ScramServer(keys: mock.scramKeys(user: "mallory"), serverNonce: "NONCE")
        let clientFirst = Array("n,,n=,r=abc".utf8)
        let rf = try realServer.receiveClientFirst(clientFirst).get()
        let mf = try mockServer.receiveClientFirst(clientFirst).get()
        func attributes(_ m: [UInt8]) -> [Character] {
            String(decoding: m, as: UTF8.self).split(separator: ",").compactMap(\.first)
        }
        #expect(attributes(rf) == attributes(mf))
        #expect(rf.count == mf.count)
        // A proof made with a password fails against the mock verifier for every password.
        var client = ScramClient(credential: .password("anything"))
        var mockServer2 = ScramServer(keys: mock.scramKeys(user: "mallory"))
        let first2 = try mockServer2.receiveClientFirst(client.clientFirst()).get()
        let final2 = try client.receiveServerFirst(first2).get()
        if case .success = mockServer2.receiveClientFinal(final2) { Issue.record("mock verifier accepted a password") }
        #expect(MockAuthentication.failureMessage(user: "mallory") == "password authentication failed for user \"mallory\"")
    }
}
