import NIOCore

/// Builders for Frontend messages (client → server) that the pooler sends to PostgreSQL itself.
public enum FrontendMessage {
    public static let protocolVersion3: Int32 = 196_608
    public static let sslRequestCode: Int32 = 80_877_103
    public static let cancelRequestCode: Int32 = 80_877_102
    public static let gssEncRequestCode: Int32 = 80_877_104

    /// StartupMessage: Int32 len, Int32 196608, (name\0 value\0)*, \0.
    public static func startup(parameters: [(String, String)], into buf: inout ByteBuffer) {
        var len = 4 + 4 + 1
        for (k, v) in parameters { len += k.utf8.count + 1 + v.utf8.count + 1 }
        buf.writeInteger(Int32(len))
        buf.writeInteger(protocolVersion3)
        for (k, v) in parameters {
            buf.writeCString(k)
            buf.writeCString(v)
        }
        buf.writeInteger(UInt8(0))
    }

    /// CancelRequest: Int32(16), Int32 80877102, Int32 pid, Int32 secret.
    public static func cancelRequest(processID: Int32, secretKey: Int32, into buf: inout ByteBuffer) {
        buf.writeInteger(Int32(16))
        buf.writeInteger(cancelRequestCode)
        buf.writeInteger(processID)
        buf.writeInteger(secretKey)
    }

    /// SSLRequest: Int32(8), Int32 80877103.
    public static func sslRequest(into buf: inout ByteBuffer) {
        buf.writeInteger(Int32(8))
        buf.writeInteger(sslRequestCode)
    }

    /// PasswordMessage: 'p', len, password\0 (also used for MD5 responses).
    public static func password(_ s: String, into buf: inout ByteBuffer) {
        buf.writeInteger(UInt8(ascii: "p"))
        buf.writeInteger(Int32(4 + s.utf8.count + 1))
        buf.writeCString(s)
    }

    /// SASLInitialResponse: 'p', len, mechanism\0, Int32 data length, data.
    public static func saslInitialResponse(mechanism: String, data: [UInt8], into buf: inout ByteBuffer) {
        buf.writeInteger(UInt8(ascii: "p"))
        buf.writeInteger(Int32(4 + mechanism.utf8.count + 1 + 4 + data.count))
        buf.writeCString(mechanism)
        buf.writeInteger(Int32(data.count))
        buf.writeBytes(data)
    }

    /// SASLResponse: 'p', len, data.
    public static func saslResponse(data: [UInt8], into buf: inout ByteBuffer) {
        buf.writeInteger(UInt8(ascii: "p"))
        buf.writeInteger(Int32(4 + data.count))
        buf.writeBytes(data)
    }

    /// Query: 'Q', len, query\0.
    public static func query(_ sql: String, into buf: inout ByteBuffer) {
        buf.writeInteger(UInt8(ascii: "Q"))
        buf.writeInteger(Int32(4 + sql.utf8.count + 1))
        buf.writeCString(sql)
    }

    /// Terminate: 'X', Int32(4).
    public static func terminate(into buf: inout ByteBuffer) {
        buf.writeInteger(UInt8(ascii: "X"))
        buf.writeInteger(Int32(4))
    }

    /// Sync: 'S', Int32(4).
    public static func sync(into buf: inout ByteBuffer) {
        buf.writeInteger(UInt8(ascii: "S"))
        buf.writeInteger(Int32(4))
    }

    /// CopyFail: 'f', len, message\0.
    public static func copyFail(_ message: String, into buf: inout ByteBuffer) {
        buf.writeInteger(UInt8(ascii: "f"))
        buf.writeInteger(Int32(4 + message.utf8.count + 1))
        buf.writeCString(message)
    }
}
