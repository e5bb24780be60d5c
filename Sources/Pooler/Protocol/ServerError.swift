import NIOCore

/// An ErrorResponse (or NoticeResponse) body decoded into its fields.
public struct ServerError: Error, Equatable, CustomStringConvertible {
    public var severity: String
    public var code: String
    public var message: String
    public var detail: String?

    public init(severity: String = "FATAL", code: String, message: String, detail: String? = nil) {
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
        code = fields[UInt8(ascii: "C")] ?? "XX000"
        message = fields[UInt8(ascii: "M")] ?? "unknown error"
        detail = fields[UInt8(ascii: "D")]
    }

    public var description: String { "\(severity) \(code) \(message)" }

    public func write(into buf: inout ByteBuffer) {
        BackendMessage.errorResponse(severity: severity, code: code, message: message, detail: detail, into: &buf)
    }
}

/// Splits complete typed messages off an accumulation buffer (used outside the hot path: logins,
/// admin sessions, cleanup). Returns nil when the next message is not complete yet.
enum MessageFramer {
    static func next(_ buffer: inout ByteBuffer, maxLength: Int = 1 << 30) throws -> (UInt8, ByteBuffer)? {
        guard buffer.readableBytes >= 5,
              let type: UInt8 = buffer.getInteger(at: buffer.readerIndex),
              let len: Int32 = buffer.getInteger(at: buffer.readerIndex + 1)
        else { return nil }
        guard len >= 4, Int(len) <= maxLength else {
            throw MessageScanner.ScanError.badLength(type: type, length: Int(len))
        }
        guard buffer.readableBytes >= 1 + Int(len) else { return nil }
        buffer.moveReaderIndex(forwardBy: 5)
        let body = buffer.readSlice(length: Int(len) - 4)!
        return (type, body)
    }
}
