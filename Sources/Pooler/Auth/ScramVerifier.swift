/// A SCRAM-SHA-256 secret in PostgreSQL's `pg_authid.rolpassword` format:
///
///     SCRAM-SHA-256$<iterations>:<salt base64>$<StoredKey base64>:<ServerKey base64>
///
/// It lets the pooler check a client's proof (StoredKey) and sign its own reply (ServerKey)
/// without the plaintext password, exactly as PostgreSQL does.
public struct ScramVerifier: Hashable, Sendable, CustomStringConvertible {
    /// PostgreSQL's default (`scram_iterations`, 4096 up to PostgreSQL 15).
    public static let defaultIterations = 4096
    /// PostgreSQL generates 16-byte salts (`SCRAM_DEFAULT_SALT_LEN`).
    public static let defaultSaltLength = 16
    static let prefix = "SCRAM-SHA-256$"

    public var iterations: Int
    public var salt: [UInt8]
    public var storedKey: [UInt8]
    public var serverKey: [UInt8]

    public init(iterations: Int, salt: [UInt8], storedKey: [UInt8], serverKey: [UInt8]) {
        self.iterations = iterations
        self.salt = salt
        self.storedKey = storedKey
        self.serverKey = serverKey
    }

    public enum ParseError: Error, Equatable, Sendable, CustomStringConvertible {
        case notScramSHA256
        case malformed
        case invalidIterations
        case invalidSalt
        case invalidKey

        public var description: String {
            switch self {
            case .notScramSHA256: return "SCRAM verifier must start with \"SCRAM-SHA-256$\""
            case .malformed:
                return "SCRAM verifier must look like SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>"
            case .invalidIterations: return "SCRAM verifier iteration count must be a positive integer"
            case .invalidSalt: return "SCRAM verifier salt must be non-empty base64"
            case .invalidKey: return "SCRAM verifier StoredKey and ServerKey must be base64 of 32 bytes"
            }
        }
    }

    /// `true` when `text` starts like a SCRAM verifier (it may still fail to parse).
    public static func looksLikeVerifier(_ text: String) -> Bool { text.hasPrefix(prefix) }

    /// Parses the `pg_authid` form. Strict: every part must be present and well formed.
    public init(parsing text: String) throws {
        guard text.hasPrefix(Self.prefix) else { throw ParseError.notScramSHA256 }
        let body = text.dropFirst(Self.prefix.count)
        let halves = body.split(separator: "$", omittingEmptySubsequences: false)
        guard halves.count == 2 else { throw ParseError.malformed }
        let params = halves[0].split(separator: ":", omittingEmptySubsequences: false)
        let keys = halves[1].split(separator: ":", omittingEmptySubsequences: false)
        guard params.count == 2, keys.count == 2 else { throw ParseError.malformed }
        guard params[0].allSatisfy({ $0.isASCII && $0.isNumber }), let iterations = Int(params[0]),
              iterations > 0 else { throw ParseError.invalidIterations }
        guard let salt = Base64.decode(Array(params[1].utf8)), !salt.isEmpty else { throw ParseError.invalidSalt }
        guard let storedKey = Base64.decode(Array(keys[0].utf8)), storedKey.count == ScramPrimitives.keyLength,
              let serverKey = Base64.decode(Array(keys[1].utf8)), serverKey.count == ScramPrimitives.keyLength
        else { throw ParseError.invalidKey }
        self.init(iterations: iterations, salt: salt, storedKey: storedKey, serverKey: serverKey)
    }

    /// The `pg_authid` form; `ScramVerifier(parsing: v.formatted) == v`.
    public var formatted: String {
        Self.prefix + "\(iterations):" + Base64.encode(salt) + "$" + Base64.encode(storedKey) + ":"
            + Base64.encode(serverKey)
    }

    public var description: String { formatted }

    /// The verifier PostgreSQL would store for `password` with this salt and iteration count
    /// (`scram_build_secret`: SASLprep, PBKDF2-HMAC-SHA-256, then StoredKey/ServerKey).
    public static func derive(password: String, salt: [UInt8], iterations: Int = defaultIterations) -> ScramVerifier {
        let keys = ScramKeys(password: password, salt: salt, iterations: iterations)
        return ScramVerifier(iterations: iterations, salt: salt, storedKey: keys.storedKey, serverKey: keys.serverKey)
    }

    /// A verifier for `password` with a fresh random salt, like `CREATE ROLE ... PASSWORD`.
    public static func generate(password: String, iterations: Int = defaultIterations,
                                randomBytes: AuthRandomBytes = AuthRandom.system) -> ScramVerifier {
        derive(password: password, salt: randomBytes(defaultSaltLength), iterations: iterations)
    }

    /// The verifier for a configured password: parsed when it is a `SCRAM-SHA-256$` verifier,
    /// otherwise (plaintext) derived once with a random salt. Callers keep the result, so the
    /// PBKDF2 cost is paid once per configured password, not per login.
    public static func forConfiguredPassword(_ password: String, iterations: Int = defaultIterations,
                                             randomBytes: AuthRandomBytes = AuthRandom.system) throws -> ScramVerifier {
        if looksLikeVerifier(password) { return try ScramVerifier(parsing: password) }
        return generate(password: password, iterations: iterations, randomBytes: randomBytes)
    }
}

/// The keys derived from a password: `ClientKey` is what a SCRAM client proves it knows and
/// what passthrough reuses towards PostgreSQL.
struct ScramKeys {
    var clientKey: [UInt8]
    var storedKey: [UInt8]
    var serverKey: [UInt8]

    init(password: String, salt: [UInt8], iterations: Int) {
        let salted = ScramPrimitives.saltedPassword(password: SASLprep.prepare(password), salt: salt,
                                                    iterations: iterations)
        clientKey = ScramPrimitives.clientKey(saltedPassword: salted)
        storedKey = ScramPrimitives.sha256(clientKey)
        serverKey = ScramPrimitives.serverKey(saltedPassword: salted)
    }
}
