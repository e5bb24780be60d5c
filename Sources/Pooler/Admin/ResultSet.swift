import NIOCore

/// A typed result of an admin command; one encoder turns it into wire messages.
public struct ResultSet: Equatable {
    public var columns: [(String, BackendMessage.ColumnType)]
    public var rows: [[String?]]
    public var tag: String

    public init(columns: [(String, BackendMessage.ColumnType)], rows: [[String?]] = [], tag: String = "SHOW") {
        self.columns = columns
        self.rows = rows
        self.tag = tag
    }

    public var columnNames: [String] { columns.map { $0.0 } }

    public static func == (a: ResultSet, b: ResultSet) -> Bool {
        a.columnNames == b.columnNames && a.rows == b.rows && a.tag == b.tag
    }

    /// RowDescription, DataRow per row, CommandComplete.
    public func encode(into buf: inout ByteBuffer) {
        BackendMessage.rowDescription(columns, into: &buf)
        for row in rows { BackendMessage.dataRow(row, into: &buf) }
        BackendMessage.commandComplete(tag, into: &buf)
    }
}

/// What an admin command produces.
public enum AdminReply: Equatable {
    case result(ResultSet)
    case command(String)
    case error(code: SQLState, message: String)
    case terminate
}
