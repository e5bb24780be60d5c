import Foundation
import NIOCore

/// One auth_query lookup on the wire: the request the executor sends, and a pure reader of the
/// reply that turns it into an `AuthQueryFetch`.
///
/// The request uses the extended protocol with the user name as the text parameter `$1` (never
/// spliced into the SQL): Parse (unnamed statement), Bind, Describe (portal), Execute, Sync.
/// The reply is untrusted data: NULL or empty passwords, extra columns, several rows, a password
/// in an unknown format and bad JSON all end in a definite outcome, never a crash.
struct AuthQueryResultReader {
    enum Step: Equatable {
        case more
        /// ReadyForQuery arrived: the outcome, and whether the connection is reusable (idle
        /// transaction status, no protocol surprise).
        case done(AuthQueryFetch, reusable: Bool)
    }

    private var passwordColumn: Int?
    private var parametersColumn: Int?
    private var columnProblem: String?
    private var rows = 0
    private var password: String?
    private var parametersJSON: String?
    private var error: String?
    private var sawDescription = false

    /// The request for `user` (`query` uses `$1`).
    static func request(query: String, user: String, into buf: inout ByteBuffer) {
        func message(_ type: UInt8, _ body: (inout ByteBuffer) -> Void) {
            buf.writeInteger(type)
            let lengthAt = buf.writerIndex
            buf.writeInteger(Int32(0))
            body(&buf)
            buf.setInteger(Int32(buf.writerIndex - lengthAt), at: lengthAt)
        }
        message(FrontendMessageID.parse.rawValue) { b in
            b.writeString(""); b.writeInteger(UInt8(0))
            b.writeString(query); b.writeInteger(UInt8(0))
            b.writeInteger(Int16(0))  // parameter types: let the server infer
        }
        message(FrontendMessageID.bind.rawValue) { b in
            b.writeInteger(UInt8(0)); b.writeInteger(UInt8(0))  // portal "", statement ""
            b.writeInteger(Int16(0))  // parameter formats: all text
            b.writeInteger(Int16(1))
            b.writeInteger(Int32(user.utf8.count))
            b.writeString(user)
            b.writeInteger(Int16(0))  // result formats: all text
        }
        message(FrontendMessageID.describe.rawValue) { b in
            b.writeInteger(UInt8(ascii: "P")); b.writeInteger(UInt8(0))
        }
        message(FrontendMessageID.execute.rawValue) { b in
            b.writeInteger(UInt8(0)); b.writeInteger(Int32(0))
        }
        message(FrontendMessageID.sync.rawValue) { _ in }
    }

    /// Feeds one complete backend message.
    mutating func receive(type: UInt8, body: ByteBuffer) -> Step {
        var body = body
        guard let id = BackendMessageID(rawValue: type) else {
            return .done(.unavailable("unexpected message type \(type) in the auth_query reply"), reusable: false)
        }
        switch id {
        case .parseComplete, .bindComplete, .commandComplete, .noticeResponse, .parameterStatus,
             .notificationResponse, .emptyQueryResponse:
            return .more
        case .noData:
            if error == nil { error = "auth_query returns no columns" }
            return .more
        case .rowDescription:
            sawDescription = true
            describe(&body)
            return .more
        case .dataRow:
            rows += 1
            if rows == 1 { readRow(&body) }
            return .more
        case .errorResponse:
            if error == nil {
                let e = ServerError(body: body)
                error = "auth_query failed: \(e.code) \(e.message)"
            }
            return .more
        case .readyForQuery:
            let status: UInt8 = body.readInteger() ?? 0
            return .done(outcome(), reusable: status == TransactionStatus.idle.rawValue)
        case .authentication, .backendKeyData, .closeComplete, .copyData, .copyDone, .copyInResponse,
             .copyOutResponse, .copyBothResponse, .functionCallResponse, .negotiateProtocolVersion,
             .parameterDescription, .portalSuspended:
            return .done(.unavailable("unexpected message '\(Character(UnicodeScalar(type)))' in the auth_query reply"),
                         reusable: false)
        }
    }

    private mutating func describe(_ body: inout ByteBuffer) {
        guard let n: Int16 = body.readInteger(), n >= 0 else {
            columnProblem = "malformed RowDescription"
            return
        }
        var names: [String] = []
        for _ in 0..<Int(n) {
            guard let name = body.readCString(), body.readSlice(length: 18) != nil else {
                columnProblem = "malformed RowDescription"
                return
            }
            names.append(name.lowercased())
        }
        if let i = names.firstIndex(of: "passwd") ?? names.firstIndex(of: "password") {
            passwordColumn = i
        } else if names.count == 1 {
            passwordColumn = 0
        } else {
            columnProblem = "auth_query returns \(names.count) columns but none is named passwd or password"
        }
        parametersColumn = names.firstIndex(of: "startup_parameters")
        if parametersColumn == passwordColumn { parametersColumn = nil }
    }

    private mutating func readRow(_ body: inout ByteBuffer) {
        guard let n: Int16 = body.readInteger(), n >= 0 else { return }
        var values: [String?] = []
        for _ in 0..<Int(n) {
            guard let len: Int32 = body.readInteger() else { return }
            if len < 0 {
                values.append(nil)
            } else {
                guard let bytes = body.readBytes(length: Int(len)) else { return }
                values.append(String(decoding: bytes, as: UTF8.self))
            }
        }
        if let i = passwordColumn, i < values.count { password = values[i] }
        if let i = parametersColumn, i < values.count { parametersJSON = values[i] }
    }

    private func outcome() -> AuthQueryFetch {
        if let error { return .unavailable(error) }
        guard sawDescription else { return .unavailable("auth_query returned no result set") }
        if let columnProblem { return .unusable(columnProblem) }
        if rows == 0 { return .notFound }
        if rows > 1 { return .unusable("auth_query returned \(rows) rows for one user (expected at most one)") }
        guard let password, !password.isEmpty else { return .notFound }
        guard MD5Password.isHash(password) || password.hasPrefix("SCRAM-SHA-256$") else {
            return .unusable("auth_query returned a password that is neither an MD5 hash nor a SCRAM-SHA-256 verifier")
        }
        var secret = AuthQuerySecret(password: password)
        if let json = parametersJSON {
            switch Self.startupParameters(json: json) {
            case .success(let kv): secret.startupParameters = kv
            case .failure(let problem): return .unusable("startup_parameters: \(problem.text)")
            }
        }
        return .found(secret)
    }

    struct Problem: Error, Equatable { var text: String }

    /// One JSON value of the startup_parameters object, as the text PostgreSQL gets.
    private struct Scalar: Decodable {
        var text: String?
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if c.decodeNil() { text = nil }
            else if let s = try? c.decode(String.self) { text = s }
            else if let b = try? c.decode(Bool.self) { text = b ? "on" : "off" }
            else if let i = try? c.decode(Int64.self) { text = String(i) }
            else if let d = try? c.decode(Double.self) { text = String(d) }
            else { throw DecodingError.dataCorruptedError(in: c, debugDescription: "not a scalar") }
        }
    }

    /// A JSON object of parameter names to values (strings, numbers or booleans, taken as text);
    /// `null` or `{}` for none. Sorted by name.
    static func startupParameters(json: String) -> Result<[PoolSettings.KV], Problem> {
        let trimmed = json.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.isEmpty || trimmed == "null" { return .success([]) }
        guard trimmed.hasPrefix("{") else {
            return .failure(Problem(text: "expected a JSON object of parameter names to values"))
        }
        guard let dict = try? JSONDecoder().decode([String: Scalar].self, from: Data(trimmed.utf8)) else {
            return .failure(Problem(text: "not a valid JSON object of parameter names to strings, numbers or booleans"))
        }
        var out: [PoolSettings.KV] = []
        for (key, value) in dict {
            guard !key.isEmpty, !key.utf8.contains(0) else { return .failure(Problem(text: "empty or invalid parameter name")) }
            guard let text = value.text else { continue }
            guard !text.utf8.contains(0) else { return .failure(Problem(text: "value of \(key) contains a NUL byte")) }
            out.append(PoolSettings.KV(key: key, value: text))
        }
        return .success(out.sorted { $0.key < $1.key })
    }
}
