import Crypto
import _CryptoExtras

/// The SCRAM-SHA-256 building blocks of RFC 5802 §3 / RFC 7677, shared by `ScramServer`,
/// `ScramClient` and `ScramVerifier`:
///
///     SaltedPassword  := Hi(Normalize(password), salt, i)      (Hi = PBKDF2-HMAC-SHA-256)
///     ClientKey       := HMAC(SaltedPassword, "Client Key")
///     StoredKey       := H(ClientKey)
///     ServerKey       := HMAC(SaltedPassword, "Server Key")
///     ClientSignature := HMAC(StoredKey, AuthMessage)
///     ClientProof     := ClientKey XOR ClientSignature
///     ServerSignature := HMAC(ServerKey, AuthMessage)
enum ScramPrimitives {
    static let keyLength = 32
    static let mechanism = "SCRAM-SHA-256"

    static func hmac(key: [UInt8], _ message: [UInt8]) -> [UInt8] {
        HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key)).byteArray
    }

    static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        SHA256.hash(data: bytes).byteArray
    }

    static func xor(_ lhs: [UInt8], _ rhs: [UInt8]) -> [UInt8] {
        precondition(lhs.count == rhs.count, "SCRAM XOR over keys of different lengths")
        return [UInt8](unsafeUninitializedCapacity: lhs.count) { out, initialized in
            for i in 0..<lhs.count { out[i] = lhs[i] ^ rhs[i] }
            initialized = lhs.count
        }
    }

    /// `Hi(password, salt, iterations)`: PBKDF2-HMAC-SHA-256 with a 32-byte output.
    /// `password` must already be SASLprep-normalised.
    static func saltedPassword(password: [UInt8], salt: [UInt8], iterations: Int) -> [UInt8] {
        precondition(iterations > 0, "SCRAM iteration count must be positive")
        // BoringSSL's PBKDF2 is much faster than a Swift HMAC loop. `unsafeUncheckedRounds` because
        // PostgreSQL's 4096 is below swift-crypto's 210 000-round policy for new password hashes.
        if let key = try? KDF.Insecure.PBKDF2.deriveKey(from: password, salt: salt, using: .sha256,
                                                        outputByteCount: keyLength,
                                                        unsafeUncheckedRounds: iterations) {
            return key.withUnsafeBytes { Array($0) }
        }
        return saltedPasswordByHMACLoop(password: password, salt: salt, iterations: iterations)
    }

    /// RFC 5802's definition of `Hi` written out; the fallback for `saltedPassword` and a
    /// cross-check for it in tests.
    static func saltedPasswordByHMACLoop(password: [UInt8], salt: [UInt8], iterations: Int) -> [UInt8] {
        let key = SymmetricKey(data: password)
        var previous = Array(HMAC<SHA256>.authenticationCode(for: salt + [0, 0, 0, 1], using: key))
        var result = previous
        for _ in 1..<max(iterations, 1) {
            previous = Array(HMAC<SHA256>.authenticationCode(for: previous, using: key))
            for index in result.indices { result[index] ^= previous[index] }
        }
        return result
    }

    static func clientKey(saltedPassword: [UInt8]) -> [UInt8] {
        hmac(key: saltedPassword, Array("Client Key".utf8))
    }

    static func serverKey(saltedPassword: [UInt8]) -> [UInt8] {
        hmac(key: saltedPassword, Array("Server Key".utf8))
    }

    /// `printable = %x21-2B / %x2D-7E` (RFC 5802 §7): the characters allowed in a nonce.
    static func isPrintable(_ byte: UInt8) -> Bool {
        (0x21...0x7e).contains(byte) && byte != UInt8(ascii: ",")
    }

    /// A nonce part made of `count` random bytes in base64 (printable and comma-free).
    static func makeNonce(randomBytes: AuthRandomBytes, count: Int = 18) -> String {
        Base64.encode(randomBytes(count))
    }
}

/// One `letter=value` attribute of a SCRAM message.
struct ScramAttribute {
    var name: UInt8
    var value: ArraySlice<UInt8>
}

extension ScramAttribute {
    /// Splits `a=...,b=...` into attributes; `nil` when a part is not `<letter>=...`.
    static func parseList(_ bytes: ArraySlice<UInt8>) -> [ScramAttribute]? {
        var result = [ScramAttribute]()
        result.reserveCapacity(4)
        var start = bytes.startIndex
        while true {
            let end = bytes[start...].firstIndex(of: UInt8(ascii: ",")) ?? bytes.endIndex
            guard let attribute = parse(bytes[start..<end]) else { return nil }
            result.append(attribute)
            if end == bytes.endIndex { return result }
            start = end + 1
        }
    }

    static func parse(_ part: ArraySlice<UInt8>) -> ScramAttribute? {
        guard part.count >= 2 else { return nil }
        let name = part[part.startIndex]
        guard isAttributeName(name), part[part.startIndex + 1] == UInt8(ascii: "=") else { return nil }
        return ScramAttribute(name: name, value: part.dropFirst(2))
    }

    static func isAttributeName(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
    }
}
