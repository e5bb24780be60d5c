/// The exchange a client gets for a user the pooler does not know, so that it cannot tell an
/// unknown user from a wrong password (as PostgreSQL's mock authentication).
///
/// The SCRAM challenge carries a salt derived from a per-process secret and the user name, so
/// repeated tries for one name see the same salt (as for a configured verifier, whose salt is
/// fixed); the stored and server keys are derived the same way and match no password (a match
/// would need a SHA-256 preimage). The exchange then fails like a wrong password, with
/// `failureMessage`. MD5 salts are random per login for everybody, so only the hash is derived.
struct MockAuthentication {
    private let secret: [UInt8]

    init(secret: [UInt8]) {
        self.secret = secret
    }

    /// One per process, with a random secret.
    static let shared = MockAuthentication(secret: AuthRandom.system(32))

    private func derive(_ label: String, _ user: String) -> [UInt8] {
        ScramPrimitives.hmac(key: secret, Array("pg_doorman mock \(label)\u{0}\(user)".utf8))
    }

    /// The verifier an unknown `user` is challenged with.
    func scramVerifier(user: String) -> ScramVerifier {
        ScramVerifier(iterations: ScramVerifier.defaultIterations,
                      salt: Array(derive("salt", user).prefix(ScramVerifier.defaultSaltLength)),
                      storedKey: derive("stored key", user), serverKey: derive("server key", user))
    }

    func scramKeys(user: String) -> ScramServer.Keys {
        ScramServer.Keys(scramVerifier(user: user))
    }

    /// An MD5 hash (`md5` + 32 hex digits) that no password of `user` produces in practice.
    func md5Hash(user: String) -> String {
        let hex = derive("md5", user).prefix(16).map { b -> String in
            let s = String(b, radix: 16)
            return s.count == 1 ? "0" + s : s
        }.joined()
        return "md5" + hex
    }

    /// What PostgreSQL says for a wrong password and, to the client, for an unknown user alike.
    static func failureMessage(user: String) -> String {
        "password authentication failed for user \"\(user)\""
    }
}
