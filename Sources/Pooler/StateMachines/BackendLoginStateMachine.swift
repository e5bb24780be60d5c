import NIOCore

/// The pooler logging in to PostgreSQL: StartupMessage, authentication, then ParameterStatus and
/// BackendKeyData until the first ReadyForQuery. Pure: it consumes complete messages and returns
/// what to do.
struct BackendLoginStateMachine {
    enum Action {
        case send(ByteBuffer)
        case wait
        case ready
        case fail(ServerError)
    }

    enum State {
        /// StartupMessage sent: the server asks for authentication (or says Ok).
        case authenticating
        /// SCRAM-SHA-256 under way.
        case scram(ScramClient)
        /// AuthenticationOk: ParameterStatus and BackendKeyData until the first ReadyForQuery.
        case authenticated
        case ready
        case failed
    }

    private(set) var state = State.authenticating
    private let credential: BackendCredential
    private let user: String
    private let clientKey: [UInt8]?
    private(set) var parameters: [(String, String)] = []
    private(set) var processID: Int32 = 0
    private(set) var secretKey: Int32 = 0
    private let allocator = ByteBufferAllocator()

    init(user: String, credential: BackendCredential, clientKey: [UInt8]?) {
        self.user = user
        self.credential = credential
        self.clientKey = clientKey
    }

    static func startupMessage(settings: PoolSettings) -> ByteBuffer {
        var params: [(String, String)] = [
            ("user", settings.serverUser), ("database", settings.serverDatabase),
        ]
        var app = settings.applicationName
        for kv in settings.startupParameterPairs where kv.key.lowercased() == "application_name" { app = kv.value }
        params.append(("application_name", app))
        for kv in settings.startupParameterPairs where kv.key.lowercased() != "application_name" {
            params.append((kv.key, kv.value))
        }
        var buf = ByteBufferAllocator().buffer(capacity: 128)
        FrontendMessage.startup(parameters: params, into: &buf)
        return buf
    }

    private static func configError(_ text: String) -> ServerError {
        ServerError(code: .invalidAuthorizationSpecification, message: text)
    }

    mutating func receive(type: UInt8, body: ByteBuffer) -> Action {
        let action = step(type: type, body: body)
        switch action {
        case .fail: state = .failed
        case .ready: state = .ready
        case .send, .wait: break
        }
        return action
    }

    private mutating func step(type: UInt8, body: ByteBuffer) -> Action {
        var body = body
        switch state {
        case .ready, .failed:
            return .fail(ServerError(code: .protocolViolation, message: "message after the end of the server login"))
        case .authenticating, .scram, .authenticated:
            break
        }
        switch BackendMessageID(rawValue: type) {
        case .authentication:
            switch state {
            case .authenticating, .scram: break
            case .authenticated, .ready, .failed:
                return .fail(ServerError(code: .protocolViolation, message: "authentication request after AuthenticationOk"))
            }
            guard let code: Int32 = body.readInteger() else { return .fail(Self.configError("bad auth request")) }
            return authRequest(code: code, body: body)
        case .parameterStatus:
            if let k = body.readCString(), let v = body.readCString() {
                if let i = parameters.firstIndex(where: { $0.0 == k }) { parameters[i].1 = v }
                else { parameters.append((k, v)) }
            }
            return .wait
        case .backendKeyData:
            processID = body.readInteger() ?? 0
            secretKey = body.readInteger() ?? 0
            return .wait
        case .readyForQuery:
            guard case .authenticated = state else {
                return .fail(ServerError(code: .protocolViolation, message: "ReadyForQuery before AuthenticationOk"))
            }
            return .ready
        case .errorResponse:
            return .fail(ServerError(body: body))
        case .noticeResponse, .negotiateProtocolVersion:
            return .wait
        default:
            return .fail(ServerError(code: .protocolViolation, message: "unexpected message '\(Character(UnicodeScalar(type)))' during server login"))
        }
    }

    private mutating func authRequest(code: Int32, body: ByteBuffer) -> Action {
        var body = body
        var out = allocator.buffer(capacity: 64)
        switch code {
        case 0:  // AuthenticationOk
            state = .authenticated
            return .wait
        case 3:  // Cleartext
            guard case .plaintext(let pw) = credential else {
                return .fail(Self.configError("server asked for a cleartext password, but pg_doorman has none for user \"\(user)\" (set server_password)"))
            }
            FrontendMessage.password(pw, into: &out)
            return .send(out)
        case 5:  // MD5 with a 4-byte salt
            guard let salt = body.readBytes(length: 4) else { return .fail(Self.configError("bad MD5 request")) }
            let hash: String
            switch credential {
            case .md5Hash(let h): hash = h
            case .plaintext(let pw): hash = MD5Password.hash(password: pw, user: user)
            case .scramPassthrough, .none:
                return .fail(Self.configError("server asked for MD5 authentication, but pg_doorman only has a SCRAM verifier or no password for user \"\(user)\""))
            }
            FrontendMessage.password(MD5Password.challengeResponse(md5Hash: hash, salt: salt), into: &out)
            return .send(out)
        case 10:  // SASL: list of mechanisms
            var mechanisms: [String] = []
            while let m = body.readCString(), !m.isEmpty { mechanisms.append(m) }
            guard mechanisms.contains("SCRAM-SHA-256") else {
                return .fail(Self.configError("server offers no supported SASL mechanism (\(mechanisms.joined(separator: ",")))"))
            }
            let client: ScramClient
            switch credential {
            case .plaintext(let pw):
                client = ScramClient(credential: .password(pw))
            case .scramPassthrough(let verifierText):
                guard let key = clientKey else {
                    return .fail(Self.configError("SCRAM passthrough for user \"\(user)\" needs one successful client login first (or set server_username/server_password)"))
                }
                if let verifier = try? ScramVerifier(parsing: verifierText) {
                    client = ScramClient(credential: .passthrough(clientKey: key, verifier: verifier))
                } else {
                    client = ScramClient(credential: .passthrough(clientKey: key, serverKey: nil))
                }
            case .md5Hash:
                return .fail(Self.configError("server wants SCRAM-SHA-256 but user \"\(user)\" has an MD5 hash in the config"))
            case .none:
                return .fail(Self.configError("server wants a password for user \"\(user)\", but none is configured"))
            }
            FrontendMessage.saslInitialResponse(mechanism: "SCRAM-SHA-256", data: client.clientFirst(), into: &out)
            state = .scram(client)
            return .send(out)
        case 11:  // SASLContinue
            guard case .scram(var client) = state else { return .fail(Self.configError("unexpected SASLContinue")) }
            let reply = client.receiveServerFirst(Array(body.readableBytesView))
            state = .scram(client)
            switch reply {
            case .success(let final):
                FrontendMessage.saslResponse(data: final, into: &out)
                return .send(out)
            case .failure(let e):
                return .fail(Self.configError("SCRAM authentication to server failed: \(e)"))
            }
        case 12:  // SASLFinal
            guard case .scram(var client) = state else { return .fail(Self.configError("unexpected SASLFinal")) }
            let verdict = client.receiveServerFinal(Array(body.readableBytesView))
            state = .scram(client)
            switch verdict {
            case .success: return .wait
            case .failure(let e): return .fail(Self.configError("SCRAM server signature check failed: \(e)"))
            }
        default:
            return .fail(Self.configError("unsupported authentication request \(code) from server"))
        }
    }
}
