import ConfigKit
import NIOCore

/// A client's login decisions, without a channel: what its first packet asks for, which password
/// exchange its stored credential calls for, and the exchange itself (MD5, SCRAM-SHA-256).
/// `ClientSession` feeds it and runs what it returns: writes the messages, starts TLS, refuses.
struct ClientLoginStateMachine {
    /// The password exchange in progress.
    enum State {
        /// AuthenticationMD5Password sent with `salt`; the stored hash to check the answer against.
        case md5(salt: [UInt8], hash: String)
        /// AuthenticationSASL sent; the client-first-message is next.
        case scramFirst(ScramServer)
        /// server-first-message sent; the client-final-message is next.
        case scramFinal(ScramServer)
        /// Over (authenticated or refused): any further password message is a violation.
        case finished
    }

    private(set) var state: State

    /// The message that starts the exchange, and the machine waiting for its answer.
    static func md5(hash: String, salt: [UInt8]) -> ClientLoginStateMachine {
        ClientLoginStateMachine(state: .md5(salt: salt, hash: hash))
    }

    static func scram(_ server: ScramServer) -> ClientLoginStateMachine {
        ClientLoginStateMachine(state: .scramFirst(server))
    }

    // MARK: - The first packet

    enum FirstPacket: Equatable {
        /// Not all of it has arrived.
        case needMore
        /// Bad length or unknown code: close without a reply (nothing sensible to say).
        case close
        /// SSLRequest with client TLS available: answer `S` and put TLS in front.
        case startTLS
        /// SSLRequest without TLS, or GSSENCRequest: answer `N`; the startup follows in the clear.
        case answerNo
        /// Forward a cancel for another session, then close.
        case cancel(processID: Int32, secretKey: Int32)
        case startup([String: String])
    }

    /// What to do with the first packet (`StartupPacket.decode`'s result).
    static func firstPacket(_ decoded: Result<StartupPacket, StartupPacket.DecodeError>?,
                            tlsAvailable: Bool) -> FirstPacket {
        guard let decoded else { return .needMore }
        switch decoded {
        case .failure:
            return .close
        case .success(.sslRequest):
            return tlsAvailable ? .startTLS : .answerNo
        case .success(.gssEncRequest):
            return .answerNo
        case .success(.cancel(let pid, let secret)):
            return .cancel(processID: pid, secretKey: secret)
        case .success(.startup(let params)):
            return .startup(params)
        }
    }

    // MARK: - Which exchange a stored credential calls for

    enum Exchange {
        /// pg_hba says trust: no exchange.
        case trust
        case md5(hash: String)
        case scram(ScramServer.Keys)
        /// The exchange of a wrong password (an unknown user, or SCRAM asked against an MD5 hash):
        /// MD5 or SCRAM, then the same failure.
        case mock(md5: Bool)
        /// Refused before any exchange.
        case refuse(SQLState, String)
        /// The stored password cannot be used (a plaintext one whose verifier did not derive).
        case fail
    }

    /// The exchange for a configured user's stored password under pg_hba `method`. `scramKeys` is
    /// asked for only when the exchange is SCRAM (it is worked out once per pool).
    static func exchange(stored: String, method: ClientAuthMethod, user: String,
                         scramKeys: () -> ScramServer.Keys?) -> Exchange {
        if method == .trust { return .trust }
        if stored.hasPrefix("SCRAM-SHA-256$") {
            guard let keys = scramKeys() else {
                return .refuse(.invalidPassword,
                               "Server authentication configuration error. Please contact your database administrator.")
            }
            return .scram(keys)
        }
        if stored.hasPrefix("md5") && stored.count == 35 {
            // PostgreSQL cannot run SCRAM against an MD5 hash either; like it, a mock SCRAM exchange
            // so that the client cannot tell this from a wrong password.
            return method == .scram ? .mock(md5: false) : .md5(hash: stored)
        }
        if stored.isEmpty {
            return .refuse(.invalidPassword, "password authentication failed for user \"\(user)\": no password is configured and pg_hba does not trust this connection")
        }
        if stored.hasPrefix(User.jwtPasswordPrefix) {
            // JWT authentication is not implemented: the key's path is not a password.
            return .refuse(.invalidPassword, "password authentication failed for user \"\(user)\": JWT authentication is not supported by this build")
        }
        // Plaintext password in the config: SCRAM with a verifier derived once per pool.
        guard let keys = scramKeys() else { return .fail }
        return .scram(keys)
    }

    // MARK: - The exchange

    enum Step {
        /// Send AuthenticationSASLContinue with this server-first-message and wait.
        case sendSASLContinue([UInt8])
        /// Send AuthenticationSASLFinal with this server-final-message; the client is authenticated
        /// (`clientKey`: its SCRAM ClientKey, for passthrough to PostgreSQL).
        case sendSASLFinalAndAccept(serverFinal: [UInt8], clientKey: [UInt8])
        /// The MD5 answer matches.
        case accept
        /// The MD5 answer does not match the stored hash (auth_query may look the user up again).
        case md5Mismatch(salt: [UInt8], response: [UInt8])
        /// A wrong SCRAM proof.
        case wrongPassword
        /// Refuse with this error (a malformed SASL message).
        case refuse(SQLState, String)
        /// Not a password message, or one after the exchange ended.
        case protocolViolation
    }

    static let saslProtocolError = "Authentication protocol error. Your client may not support SCRAM authentication properly."

    /// One message from the client during the exchange (its type byte and body).
    mutating func receive(type: UInt8, body: ByteBuffer) -> Step {
        guard type == FrontendMessageID.password.rawValue else {
            state = .finished
            return .protocolViolation
        }
        switch state {
        case .md5(let salt, let hash):
            state = .finished
            let response = Array(body.readableBytesView.prefix { $0 != 0 })
            if MD5Password.verify(clientResponse: response, storedHash: hash, salt: salt) { return .accept }
            return .md5Mismatch(salt: salt, response: response)
        case .scramFirst(var scram):
            state = .finished
            var b = body
            guard b.readCString() == "SCRAM-SHA-256", let n: Int32 = b.readInteger(), n >= 0,
                  let data = b.readBytes(length: Int(n)) else {
                return .refuse(.invalidPassword, Self.saslProtocolError)
            }
            switch scram.receiveClientFirst(data) {
            case .success(let serverFirst):
                state = .scramFinal(scram)
                return .sendSASLContinue(serverFirst)
            case .failure:
                return .refuse(.invalidPassword, Self.saslProtocolError)
            }
        case .scramFinal(var scram):
            state = .finished
            switch scram.receiveClientFinal(Array(body.readableBytesView)) {
            case .success(let (serverFinal, clientKey)):
                return .sendSASLFinalAndAccept(serverFinal: serverFinal, clientKey: clientKey)
            case .failure:
                return .wrongPassword
            }
        case .finished:
            return .protocolViolation
        }
    }
}
