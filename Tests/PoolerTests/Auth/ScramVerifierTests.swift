import Testing
@testable import Pooler

@Suite struct ScramVerifierTests {
    /// RFC 7677's password/salt, verifier computed independently with Python (hashlib.pbkdf2_hmac).
    static let pencil = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="

    @Test func derivesKnownVerifier() {
        let salt = Base64.decode("W22ZaJ0SNY7soEsUEjb6gQ==")!
        let verifier = ScramVerifier.derive(password: "pencil", salt: salt, iterations: 4096)
        #expect(verifier.formatted == Self.pencil)
    }

    @Test func parseFormatRoundTrip() throws {
        let verifier = try ScramVerifier(parsing: Self.pencil)
        #expect(verifier.iterations == 4096)
        #expect(verifier.salt.count == 16)
        #expect(verifier.storedKey.count == 32)
        #expect(verifier.serverKey.count == 32)
        #expect(verifier.formatted == Self.pencil)
        #expect(try ScramVerifier(parsing: verifier.formatted) == verifier)
    }

    @Test(arguments: [
        ("md58a67a0c805a5ee0384ea28e0dea557b6", ScramVerifier.ParseError.notScramSHA256),
        ("SCRAM-SHA-1$4096:W22ZaJ0SNY7soEsUEjb6gQ==$a:b", .notScramSHA256),
        ("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==", .malformed),
        ("SCRAM-SHA-256$4096$x:y", .malformed),
        ("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=", .malformed),
        ("SCRAM-SHA-256$0:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=", .invalidIterations),
        ("SCRAM-SHA-256$-1:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=", .invalidIterations),
        ("SCRAM-SHA-256$abc:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=", .invalidIterations),
        ("SCRAM-SHA-256$4096:$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=", .invalidSalt),
        ("SCRAM-SHA-256$4096:not*base64$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=", .invalidSalt),
        ("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7Bke:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=", .invalidKey),
        ("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:", .invalidKey),
    ])
    func rejectsBadVerifiers(text: String, expected: ScramVerifier.ParseError) {
        #expect(throws: expected) { try ScramVerifier(parsing: text) }
    }

    @Test func configuredPasswordIsParsedOrDerivedOnce() throws {
        let parsed = try ScramVerifier.forConfiguredPassword(Self.pencil)
        #expect(parsed.formatted == Self.pencil)
        let derived = try ScramVerifier.forConfiguredPassword("pencil") { Array(repeating: 0x42, count: $0) }
        #expect(derived.salt == Array(repeating: 0x42, count: 16))
        #expect(derived == ScramVerifier.derive(password: "pencil", salt: derived.salt))
        #expect(throws: ScramVerifier.ParseError.invalidKey) {
            try ScramVerifier.forConfiguredPassword("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$a:b")
        }
    }

    @Test func pbkdf2MatchesTheRFCDefinition() {
        let salt: [UInt8] = Array("NaCl".utf8)
        for iterations in [1, 2, 7, 4096] {
            #expect(ScramPrimitives.saltedPassword(password: Array("password".utf8), salt: salt, iterations: iterations)
                    == ScramPrimitives.saltedPasswordByHMACLoop(password: Array("password".utf8), salt: salt,
                                                                iterations: iterations))
        }
    }

    @Test func saslprepKeepsASCIIAndNormalisesUnicode() {
        #expect(SASLprep.prepare("pencil") == Array("pencil".utf8))
        #expect(SASLprep.prepare("a\u{1}b") == Array("a\u{1}b".utf8))  // ASCII untouched, as PostgreSQL
        #expect(SASLprep.prepare("I\u{00AD}X") == Array("IX".utf8))  // mapped to nothing
        #expect(SASLprep.prepare("a\u{00A0}b") == Array("a b".utf8))  // non-ASCII space
        #expect(SASLprep.prepare("\u{00AA}") == Array("a".utf8))  // NFKC
        #expect(SASLprep.prepare("\u{2168}") == Array("IX".utf8))  // NFKC
        #expect(SASLprep.prepare("\u{00E9}\u{0007}") == Array("\u{00E9}\u{0007}".utf8))  // prohibited: raw bytes
        #expect(SASLprep.prepare(bytes: [0xff, 0x41]) == [0xff, 0x41])  // invalid UTF-8: raw bytes
    }
}
