import NIOCore

/// Builders for Backend messages (server → client) that the pooler itself produces.
///
/// Layout (PostgreSQL protocol docs, "Message Formats"): Byte1 type, Int32 length including
/// itself but not the type byte, then the body.
public enum BackendMessage {
    /// AuthenticationOk: 'R', Int32(8), Int32(0).
    public static func authenticationOk(into buf: inout ByteBuffer) {
        buf.writeInteger(UInt8(ascii: "R"))
        buf.writeInteger(Int32(8))
        buf.writeInteger(Int32(0))
    }

    /// AuthenticationMD5Password: 'R', Int32(12), Int32(5), Byte4 salt.
    public static func authenticationMD5(salt: [UInt8], into buf: inout ByteBuffer) {
        buf.writeInteger(UInt8(ascii: "R"))
        buf.writeInteger(Int32(12))
        buf.writeInteger(Int32(5))
        buf.writeBytes(salt)
    }

    /// AuthenticationCleartextPassword: 'R', Int32(8), Int32(3).
    public static func authenticationCleartext(into buf: inout ByteBuffer) {
        buf.writeInteger(UInt8(ascii: "R"))
        buf.writeInteger(Int32(8))
        buf.writeInteger(Int32(3))
    }

    /// AuthenticationSASL: 'R', len, Int32(10), mechanism names each NUL-terminated, then a final NUL.
    public static func authenticationSASL(mechanisms: [String], into buf: inout ByteBuffer) {
        var body = 4
        for m in mechanisms { body += m.utf8.count + 1 }
        body += 1
        buf.writeInteger(UInt8(ascii: "R"))
        buf.writeInteger(Int32(4 + body))
        buf.writeInteger(Int32(10))
        for m in mechanisms { buf.writeCString(m) }
        buf.writeInteger(UInt8(0))
    }

    /// AuthenticationSASLContinue (11) / AuthenticationSASLFinal (12) carrying SASL data.
    public static func authenticationSASL(code: Int32, data: [UInt8], into buf: inout ByteBuffer) {
        buf.writeInteger(UInt8(ascii: "R"))
        buf.writeInteger(Int32(8 + data.count))
        buf.writeInteger(code)
        buf.writeBytes(data)
    }

    /// ParameterStatus: 'S', len, name\0 value\0.
    public static func parameterStatus(_ name: String, _ value: String, into buf: inout ByteBuffer) {
        buf.writeInteger(UInt8(ascii: "S"))
        buf.writeInteger(Int32(4 + name.utf8.count + 1 + value.utf8.count + 1))
        buf.writeCString(name)
        buf.writeCString(value)
    }

    /// BackendKeyData: 'K', Int32(12), Int32 process id, Int32 secret key.
    public static func backendKeyData(processID: Int32, secretKey: Int32, into buf: inout ByteBuffer) {
        buf.writeInteger(UInt8(ascii: "K"))
        buf.writeInteger(Int32(12))
        buf.writeInteger(processID)
        buf.writeInteger(secretKey)
    }

    /// ReadyForQuery: 'Z', Int32(5), Byte1 status ('I' idle, 'T' in transaction, 'E' failed transaction).
    public static func readyForQuery(_ status: UInt8 = UInt8(ascii: "I"), into buf: inout ByteBuffer) {
        buf.writeInteger(UInt8(ascii: "Z"))
        buf.writeInteger(Int32(5))
        buf.writeInteger(status)
    }

    /// ErrorResponse ('E') or NoticeResponse ('N'): fields S, V, C, M (and optional D, H), then a NUL.
    public static func errorResponse(
        type: UInt8 = UInt8(ascii: "E"), severity: String, code: SQLState, message: String,
        detail: String? = nil, hint: String? = nil, into buf: inout ByteBuffer
    ) {
        var fields: [(UInt8, String)] = [
            (UInt8(ascii: "S"), severity), (UInt8(ascii: "V"), severity),
            (UInt8(ascii: "C"), code.code), (UInt8(ascii: "M"), message),
        ]
        if let detail { fields.append((UInt8(ascii: "D"), detail)) }
        if let hint { fields.append((UInt8(ascii: "H"), hint)) }
        var len = 4 + 1
        for (_, v) in fields { len += 1 + v.utf8.count + 1 }
        buf.writeInteger(type)
        buf.writeInteger(Int32(len))
        for (k, v) in fields {
            buf.writeInteger(k)
            buf.writeCString(v)
        }
        buf.writeInteger(UInt8(0))
    }

    /// CommandComplete: 'C', len, tag\0.
    public static func commandComplete(_ tag: String, into buf: inout ByteBuffer) {
        buf.writeInteger(UInt8(ascii: "C"))
        buf.writeInteger(Int32(4 + tag.utf8.count + 1))
        buf.writeCString(tag)
    }

    /// Column type of a result set column the pooler produces (admin console).
    public enum ColumnType {
        case text, int4, int8, numeric
        var oid: Int32 {
            switch self {
            case .text: return 25
            case .int4: return 23
            case .int8: return 20
            case .numeric: return 1700
            }
        }
        var size: Int16 {
            switch self {
            case .text, .numeric: return -1
            case .int4: return 4
            case .int8: return 8
            }
        }
    }

    /// RowDescription: 'T', len, Int16 count, per column: name\0, Int32 table oid, Int16 attnum,
    /// Int32 type oid, Int16 type size, Int32 typmod, Int16 format (0 = text).
    public static func rowDescription(_ columns: [(String, ColumnType)], into buf: inout ByteBuffer) {
        var len = 4 + 2
        for (name, _) in columns { len += name.utf8.count + 1 + 18 }
        buf.writeInteger(UInt8(ascii: "T"))
        buf.writeInteger(Int32(len))
        buf.writeInteger(Int16(columns.count))
        for (name, type) in columns {
            buf.writeCString(name)
            buf.writeInteger(Int32(0))
            buf.writeInteger(Int16(0))
            buf.writeInteger(type.oid)
            buf.writeInteger(type.size)
            buf.writeInteger(Int32(-1))
            buf.writeInteger(Int16(0))
        }
    }

    /// DataRow: 'D', len, Int16 count, per value Int32 length (-1 = NULL) and bytes.
    public static func dataRow(_ values: [String?], into buf: inout ByteBuffer) {
        var len = 4 + 2
        for v in values { len += 4 + (v?.utf8.count ?? 0) }
        buf.writeInteger(UInt8(ascii: "D"))
        buf.writeInteger(Int32(len))
        buf.writeInteger(Int16(values.count))
        for v in values {
            if let v {
                buf.writeInteger(Int32(v.utf8.count))
                buf.writeString(v)
            } else {
                buf.writeInteger(Int32(-1))
            }
        }
    }

    /// EmptyQueryResponse: 'I', Int32(4).
    public static func emptyQueryResponse(into buf: inout ByteBuffer) {
        buf.writeInteger(UInt8(ascii: "I"))
        buf.writeInteger(Int32(4))
    }
}

extension ByteBuffer {
    @inlinable
    mutating func writeCString(_ s: String) {
        self.writeString(s)
        self.writeInteger(UInt8(0))
    }

    /// Reads a NUL-terminated string; nil when no terminator is present.
    mutating func readCString() -> String? {
        guard let idx = self.readableBytesView.firstIndex(of: 0) else { return nil }
        let len = idx - self.readerIndex
        let s = self.readString(length: len)
        self.moveReaderIndex(forwardBy: 1)
        return s
    }
}
