import NIOCore

/// The first packet a client sends, before any typed message (it has no type byte).
///
/// Layout: Int32 length (including itself), Int32 code; the code is the protocol version for a
/// StartupMessage, or one of the special request codes.
public enum StartupPacket: Equatable {
    case sslRequest
    case gssEncRequest
    case cancel(processID: Int32, secretKey: Int32)
    case startup(parameters: [String: String])

    public enum DecodeError: Error, Equatable {
        case badLength(Int)
        case unsupportedCode(Int32)
        case malformedParameters
        case missingUser
    }

    /// Smallest and largest acceptable first-packet lengths (PostgreSQL caps startup packets at 10000 bytes).
    public static let minLength = 8
    public static let maxLength = 10_000

    /// Tries to decode one startup packet from `buffer`.
    /// Returns nil when more bytes are needed; consumes the packet on success.
    public static func decode(_ buffer: inout ByteBuffer) -> Result<StartupPacket, DecodeError>? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: Int32.self) else { return nil }
        let len = Int(length)
        guard len >= minLength, len <= maxLength else { return .failure(.badLength(len)) }
        guard buffer.readableBytes >= len else { return nil }
        var packet = buffer.readSlice(length: len)!
        packet.moveReaderIndex(forwardBy: 4)
        let code: Int32 = packet.readInteger()!
        switch code {
        case FrontendMessage.sslRequestCode:
            return len == 8 ? .success(.sslRequest) : .failure(.badLength(len))
        case FrontendMessage.gssEncRequestCode:
            return len == 8 ? .success(.gssEncRequest) : .failure(.badLength(len))
        case FrontendMessage.cancelRequestCode:
            guard len == 16, let pid: Int32 = packet.readInteger(), let secret: Int32 = packet.readInteger() else {
                return .failure(.badLength(len))
            }
            return .success(.cancel(processID: pid, secretKey: secret))
        case FrontendMessage.protocolVersion3:
            // A later duplicate of a key wins, as in PostgreSQL.
            var params = [String: String](minimumCapacity: 8)
            while true {
                guard let key = packet.readCString() else { return .failure(.malformedParameters) }
                if key.isEmpty { break }
                guard let value = packet.readCString() else { return .failure(.malformedParameters) }
                params[key] = value
            }
            guard let user = params["user"], !user.isEmpty else { return .failure(.missingUser) }
            return .success(.startup(parameters: params))
        default:
            return .failure(.unsupportedCode(code))
        }
    }
}
