/// The type byte of a Frontend message (client → server), named as PostgreSQL's protocol
/// documentation ("Message Formats") names the messages.
///
/// Relay code scans raw bytes: `FrontendMessageID(rawValue: byte)` is nil for a byte that is no
/// Frontend message type at all.
public enum FrontendMessageID: UInt8, Sendable {
    case bind = 0x42              // 'B'
    case close = 0x43             // 'C'
    case copyData = 0x64          // 'd'
    case copyDone = 0x63          // 'c'
    case copyFail = 0x66          // 'f'
    case describe = 0x44          // 'D'
    case execute = 0x45           // 'E'
    case flush = 0x48             // 'H'
    case functionCall = 0x46      // 'F'
    case parse = 0x50             // 'P'
    /// PasswordMessage, SASLInitialResponse, SASLResponse and GSSResponse share 'p'.
    case password = 0x70          // 'p'
    case query = 0x51             // 'Q'
    case sync = 0x53              // 'S'
    case terminate = 0x58         // 'X'

    /// The type byte as a character, for logs and error messages.
    public var character: Character { Character(UnicodeScalar(rawValue)) }
}

/// The type byte of a Backend message (server → client), named as PostgreSQL names them.
public enum BackendMessageID: UInt8, Sendable {
    case authentication = 0x52            // 'R'
    case backendKeyData = 0x4B            // 'K'
    case bindComplete = 0x32              // '2'
    case closeComplete = 0x33             // '3'
    case commandComplete = 0x43           // 'C'
    case copyData = 0x64                  // 'd'
    case copyDone = 0x63                  // 'c'
    case copyInResponse = 0x47            // 'G'
    case copyOutResponse = 0x48           // 'H'
    case copyBothResponse = 0x57          // 'W'
    case dataRow = 0x44                   // 'D'
    case emptyQueryResponse = 0x49        // 'I'
    case errorResponse = 0x45             // 'E'
    case functionCallResponse = 0x56      // 'V'
    case negotiateProtocolVersion = 0x76  // 'v'
    case noData = 0x6E                    // 'n'
    case noticeResponse = 0x4E            // 'N'
    case notificationResponse = 0x41      // 'A'
    case parameterDescription = 0x74      // 't'
    case parameterStatus = 0x53           // 'S'
    case parseComplete = 0x31             // '1'
    case portalSuspended = 0x73           // 's'
    case readyForQuery = 0x5A             // 'Z'
    case rowDescription = 0x54            // 'T'
}

/// The transaction status in ReadyForQuery.
public enum TransactionStatus: UInt8, Sendable {
    case idle = 0x49                // 'I'
    case inTransaction = 0x54       // 'T'
    case failedTransaction = 0x45   // 'E'
}
