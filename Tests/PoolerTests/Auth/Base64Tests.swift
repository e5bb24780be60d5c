import Testing
@testable import Pooler

@Suite struct Base64Tests {
    @Test func encodesRFC4648Vectors() {
        let vectors = ["": "", "f": "Zg==", "fo": "Zm8=", "foo": "Zm9v", "foob": "Zm9vYg==", "fooba": "Zm9vYmE=",
                       "foobar": "Zm9vYmFy"]
        for (plain, encoded) in vectors {
            #expect(Base64.encode(Array(plain.utf8)) == encoded)
            #expect(Base64.decode(encoded) == Array(plain.utf8))
        }
    }

    @Test func rejectsNonCanonicalInput() {
        #expect(Base64.decode("Zg=") == nil)
        #expect(Base64.decode("Z===") == nil)
        #expect(Base64.decode("Zh==") == nil)  // non-zero padding bits
        #expect(Base64.decode("Zm9v!A==") == nil)
        #expect(Base64.decode("Zg==Zg==") == nil)
        #expect(Base64.decode("Zm=v") == nil)
    }
}

@Suite struct Base64DecodeInputTests {
    @Test func decodesSlicesAndNonContiguousCollections() {
        let text = Array("xxZm9vYmFyxx".utf8)
        #expect(Base64.decode(text[2..<10]) == Array("foobar".utf8))
        #expect(Base64.decode(Array("Zm9vYmFy".utf8).lazy.map { $0 }) == Array("foobar".utf8))
    }

    @Test func roundTripsEveryLengthAndByte() {
        for length in 0..<70 {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ length) }
            #expect(Base64.decode(Base64.encode(bytes)) == bytes)
        }
    }
}
