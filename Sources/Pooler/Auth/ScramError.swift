/// Everything that can go wrong in a SCRAM-SHA-256 exchange, on either side.
///
/// Cases raised by `ScramServer` are the client's fault; the caller answers them with FATAL
/// `28P01` and `clientMessage`. Cases raised by `ScramClient` are the backend's (or the pool
/// configuration's) fault. `description` is the detailed text for logs.
public enum ScramError: Error, Equatable, Sendable, CustomStringConvertible {
    // MARK: Raised by ScramServer (a client talking to the pooler)

    /// client-first-message could not be parsed; the associated text says what was wrong.
    case malformedClientFirst(String)
    /// The client asked for channel binding (`p=`); the pooler only offers plain SCRAM-SHA-256.
    case channelBindingNotSupported
    /// The client sent a mandatory extension (`m=`), which SCRAM-SHA-256 defines none of.
    case unsupportedMandatoryExtension
    /// client-final-message could not be parsed; the associated text says what was wrong.
    case malformedClientFinal(String)
    /// `c=` is not the base64 of the gs2 header the client sent first.
    case channelBindingMismatch
    /// The nonce in client-final-message is not the one the server announced.
    case nonceMismatch
    /// The proof does not match the verifier: wrong password (or a forged exchange).
    case invalidProof

    // MARK: Raised by ScramClient (the pooler talking to PostgreSQL)

    /// server-first-message could not be parsed.
    case malformedServerFirst(String)
    /// The server nonce does not extend the client nonce.
    case serverNonceMismatch
    /// Passthrough needs PostgreSQL's verifier to be the configured one; salt or iterations differ,
    /// so the reused ClientKey cannot produce a valid proof.
    case passthroughVerifierMismatch(expectedIterations: Int, expectedSalt: String, serverIterations: Int,
                                     serverSalt: String)
    /// server-final-message could not be parsed.
    case malformedServerFinal(String)
    /// The server's signature is wrong: it does not know the password's ServerKey.
    case invalidServerSignature
    /// The server ended the exchange with `e=<error>`.
    case serverError(String)

    // MARK: Either side

    /// A message arrived in a state that does not expect it.
    case unexpectedMessage(String)

    public enum Kind: Sendable, Equatable {
        /// The peer did not follow the protocol.
        case protocolViolation
        /// The exchange was well formed but the credentials are wrong.
        case invalidCredentials
        /// The pooler's configuration cannot work with this server (passthrough verifier mismatch).
        case configuration
    }

    public var kind: Kind {
        switch self {
        case .invalidProof, .invalidServerSignature, .serverError:
            return .invalidCredentials
        case .passthroughVerifierMismatch:
            return .configuration
        case .malformedClientFirst, .channelBindingNotSupported, .unsupportedMandatoryExtension,
             .malformedClientFinal, .channelBindingMismatch, .nonceMismatch, .malformedServerFirst,
             .serverNonceMismatch, .malformedServerFinal, .unexpectedMessage:
            return .protocolViolation
        }
    }

    /// SQLSTATE for the FATAL sent to a client (`invalid_password`).
    public var sqlState: SQLState { .invalidPassword }

    /// The text sent to a client in the ErrorResponse (pg_doorman's wording, runtime-spec §2.2).
    public var clientMessage: String {
        switch self {
        case .malformedClientFirst, .channelBindingNotSupported, .unsupportedMandatoryExtension:
            return "Authentication protocol error. Your client may not support SCRAM authentication properly."
        case .malformedClientFinal, .channelBindingMismatch, .nonceMismatch, .unexpectedMessage:
            return "Authentication protocol error. Your client sent an invalid SCRAM final message."
        case .invalidProof:
            return "Authentication failed. Invalid credentials or authentication protocol error."
        case .malformedServerFirst, .serverNonceMismatch, .passthroughVerifierMismatch,
             .malformedServerFinal, .invalidServerSignature, .serverError:
            return "Server authentication configuration error. Please contact your database administrator."
        }
    }

    public var description: String {
        switch self {
        case .malformedClientFirst(let detail): return "malformed SCRAM client-first-message: \(detail)"
        case .channelBindingNotSupported: return "client requested SCRAM channel binding, which is not supported"
        case .unsupportedMandatoryExtension: return "client sent an unsupported SCRAM mandatory extension (m=)"
        case .malformedClientFinal(let detail): return "malformed SCRAM client-final-message: \(detail)"
        case .channelBindingMismatch: return "SCRAM channel binding data (c=) does not match the gs2 header"
        case .nonceMismatch: return "SCRAM nonce in client-final-message does not match"
        case .invalidProof: return "SCRAM client proof is invalid (wrong password)"
        case .malformedServerFirst(let detail): return "malformed SCRAM server-first-message: \(detail)"
        case .serverNonceMismatch: return "SCRAM server nonce does not start with the client nonce"
        case let .passthroughVerifierMismatch(expectedIterations, expectedSalt, serverIterations, serverSalt):
            return "SCRAM passthrough impossible: the server's verifier uses salt \(serverSalt) and "
                + "\(serverIterations) iterations, the configured one salt \(expectedSalt) and "
                + "\(expectedIterations) iterations; copy the verifier from pg_authid into the pooler config"
        case .malformedServerFinal(let detail): return "malformed SCRAM server-final-message: \(detail)"
        case .invalidServerSignature: return "SCRAM server signature is invalid"
        case .serverError(let error): return "server rejected SCRAM authentication: \(error)"
        case .unexpectedMessage(let detail): return "unexpected SCRAM message: \(detail)"
        }
    }
}
