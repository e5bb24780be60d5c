import Testing
@testable import Pooler

@Suite struct MD5PasswordTests {
    // Expected values computed with Python's hashlib.
    @Test func storedHashMatchesPostgreSQLFormat() {
        #expect(MD5Password.hash(password: "test", user: "example_user_1") == "md58a67a0c805a5ee0384ea28e0dea557b6")
        #expect(MD5Password.hash(password: "secret", user: "postgres") == "md553f48b7c4b76a86ce72276c5755f217d")
    }

    @Test func challengeResponseMatchesHandComputedValue() {
        let response = MD5Password.challengeResponse(md5Hash: "md58a67a0c805a5ee0384ea28e0dea557b6",
                                                     salt: [0x01, 0x02, 0x03, 0x04])
        #expect(response == "md535e465bd88b8c4845f0d10921277d1b9")
        let other = MD5Password.challengeResponse(md5Hash: "md553f48b7c4b76a86ce72276c5755f217d",
                                                  salt: [0xde, 0xad, 0xbe, 0xef])
        #expect(other == "md5c546d0bbed2af888b328536b45c76348")
    }

    @Test func verifyAcceptsCorrectResponseWithOrWithoutNul() {
        let stored = "md58a67a0c805a5ee0384ea28e0dea557b6"
        let salt: [UInt8] = [0x01, 0x02, 0x03, 0x04]
        let response = Array("md535e465bd88b8c4845f0d10921277d1b9".utf8)
        #expect(MD5Password.verify(clientResponse: response, storedHash: stored, salt: salt))
        #expect(MD5Password.verify(clientResponse: response + [0], storedHash: stored, salt: salt))
    }

    @Test func verifyRejectsWrongResponses() {
        let stored = "md58a67a0c805a5ee0384ea28e0dea557b6"
        let salt: [UInt8] = [0x01, 0x02, 0x03, 0x04]
        #expect(!MD5Password.verify(clientResponse: Array("md535e465bd88b8c4845f0d10921277d1b8".utf8),
                                    storedHash: stored, salt: salt))
        #expect(!MD5Password.verify(clientResponse: Array("md535e465bd88b8c4845f0d10921277d1b9".utf8),
                                    storedHash: stored, salt: [0x01, 0x02, 0x03, 0x05]))
        #expect(!MD5Password.verify(clientResponse: [], storedHash: stored, salt: salt))
        #expect(!MD5Password.verify(clientResponse: Array("test".utf8), storedHash: stored, salt: salt))
    }

    @Test func plaintextConfiguredPasswordIsHashedWithUser() {
        let salt: [UInt8] = [0x01, 0x02, 0x03, 0x04]
        let response = Array("md535e465bd88b8c4845f0d10921277d1b9".utf8)
        #expect(MD5Password.storedHash(forConfiguredPassword: "test", user: "example_user_1")
                == "md58a67a0c805a5ee0384ea28e0dea557b6")
        #expect(MD5Password.storedHash(forConfiguredPassword: "md58a67a0c805a5ee0384ea28e0dea557b6", user: "x")
                == "md58a67a0c805a5ee0384ea28e0dea557b6")
        #expect(MD5Password.verify(clientResponse: response, configuredPassword: "test", user: "example_user_1",
                                   salt: salt))
        #expect(!MD5Password.verify(clientResponse: response, configuredPassword: "test", user: "someone_else",
                                    salt: salt))
    }

    @Test func clientSideAndPassTheHashAgree() {
        // A client computes the response from the plaintext; the pooler from the stored hash only.
        let salt = MD5Password.makeSalt { Array(repeating: 7, count: $0) }
        #expect(salt == [7, 7, 7, 7])
        let fromPlaintext = MD5Password.challengeResponse(md5Hash: MD5Password.hash(password: "pw", user: "u"),
                                                          salt: salt)
        #expect(MD5Password.verify(clientResponse: Array(fromPlaintext.utf8), configuredPassword: "pw", user: "u",
                                   salt: salt))
    }

    @Test func isHashRecognisesStoredForm() {
        #expect(MD5Password.isHash("md58a67a0c805a5ee0384ea28e0dea557b6"))
        #expect(!MD5Password.isHash("md58a67a0c805a5ee0384ea28e0dea557b"))
        #expect(!MD5Password.isHash("md58a67a0c805a5ee0384ea28e0dea557bz"))
        #expect(!MD5Password.isHash("SCRAM-SHA-256$4096:abc"))
    }
}
