import Crypto

/// PostgreSQL's MD5 password scheme (`AuthenticationMD5Password`, protocol docs §55.3.2):
///
/// - stored form: `"md5" + hex(md5(password + username))` (what `pg_authid.rolpassword` holds);
/// - challenge response: `"md5" + hex(md5(hex(md5(password + username)) + salt))`, where `salt`
///   is the 4 random bytes of the `AuthenticationMD5Password` message.
///
/// Because the response only needs the stored hash, the pooler can verify a client and answer a
/// server's challenge ("pass-the-hash") without ever knowing the plaintext password.
public enum MD5Password {
    /// Length of the salt in an `AuthenticationMD5Password` request.
    public static let saltLength = 4

    /// `"md5" + hex(md5(password + user))`, the form PostgreSQL stores.
    public static func hash(password: String, user: String) -> String {
        "md5" + hexMD5(Array(password.utf8) + Array(user.utf8))
    }

    /// `true` when `text` has the stored-hash form: `md5` followed by 32 hex digits.
    public static func isHash(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 35, bytes.starts(with: Array("md5".utf8)) else { return false }
        return bytes.dropFirst(3).allSatisfy { isHexDigit($0) }
    }

    /// The stored hash for a configured password: kept as is when it is already an MD5 hash,
    /// otherwise (plaintext) hashed with the user name, as PostgreSQL would have stored it.
    public static func storedHash(forConfiguredPassword password: String, user: String) -> String {
        isHash(password) ? password : hash(password: password, user: user)
    }

    /// The answer to an MD5 challenge: `"md5" + hex(md5(<32 hex digits of md5Hash> + salt))`.
    ///
    /// `md5Hash` is the stored form (`md5<32hex>`); if the `md5` prefix is missing the whole string
    /// is used as the hex part. Used to check a client's `PasswordMessage` and to answer a
    /// backend's `AuthenticationMD5Password` request with pass-the-hash.
    public static func challengeResponse(md5Hash: String, salt: [UInt8]) -> String {
        let hex = md5Hash.hasPrefix("md5") ? Array(md5Hash.utf8.dropFirst(3)) : Array(md5Hash.utf8)
        return "md5" + hexMD5(hex + salt)
    }

    /// Checks a client's `PasswordMessage` payload against the stored hash, in constant time.
    ///
    /// `clientResponse` may include the terminating NUL of the protocol string; it is ignored.
    public static func verify(clientResponse: [UInt8], storedHash: String, salt: [UInt8]) -> Bool {
        var response = clientResponse[...]
        if response.last == 0 { response = response.dropLast() }
        let expected = Array(challengeResponse(md5Hash: storedHash, salt: salt).utf8)
        return ConstantTime.equals(response, expected)
    }

    /// Like `verify(clientResponse:storedHash:salt:)`, but the configured password may be plaintext,
    /// in which case the hash is derived with `user` first.
    public static func verify(clientResponse: [UInt8], configuredPassword: String, user: String,
                              salt: [UInt8]) -> Bool {
        verify(clientResponse: clientResponse,
               storedHash: storedHash(forConfiguredPassword: configuredPassword, user: user), salt: salt)
    }

    /// A fresh 4-byte salt for an `AuthenticationMD5Password` request.
    public static func makeSalt(randomBytes: AuthRandomBytes = AuthRandom.system) -> [UInt8] {
        randomBytes(saltLength)
    }

    private static func hexMD5(_ bytes: [UInt8]) -> String {
        hexString(Insecure.MD5.hash(data: bytes))
    }

    private static func isHexDigit(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
            || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
            || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(byte)
    }
}

/// Lower-case hexadecimal, as PostgreSQL prints MD5 digests.
func hexString<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    for byte in bytes {
        out.append(digits[Int(byte >> 4)])
        out.append(digits[Int(byte & 0x0f)])
    }
    return String(decoding: out, as: UTF8.self)
}
