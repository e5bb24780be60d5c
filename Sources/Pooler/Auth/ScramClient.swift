import Foundation

/// The pooler's side of SCRAM-SHA-256 when it logs in to POSTGRESQL, as a pure state machine:
///
///     pooler (ScramClient)                          PostgreSQL
///     clientFirst()            -> SASLInitialResponse
///     receiveServerFirst       <- AuthenticationSASLContinue; returns client-final (SASLResponse)
///     receiveServerFinal       <- AuthenticationSASLFinal
///
/// Two credentials:
/// - `.password`: a normal client (SASLprep + PBKDF2), which also checks the server's signature;
/// - `.passthrough`: reuses the ClientKey a client proved to the pooler, so no password is needed.
///   `ClientProof = ClientKey XOR HMAC(SHA256(ClientKey), AuthMessage)`. This only works when
///   PostgreSQL's verifier has the same salt and iterations as the configured one.
public struct ScramClient {
    public enum Credential: Sendable {
        case password(String)
        /// `serverKey` (from the configured verifier) lets the server's signature be checked;
        /// `nil` skips that check. `expectedSalt`/`expectedIterations`, when known, are compared with
        /// the server's so a verifier mismatch is reported clearly instead of as a failed login.
        case passthrough(clientKey: [UInt8], serverKey: [UInt8]?, expectedSalt: [UInt8]? = nil,
                         expectedIterations: Int? = nil)

        /// Passthrough with everything the configured verifier knows.
        public static func passthrough(clientKey: [UInt8], verifier: ScramVerifier) -> Credential {
            .passthrough(clientKey: clientKey, serverKey: verifier.serverKey, expectedSalt: verifier.salt,
                         expectedIterations: verifier.iterations)
        }
    }

    private enum State {
        case initial
        case waitingForServerFinal(expectedServerSignature: [UInt8]?)
        case finished
        case failed
    }

    public let credential: Credential
    /// The client nonce sent in client-first-message.
    public let clientNonce: String
    /// The SCRAM user name; empty by default because PostgreSQL ignores it.
    public let username: String
    private var state: State = .initial

    /// `randomBytes` supplies the 18 bytes behind the client nonce (base64: 24 printable characters
    /// without ',').
    public init(credential: Credential, username: String = "", randomBytes: AuthRandomBytes = AuthRandom.system) {
        self.init(credential: credential, username: username,
                  clientNonce: ScramPrimitives.makeNonce(randomBytes: randomBytes))
    }

    /// Uses `clientNonce` verbatim (tests, RFC vectors). It must be printable ASCII without ','.
    public init(credential: Credential, username: String = "", clientNonce: String) {
        precondition(!clientNonce.isEmpty && clientNonce.utf8.allSatisfy(ScramPrimitives.isPrintable),
                     "SCRAM client nonce must be printable ASCII without ','")
        self.credential = credential
        self.clientNonce = clientNonce
        self.username = username
    }

    public var isFinished: Bool {
        if case .finished = state { return true }
        return false
    }

    private static let gs2Header = Array("n,,".utf8)

    /// client-first-message-bare: `n=,r=<nonce>`. PostgreSQL ignores the SCRAM user name (it uses
    /// the startup packet's), so it is sent empty, like libpq does.
    private var clientFirstBare: [UInt8] {
        // saslname escaping (RFC 5802 §5.1): '=' -> "=3D", ',' -> "=2C".
        let escaped = username.replacingOccurrences(of: "=", with: "=3D").replacingOccurrences(of: ",", with: "=2C")
        return Array("n=\(escaped),r=\(clientNonce)".utf8)
    }

    /// client-first-message `n,,n=<username>,r=<nonce>`, the payload of SASLInitialResponse.
    public func clientFirst() -> [UInt8] { Self.gs2Header + clientFirstBare }

    /// Handles server-first-message `r=<nonce>,s=<salt>,i=<iterations>` and returns
    /// client-final-message `c=biws,r=<nonce>,p=<proof>`.
    public mutating func receiveServerFirst(_ bytes: [UInt8]) -> Result<[UInt8], ScramError> {
        guard case .initial = state else {
            state = .failed
            return .failure(.unexpectedMessage("server-first-message received twice or after the exchange"))
        }
        state = .failed
        let message = bytes[...]
        guard var attributes = ScramAttribute.parseList(message)?[...] else {
            return .failure(.malformedServerFirst("attributes must look like r=...,s=...,i=..."))
        }
        if attributes.first?.name == UInt8(ascii: "m") {
            return .failure(.malformedServerFirst("unsupported mandatory extension (m=)"))
        }
        guard attributes.count >= 3, attributes[attributes.startIndex].name == UInt8(ascii: "r"),
              attributes[attributes.startIndex + 1].name == UInt8(ascii: "s"),
              attributes[attributes.startIndex + 2].name == UInt8(ascii: "i") else {
            return .failure(.malformedServerFirst("expected r=...,s=...,i=..."))
        }
        let nonce = attributes[attributes.startIndex].value
        let saltText = attributes[attributes.startIndex + 1].value
        let iterationText = attributes[attributes.startIndex + 2].value
        attributes = attributes.dropFirst(3)

        let ownNonce = Array(clientNonce.utf8)
        guard nonce.count > ownNonce.count, nonce.starts(with: ownNonce) else {
            return .failure(.serverNonceMismatch)
        }
        guard nonce.allSatisfy(ScramPrimitives.isPrintable) else {
            return .failure(.malformedServerFirst("nonce must be printable ASCII"))
        }
        guard let salt = Base64.decode(saltText), !salt.isEmpty else {
            return .failure(.malformedServerFirst("salt (s=) is not base64"))
        }
        guard !iterationText.isEmpty, iterationText.count <= 10,
              iterationText.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
              let iterations = Int(String(decoding: iterationText, as: UTF8.self)), iterations > 0 else {
            return .failure(.malformedServerFirst("iteration count (i=) is not a positive integer"))
        }

        let clientKey: [UInt8]
        let serverKey: [UInt8]?
        switch credential {
        case .password(let password):
            let keys = ScramKeys(password: password, salt: salt, iterations: iterations)
            clientKey = keys.clientKey
            serverKey = keys.serverKey
        case let .passthrough(passedClientKey, passedServerKey, expectedSalt, expectedIterations):
            if (expectedSalt.map { $0 != salt } ?? false) || (expectedIterations.map { $0 != iterations } ?? false) {
                return .failure(.passthroughVerifierMismatch(
                    expectedIterations: expectedIterations ?? iterations,
                    expectedSalt: Base64.encode(expectedSalt ?? salt),
                    serverIterations: iterations, serverSalt: Base64.encode(salt)))
            }
            guard passedClientKey.count == ScramPrimitives.keyLength else {
                return .failure(.unexpectedMessage("passthrough ClientKey must be 32 bytes"))
            }
            clientKey = passedClientKey
            serverKey = passedServerKey
        }

        // client-final-message-without-proof = channel-binding "," nonce; "biws" = base64("n,,").
        let withoutProof = Array("c=".utf8) + Base64.encodeBytes(Self.gs2Header) + Array(",r=".utf8) + Array(nonce)
        var authMessage = clientFirstBare
        authMessage.append(UInt8(ascii: ","))
        authMessage += message
        authMessage.append(UInt8(ascii: ","))
        authMessage += withoutProof

        let storedKey = ScramPrimitives.sha256(clientKey)
        let proof = ScramPrimitives.xor(clientKey, ScramPrimitives.hmac(key: storedKey, authMessage))
        let expectedSignature = serverKey.map { ScramPrimitives.hmac(key: $0, authMessage) }
        state = .waitingForServerFinal(expectedServerSignature: expectedSignature)
        return .success(withoutProof + Array(",p=".utf8) + Base64.encodeBytes(proof))
    }

    /// Handles server-final-message: `v=<signature>` (checked when the ServerKey is known) or
    /// `e=<error>`.
    public mutating func receiveServerFinal(_ bytes: [UInt8]) -> Result<Void, ScramError> {
        guard case .waitingForServerFinal(let expectedSignature) = state else {
            state = .failed
            return .failure(.unexpectedMessage("server-final-message before server-first-message or twice"))
        }
        state = .failed
        guard let attributes = ScramAttribute.parseList(bytes[...]), let first = attributes.first else {
            return .failure(.malformedServerFinal("expected v=... or e=..."))
        }
        switch first.name {
        case UInt8(ascii: "e"):
            return .failure(.serverError(String(decoding: first.value, as: UTF8.self)))
        case UInt8(ascii: "v"):
            guard let signature = Base64.decode(first.value) else {
                return .failure(.malformedServerFinal("server signature (v=) is not base64"))
            }
            if let expectedSignature, !ConstantTime.equals(signature, expectedSignature) {
                return .failure(.invalidServerSignature)
            }
            state = .finished
            return .success(())
        default:
            return .failure(.malformedServerFinal("expected v=... or e=..."))
        }
    }
}
