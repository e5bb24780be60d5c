import NIOCore

/// Splits complete typed messages off an accumulation buffer (logins, admin sessions, cleanup, and
/// the relay's rewriting mode). Returns nil when the next message is not complete yet.
enum MessageFramer {
    @inline(__always)
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
