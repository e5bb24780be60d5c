import NIOCore

/// An admin console connection (database `pgdoorman` or `pgbouncer`): simple query protocol only.
final class AdminSession {
    let runtime: PoolerRuntime
    weak var session: ClientSession?
    private var inbound = ByteBufferAllocator().buffer(capacity: 0)
    private var busy = false

    init(runtime: PoolerRuntime, session: ClientSession) {
        self.runtime = runtime
        self.session = session
    }

    static func parameters(runtime: PoolerRuntime) -> [(String, String)] {
        [("client_encoding", "UTF8"), ("DateStyle", "ISO, MDY"), ("TimeZone", "Etc/UTC"),
         ("server_version", PoolerVersion.string), ("server_encoding", "UTF8"),
         ("standard_conforming_strings", "on"), ("integer_datetimes", "on"), ("application_name", "pg_doorman")]
    }

    func receive(_ buffer: inout ByteBuffer) {
        inbound.writeBuffer(&buffer)
        process()
    }

    /// Runs queued commands one at a time; each gathers session snapshots first (asynchronously).
    private func process() {
        guard let session, !busy else { return }
        while true {
            let message: (UInt8, ByteBuffer)?
            do {
                message = try MessageFramer.next(&inbound, maxLength: 1 << 20)
            } catch {
                session.fatal(code: .protocolViolation, "invalid message length")
                return
            }
            guard let (type, body) = message else { break }
            switch type {
            case UInt8(ascii: "Q"):
                var b = body
                let sql = b.readCString() ?? ""
                busy = true
                runtime.sessionSnapshots(on: session.loop).whenComplete { [self] result in
                    busy = false
                    let snaps = (try? result.get()) ?? []
                    reply(AdminCommands(runtime: runtime, snapshots: snaps).execute(sql), to: session)
                    inbound.discardReadBytes()
                    process()
                }
                return
            case UInt8(ascii: "X"):
                session.close()
                return
            default:
                session.fatal(code: .protocolViolation, "the admin console supports only the simple query protocol; use psql")
                return
            }
        }
        inbound.discardReadBytes()
    }

    private func reply(_ reply: AdminReply, to session: ClientSession) {
                var out = session.allocator.buffer(capacity: 256)
                switch reply {
                case .result(let rs):
                    rs.encode(into: &out)
                case .command(let tag):
                    BackendMessage.commandComplete(tag, into: &out)
                case .error(let code, let message):
                    BackendMessage.errorResponse(severity: "ERROR", code: code, message: message, into: &out)
                case .terminate:
                    session.write(out)
                    session.close()
                    return
                }
                BackendMessage.readyForQuery(into: &out)
                session.write(out)
    }
}

public enum PoolerVersion {
    public static let semver = "3.10.7"
    public static let string = "PgDoorman \(semver) (Swift)"
}
