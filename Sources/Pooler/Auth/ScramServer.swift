import Crypto

/// The pooler's side of SCRAM-SHA-256 when a CLIENT logs in to it (RFC 5802 §5, RFC 7677),
/// as a pure state machine: feed it the client's messages, send back what it returns.
///
///     client                                   pooler (ScramServer)
///     SASLInitialResponse: client-first  --->  receiveClientFirst  -> server-first (AuthenticationSASLContinue)
///     SASLResponse: client-final         --->  receiveClientFinal  -> server-final (AuthenticationSASLFinal)
///
/// The messages are the SASL payloads only (no PostgreSQL framing). A successful exchange also
/// yields the client's ClientKey, which SCRAM passthrough reuses to log in to PostgreSQL.
public struct ScramServer {
    private enum State {
        case waitingForClientFirst
        case waitingForClientFinal(Exchange)
        case finished
        case failed
    }

    private struct Exchange {
        var gs2Header: ArraySlice<UInt8>
        var clientFirstBare: ArraySlice<UInt8>
        var serverFirst: [UInt8]
        var combinedNonce: [UInt8]
    }

    /// A verifier with its two HMACs keyed once: keying is most of an HMAC's cost on messages this
    /// short, so a pool keeps one `Keys` for all its logins.
    public final class Keys: @unchecked Sendable {  // immutable after init
        public let verifier: ScramVerifier
        fileprivate let storedKeyMAC: KeyedHMAC
        fileprivate let serverKeyMAC: KeyedHMAC
        /// `,s=<salt>,i=<iterations>`: the end of every server-first-message, the same for all logins.
        fileprivate let serverFirstTail: [UInt8]

        public init(_ verifier: ScramVerifier) {
            self.verifier = verifier
            storedKeyMAC = KeyedHMAC(key: verifier.storedKey)
            serverKeyMAC = KeyedHMAC(key: verifier.serverKey)
            serverFirstTail = Array(",s=".utf8) + Base64.encodeBytes(verifier.salt) + Array(",i=\(verifier.iterations)".utf8)
        }
    }

    public var verifier: ScramVerifier { keys.verifier }
    private let keys: Keys
    /// The server's part of the nonce, appended to the client's.
    public let serverNonce: String
    private var state: State = .waitingForClientFirst

    /// `randomBytes` supplies the 18 bytes behind the server nonce (base64, 24 characters).
    public init(keys: Keys, randomBytes: AuthRandomBytes = AuthRandom.system) {
        // Base64 is printable ASCII without ',': no check needed (it cost ~800 instructions a login).
        self.init(keys: keys, checkedNonce: ScramPrimitives.makeNonce(randomBytes: randomBytes))
    }

    private init(keys: Keys, checkedNonce: String) {
        self.keys = keys
        self.serverNonce = checkedNonce
    }

    public init(verifier: ScramVerifier, randomBytes: AuthRandomBytes = AuthRandom.system) {
        self.init(keys: Keys(verifier), randomBytes: randomBytes)
    }

    /// Uses `serverNonce` verbatim as the server's nonce part (tests, RFC vectors). It must be
    /// printable ASCII without ','.
    public init(keys: Keys, serverNonce: String) {
        precondition(!serverNonce.isEmpty && serverNonce.utf8.allSatisfy(ScramPrimitives.isPrintable),
                     "SCRAM server nonce must be printable ASCII without ','")
        self.init(keys: keys, checkedNonce: serverNonce)
    }

    public init(verifier: ScramVerifier, serverNonce: String) {
        self.init(keys: Keys(verifier), serverNonce: serverNonce)
    }

    /// `true` once the client's proof has been accepted.
    public var isFinished: Bool {
        if case .finished = state { return true }
        return false
    }

    /// Handles client-first-message and returns server-first-message
    /// `r=<client nonce><server nonce>,s=<salt base64>,i=<iterations>`.
    ///
    ///     client-first-message = gs2-header client-first-message-bare
    ///     gs2-header  = gs2-cbind-flag "," [ authzid ] ","
    ///     gs2-cbind-flag = ("p=" cb-name) / "n" / "y"
    ///     client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
    public mutating func receiveClientFirst(_ bytes: [UInt8]) -> Result<[UInt8], ScramError> {
        guard case .waitingForClientFirst = state else {
            state = .failed
            return .failure(.unexpectedMessage("client-first-message already received"))
        }
        switch Self.parseClientFirst(bytes[...]) {
        case .failure(let error):
            state = .failed
            return .failure(error)
        case .success(let parsed):
            let combinedNonce = Array(parsed.clientNonce) + Array(serverNonce.utf8)
            var serverFirst: [UInt8] = []
            serverFirst.reserveCapacity(2 + combinedNonce.count + keys.serverFirstTail.count)
            serverFirst += "r=".utf8
            serverFirst += combinedNonce
            serverFirst += keys.serverFirstTail
            state = .waitingForClientFinal(Exchange(gs2Header: parsed.gs2Header, clientFirstBare: parsed.bare,
                                                    serverFirst: serverFirst, combinedNonce: combinedNonce))
            return .success(serverFirst)
        }
    }

    /// Handles client-final-message, checks the proof, and returns server-final-message
    /// `v=<ServerSignature base64>` with the ClientKey recovered from the proof.
    ///
    ///     client-final-message = channel-binding "," nonce ["," extensions] "," proof
    public mutating func receiveClientFinal(_ bytes: [UInt8])
        -> Result<(serverFinal: [UInt8], clientKey: [UInt8]), ScramError> {
        guard case .waitingForClientFinal(let exchange) = state else {
            let wasFirst: Bool
            if case .waitingForClientFirst = state { wasFirst = true } else { wasFirst = false }
            state = .failed
            return .failure(.unexpectedMessage(wasFirst ? "client-final-message before client-first-message"
                                                        : "exchange already completed"))
        }
        state = .failed
        let message = bytes[...]
        guard let attributes = ScramAttribute.parseList(message), attributes.count >= 3 else {
            return .failure(.malformedClientFinal("expected c=...,r=...,p=..."))
        }
        guard attributes[0].name == UInt8(ascii: "c") else {
            return .failure(.malformedClientFinal("channel binding (c=) must come first"))
        }
        guard let binding = Base64.decode(attributes[0].value) else {
            return .failure(.malformedClientFinal("channel binding (c=) is not base64"))
        }
        guard ConstantTime.equals(binding, exchange.gs2Header) else { return .failure(.channelBindingMismatch) }
        guard attributes[1].name == UInt8(ascii: "r") else {
            return .failure(.malformedClientFinal("nonce (r=) must follow channel binding"))
        }
        guard ConstantTime.equals(attributes[1].value, exchange.combinedNonce) else { return .failure(.nonceMismatch) }
        let proofAttribute = attributes[attributes.count - 1]
        guard proofAttribute.name == UInt8(ascii: "p") else {
            return .failure(.malformedClientFinal("proof (p=) must be the last attribute"))
        }
        guard let proof = Base64.decode(proofAttribute.value), proof.count == ScramPrimitives.keyLength else {
            return .failure(.malformedClientFinal("proof (p=) is not base64 of 32 bytes"))
        }
        // client-final-message-without-proof: everything before ",p=".
        let withoutProof = message[message.startIndex..<(proofAttribute.value.startIndex - 3)]

        var authMessage: [UInt8] = []
        authMessage.reserveCapacity(exchange.clientFirstBare.count + exchange.serverFirst.count + withoutProof.count + 2)
        authMessage += exchange.clientFirstBare
        authMessage.append(UInt8(ascii: ","))
        authMessage += exchange.serverFirst
        authMessage.append(UInt8(ascii: ","))
        authMessage += withoutProof

        let clientSignature = keys.storedKeyMAC.mac(authMessage)
        let clientKey = ScramPrimitives.xor(proof, clientSignature)
        guard ConstantTime.equals(ScramPrimitives.sha256(clientKey), verifier.storedKey) else {
            return .failure(.invalidProof)
        }
        let serverSignature = keys.serverKeyMAC.mac(authMessage)
        state = .finished
        return .success((serverFinal: Array("v=".utf8) + Base64.encodeBytes(serverSignature), clientKey: clientKey))
    }

    private struct ClientFirst {
        var gs2Header: ArraySlice<UInt8>
        var bare: ArraySlice<UInt8>
        var clientNonce: ArraySlice<UInt8>
    }

    private static func parseClientFirst(_ message: ArraySlice<UInt8>) -> Result<ClientFirst, ScramError> {
        let comma = UInt8(ascii: ",")
        guard let flag = message.first else { return .failure(.malformedClientFirst("empty message")) }
        switch flag {
        case UInt8(ascii: "n"), UInt8(ascii: "y"):
            guard message.count >= 2, message[message.startIndex + 1] == comma else {
                return .failure(.malformedClientFirst("gs2 channel binding flag must be followed by ','"))
            }
        case UInt8(ascii: "p"):
            return .failure(.channelBindingNotSupported)
        default:
            return .failure(.malformedClientFirst("unexpected gs2 channel binding flag"))
        }
        // authzid: empty, or "a=<saslname>"; it is accepted and ignored.
        let afterFlag = message.index(message.startIndex, offsetBy: 2)
        guard let authzidEnd = message[afterFlag...].firstIndex(of: comma) else {
            return .failure(.malformedClientFirst("gs2 header must end with ','"))
        }
        let authzid = message[afterFlag..<authzidEnd]
        if !authzid.isEmpty {
            guard let attribute = ScramAttribute.parse(authzid), attribute.name == UInt8(ascii: "a") else {
                return .failure(.malformedClientFirst("malformed authorization identity"))
            }
        }
        let gs2Header = message[message.startIndex...authzidEnd]
        let bare = message[(authzidEnd + 1)...]

        guard var attributes = ScramAttribute.parseList(bare)?[...] else {
            return .failure(.malformedClientFirst("attributes must look like n=...,r=..."))
        }
        if attributes.first?.name == UInt8(ascii: "m") { return .failure(.unsupportedMandatoryExtension) }
        guard attributes.first?.name == UInt8(ascii: "n") else {
            return .failure(.malformedClientFirst("username (n=) expected"))
        }
        attributes = attributes.dropFirst()
        guard let nonceAttribute = attributes.first, nonceAttribute.name == UInt8(ascii: "r") else {
            return .failure(.malformedClientFirst("nonce (r=) expected after the username"))
        }
        let nonce = nonceAttribute.value
        guard !nonce.isEmpty, nonce.allSatisfy(ScramPrimitives.isPrintable) else {
            return .failure(.malformedClientFirst("nonce must be non-empty printable ASCII"))
        }
        return .success(ClientFirst(gs2Header: gs2Header, bare: bare, clientNonce: nonce))
    }
}
