import NIOCore

/// An ErrorResponse (or NoticeResponse) body decoded into its fields.
public struct ServerError: Error, Equatable, CustomStringConvertible {
    public var severity: String
    public var code: SQLState
    public var message: String
    public var detail: String?

    public init(severity: String = "FATAL", code: SQLState, message: String, detail: String? = nil) {
        self.severity = severity
        self.code = code
        self.message = message
        self.detail = detail
    }

    /// Decodes the field list of an ErrorResponse body: (Byte1 field type, String value)*, terminated by 0.
    public init(body: ByteBuffer) {
        var body = body
        var fields: [UInt8: String] = [:]
        while let t: UInt8 = body.readInteger(), t != 0 {
            guard let v = body.readCString() else { break }
            fields[t] = v
        }
        severity = fields[UInt8(ascii: "V")] ?? fields[UInt8(ascii: "S")] ?? "ERROR"
        code = fields[UInt8(ascii: "C")].map { SQLState($0) } ?? .internalError
        message = fields[UInt8(ascii: "M")] ?? "unknown error"
        detail = fields[UInt8(ascii: "D")]
    }

    public var description: String { "\(severity) \(code) \(message)" }

    public func write(into buf: inout ByteBuffer) {
        BackendMessage.errorResponse(severity: severity, code: code, message: message, detail: detail, into: &buf)
    }
}
