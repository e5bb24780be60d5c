import NIOCore

/// The ParameterStatus messages a server sent at login, encoded once and replayed to every client
/// of the pool at its login.
///
/// `application_name` is kept apart: a client that set its own gets that value instead.
public struct ParameterStatusBlock {
    /// Every parameter except `application_name`, as consecutive ParameterStatus messages.
    public let encoded: ByteBuffer
    /// The server's `application_name`, when it reported one.
    public let applicationName: String?
    /// Every parameter the server reported, by name (a client's parameters start from these).
    public let values: [String: String]
    private let pairs: [(String, String)]

    public init(_ parameters: [(String, String)]) {
        var out = ByteBufferAllocator().buffer(capacity: 512)
        var applicationName: String?
        for (name, value) in parameters {
            if name == "application_name" {
                applicationName = value
            } else {
                BackendMessage.parameterStatus(name, value, into: &out)
            }
        }
        encoded = out
        self.applicationName = applicationName
        self.pairs = parameters
        var values: [String: String] = [:]
        for (name, value) in parameters { values[name] = value }
        self.values = values
    }

    /// Appends the block with `overrides` in place of the server's values (a client's own
    /// parameters; names PostgreSQL would not report are skipped).
    public func write(overrides: [String: String], into out: inout ByteBuffer) {
        for (name, value) in pairs { BackendMessage.parameterStatus(name, overrides[name] ?? value, into: &out) }
        for (name, value) in overrides where values[name] == nil && SessionParameters.reportedSettable.contains(name) {
            BackendMessage.parameterStatus(name, value, into: &out)
        }
    }

    /// Appends the block, with `clientApplicationName` in place of the server's when not empty.
    public func write(clientApplicationName: String, into out: inout ByteBuffer) {
        out.writeImmutableBuffer(encoded)
        if !clientApplicationName.isEmpty {
            BackendMessage.parameterStatus("application_name", clientApplicationName, into: &out)
        } else if let applicationName {
            BackendMessage.parameterStatus("application_name", applicationName, into: &out)
        }
    }
}
