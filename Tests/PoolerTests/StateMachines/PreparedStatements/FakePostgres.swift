import NIOCore
@testable import Pooler

/// Frontend message encoders for tests.
enum FE {
    static func msg(_ type: Character, _ build: (inout ByteBuffer) -> Void) -> (UInt8, ByteBuffer) {
        var b = ByteBufferAllocator().buffer(capacity: 64)
        build(&b)
        return (type.asciiValue!, b)
    }
    static func cstr(_ s: String, _ b: inout ByteBuffer) {
        b.writeString(s)
        b.writeInteger(UInt8(0))
    }
    static func parse(_ name: String, _ query: String, _ oids: [UInt32] = []) -> (UInt8, ByteBuffer) {
        msg("P") { b in
            cstr(name, &b); cstr(query, &b)
            b.writeInteger(UInt16(oids.count))
            for o in oids { b.writeInteger(o) }
        }
    }
    static func bind(_ portal: String = "", _ stmt: String, _ params: [String?] = [], resultFormats: [Int16] = []) -> (UInt8, ByteBuffer) {
        msg("B") { b in
            cstr(portal, &b); cstr(stmt, &b)
            b.writeInteger(Int16(0))
            b.writeInteger(Int16(params.count))
            for p in params {
                if let p { b.writeInteger(Int32(p.utf8.count)); b.writeString(p) } else { b.writeInteger(Int32(-1)) }
            }
            b.writeInteger(Int16(resultFormats.count))
            for f in resultFormats { b.writeInteger(f) }
        }
    }
    static func describe(_ kind: Character, _ name: String) -> (UInt8, ByteBuffer) {
        msg("D") { b in b.writeInteger(kind.asciiValue!); cstr(name, &b) }
    }
    static func close(_ kind: Character, _ name: String) -> (UInt8, ByteBuffer) {
        msg("C") { b in b.writeInteger(kind.asciiValue!); cstr(name, &b) }
    }
    static func execute(_ portal: String = "", maxRows: Int32 = 0) -> (UInt8, ByteBuffer) {
        msg("E") { b in cstr(portal, &b); b.writeInteger(maxRows) }
    }
    static var sync: (UInt8, ByteBuffer) { msg("S") { _ in } }
    static var flush: (UInt8, ByteBuffer) { msg("H") { _ in } }
    static func query(_ sql: String) -> (UInt8, ByteBuffer) { msg("Q") { b in cstr(sql, &b) } }

    static func encode(_ messages: [(UInt8, ByteBuffer)]) -> ByteBuffer {
        var out = ByteBufferAllocator().buffer(capacity: 256)
        for (t, b) in messages {
            out.writeInteger(t)
            out.writeInteger(Int32(4 + b.readableBytes))
            out.writeImmutableBuffer(b)
        }
        return out
    }

    /// Splits a byte stream into (type, body) messages.
    static func split(_ buffer: ByteBuffer) -> [(UInt8, ByteBuffer)] {
        var b = buffer
        var out: [(UInt8, ByteBuffer)] = []
        while b.readableBytes >= 5 {
            let t: UInt8 = b.readInteger()!
            let len: Int32 = b.readInteger()!
            out.append((t, b.readSlice(length: Int(len) - 4)!))
        }
        precondition(b.readableBytes == 0)
        return out
    }

    static func types(_ buffer: ByteBuffer) -> String {
        String(split(buffer).map { Character(UnicodeScalar($0.0)) })
    }
}

/// A tiny PostgreSQL backend: named/unnamed statements, portals, the skip-until-Sync rule after an
/// error in an extended-protocol message, DEALLOCATE / DISCARD ALL. A query containing "BAD" fails
/// to parse; executing a query containing "FAIL" raises an error; `rejects` fails Parses containing
/// that word on this backend only.
final class FakePostgres {
    struct Statement { var query: String; var oids: [UInt32] }
    struct Portal { var statement: Statement; var params: String }

    var statements: [String: Statement] = [:]
    var unnamed: Statement?
    var portals: [String: Portal] = [:]
    var skipping = false
    var rejects: String?
    private(set) var parsesReceived = 0
    private(set) var closesReceived = 0
    private(set) var messagesReceived: [UInt8] = []

    func receive(_ bytes: ByteBuffer) -> ByteBuffer {
        var out = ByteBufferAllocator().buffer(capacity: 256)
        for (t, body) in FE.split(bytes) { handle(t, body, &out) }
        return out
    }

    private func error(_ code: SQLState, _ message: String, _ out: inout ByteBuffer, extended: Bool = true) {
        BackendMessage.errorResponse(severity: "ERROR", code: code, message: message, into: &out)
        if extended { skipping = true }
    }

    private func simple(_ t: Character, _ out: inout ByteBuffer) {
        out.writeInteger(t.asciiValue!)
        out.writeInteger(Int32(4))
    }

    private func handle(_ type: UInt8, _ body: ByteBuffer, _ out: inout ByteBuffer) {
        var b = body
        messagesReceived.append(type)
        if type == UInt8(ascii: "S") {
            skipping = false
            portals.removeAll()
            BackendMessage.readyForQuery(into: &out)
            return
        }
        if skipping { return }
        switch Character(UnicodeScalar(type)) {
        case "P":
            parsesReceived += 1
            let name = b.readCString()!, query = b.readCString()!
            let n: UInt16 = b.readInteger()!
            let oids = (0..<n).map { _ in b.readInteger(as: UInt32.self)! }
            if name.isEmpty { unnamed = nil }
            if query.contains("BAD") || (rejects.map { query.contains($0) } ?? false) {
                return error("42601", "syntax error at or near \"BAD\"", &out)
            }
            if !name.isEmpty, statements[name] != nil {
                return error("42P05", "prepared statement \"\(name)\" already exists", &out)
            }
            let st = Statement(query: query, oids: oids)
            if name.isEmpty { unnamed = st } else { statements[name] = st }
            simple("1", &out)
        case "B":
            let portal = b.readCString()!, name = b.readCString()!
            guard let st = name.isEmpty ? unnamed : statements[name] else {
                return error("26000", name.isEmpty ? "unnamed prepared statement does not exist"
                                                   : "prepared statement \"\(name)\" does not exist", &out)
            }
            // parameters: render the rest of the message so tests see it was copied verbatim
            portals[portal] = Portal(statement: st, params: b.readableBytesView.map { String($0, radix: 16) }.joined(separator: "."))
            simple("2", &out)
        case "D":
            let kind: UInt8 = b.readInteger()!
            let name = b.readCString()!
            if kind == UInt8(ascii: "S") {
                guard let st = name.isEmpty ? unnamed : statements[name] else {
                    return error("26000", name.isEmpty ? "unnamed prepared statement does not exist"
                                                       : "prepared statement \"\(name)\" does not exist", &out)
                }
                out.writeInteger(UInt8(ascii: "t"))
                out.writeInteger(Int32(6 + 4 * st.oids.count))
                out.writeInteger(Int16(st.oids.count))
                for o in st.oids { out.writeInteger(o) }
                rowDescription(st, &out)
            } else {
                guard let p = portals[name] else { return error("34000", "portal \"\(name)\" does not exist", &out) }
                rowDescription(p.statement, &out)
            }
        case "E":
            let name = b.readCString()!
            guard let p = portals[name] else { return error("34000", "portal \"\(name)\" does not exist", &out) }
            if p.statement.query.contains("FAIL") { return error("22012", "division by zero", &out) }
            if p.statement.query.hasPrefix("SELECT") {
                BackendMessage.dataRow([p.statement.query, p.params], into: &out)
                BackendMessage.commandComplete("SELECT 1", into: &out)
            } else {
                BackendMessage.commandComplete("UPDATE 1", into: &out)
            }
        case "C":
            closesReceived += 1
            let kind: UInt8 = b.readInteger()!
            let name = b.readCString()!
            if kind == UInt8(ascii: "S") {
                if name.isEmpty { unnamed = nil } else { statements[name] = nil }
            } else {
                portals[name] = nil
            }
            simple("3", &out)
        case "H":
            break
        case "Q":
            let sql = b.readCString()!
            unnamed = nil
            portals[""] = nil
            let upper = sql.uppercased()
            if upper.contains("FAIL") {
                error("22012", "division by zero", &out, extended: false)
            } else if upper.hasPrefix("DISCARD ALL") {
                statements.removeAll()
                BackendMessage.commandComplete("DISCARD ALL", into: &out)
            } else if upper.hasPrefix("DEALLOCATE ALL") {
                statements.removeAll()
                BackendMessage.commandComplete("DEALLOCATE ALL", into: &out)
            } else if upper.hasPrefix("DEALLOCATE ") {
                var name = String(sql.dropFirst("DEALLOCATE ".count)).lowercased()
                while name.hasSuffix(";") || name.hasSuffix(" ") { name.removeLast() }
                if statements.removeValue(forKey: name) == nil {
                    error("26000", "prepared statement \"\(name)\" does not exist", &out, extended: false)
                } else {
                    BackendMessage.commandComplete("DEALLOCATE", into: &out)
                }
            } else {
                BackendMessage.commandComplete("SELECT 1", into: &out)
            }
            BackendMessage.readyForQuery(into: &out)
        default:
            break
        }
    }

    private func rowDescription(_ st: Statement, _ out: inout ByteBuffer) {
        if st.query.hasPrefix("SELECT") {
            BackendMessage.rowDescription([(String(st.query.prefix(20)), .text)], into: &out)
        } else {
            simple("n", &out)
        }
    }
}
