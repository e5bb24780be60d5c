import Crypto
import Testing
@testable import Pooler

struct KeyedHMACTests {
    @Test func matchesSwiftCryptoForKeyAndMessageSizes() {
        var rng = SystemRandomNumberGenerator()
        for keyLength in [0, 1, 32, 63, 64, 65, 100] {
            for messageLength in [0, 1, 55, 56, 64, 119, 200, 1000] {
                let key = (0..<keyLength).map { _ in UInt8.random(in: 0...255, using: &rng) }
                let message = (0..<messageLength).map { _ in UInt8.random(in: 0...255, using: &rng) }
                let expected = Array(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key)))
                #expect(KeyedHMAC(key: key).mac(message) == expected, "key \(keyLength), message \(messageLength)")
            }
        }
    }

    @Test func rfc4231TestCase2() {
        let mac = KeyedHMAC(key: Array("Jefe".utf8)).mac(Array("what do ya want for nothing?".utf8))
        let hex = mac.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        #expect(hex == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    @Test func oneKeyedInstanceGivesIndependentMACs() {
        let keyed = KeyedHMAC(key: Array(repeating: 7, count: 32))
        let a = keyed.mac([1, 2, 3])
        _ = keyed.mac(Array(repeating: 9, count: 500))
        #expect(keyed.mac([1, 2, 3]) == a)
    }
}
