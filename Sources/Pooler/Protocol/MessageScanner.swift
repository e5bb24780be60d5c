import NIOCore

/// Finds message boundaries in a byte stream of typed PostgreSQL messages without copying them.
///
/// Relay code forwards whole read buffers unchanged; it only needs to know, for each message that
/// starts in the buffer, its type and (for a few types) the first bytes of its body. The scanner
/// keeps the state that spans reads: a partially received header, and how many body bytes of the
/// current message are still to come (pgbouncer's sbuf does the same).
public struct MessageScanner {
    /// Body bytes of the current message still expected.
    private var remaining: Int = 0
    /// Partial header (type + length) when a read ended inside it.
    private var header: (UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0)
    private var headerCount: Int = 0
    /// The message being peeked into, when the visitor asked for its first body bytes.
    private var peekType: UInt8 = 0
    private var peekWanted: Int = 0
    private var peekBytes: [UInt8] = []
    private var peekLength: Int = 0
    private var peekStart: Int = 0

    /// Largest message length accepted before the stream is declared broken.
    public var maxMessageLength: Int

    public init(maxMessageLength: Int = 256 * 1024 * 1024) {
        self.maxMessageLength = maxMessageLength
    }

    public enum ScanError: Error, Equatable {
        case badLength(type: UInt8, length: Int)
    }

    /// True when the stream is exactly at a message boundary.
    public var atBoundary: Bool { remaining == 0 && headerCount == 0 && peekWanted == 0 }

    /// Scans `buffer` (without moving its reader index) and calls `onMessage(type, bodyLength, prefix, start)`
    /// once per message whose header completes in this buffer. `wantPrefix(type)` says how many body
    /// bytes the caller needs to see (0 for most types); they are collected even across reads.
    /// `start` is the offset of the message's type byte from the buffer's reader index (negative
    /// when the header began in an earlier read).
    @inlinable
    public mutating func scan(
        _ buffer: ByteBuffer,
        wantPrefix: (UInt8) -> Int,
        onMessage: (UInt8, Int, UnsafeRawBufferPointer, Int) -> Void
    ) throws {
        try self._scan(buffer, wantPrefix: wantPrefix, onMessage: onMessage)
    }

    @usableFromInline
    mutating func _scan(
        _ buffer: ByteBuffer,
        wantPrefix: (UInt8) -> Int,
        onMessage: (UInt8, Int, UnsafeRawBufferPointer, Int) -> Void
    ) throws {
        try buffer.withUnsafeReadableBytes { raw in
            var i = 0
            let n = raw.count
            while i < n {
                if peekWanted > 0 {
                    let take = min(peekWanted, n - i)
                    peekBytes.append(contentsOf: raw[i..<(i + take)])
                    peekWanted -= take
                    remaining -= take
                    i += take
                    if peekWanted == 0 {
                        peekBytes.withUnsafeBytes { onMessage(peekType, peekLength, $0, peekStart) }
                        peekBytes.removeAll(keepingCapacity: true)
                    }
                    continue
                }
                if remaining > 0 {
                    let skip = min(remaining, n - i)
                    remaining -= skip
                    i += skip
                    continue
                }
                // At a header.
                var type: UInt8
                var length: Int
                let start = i - headerCount
                if headerCount == 0 && n - i >= 5 {
                    type = raw[i]
                    length = Int(raw[i + 1]) << 24 | Int(raw[i + 2]) << 16 | Int(raw[i + 3]) << 8 | Int(raw[i + 4])
                    i += 5
                } else {
                    // Assemble a split header byte by byte.
                    while headerCount < 5 && i < n {
                        switch headerCount {
                        case 0: header.0 = raw[i]
                        case 1: header.1 = raw[i]
                        case 2: header.2 = raw[i]
                        case 3: header.3 = raw[i]
                        default: header.4 = raw[i]
                        }
                        headerCount += 1
                        i += 1
                    }
                    if headerCount < 5 { return }
                    headerCount = 0
                    type = header.0
                    length = Int(header.1) << 24 | Int(header.2) << 16 | Int(header.3) << 8 | Int(header.4)
                }
                if length < 4 || length > maxMessageLength {
                    throw ScanError.badLength(type: type, length: length)
                }
                let body = length - 4
                remaining = body
                let want = min(wantPrefix(type), body)
                if want == 0 {
                    onMessage(type, body, UnsafeRawBufferPointer(start: nil, count: 0), start)
                    continue
                }
                let avail = n - i
                if avail >= want {
                    // Fast path: prefix entirely in this buffer.
                    let prefix = UnsafeRawBufferPointer(rebasing: raw[i..<(i + want)])
                    remaining -= want
                    i += want
                    onMessage(type, body, prefix, start)
                } else {
                    peekType = type
                    peekLength = body
                    peekWanted = want
                    peekStart = start
                }
            }
            // A prefix still being collected began in this buffer: keep its start relative to the next one.
            if peekWanted > 0 { peekStart -= n }
        }
    }
}
