#if canImport(Glibc)
import Glibc
#endif
import Atomics
import Dispatch
import Foundation
import Logging
import NIOCore
import NIOPosix

/// Live session migration at a binary upgrade (`ClientSession+Handover` has the per-session rules).
///
/// The old process owns one end of a Unix socket pair, the new process the other (its fd 5, named
/// by `PG_DOORMAN_MIGRATION_FD`). The old side sends one record (`SessionHandover`) with the
/// client's socket per idle session and waits for a one-byte answer: 1 adopted, 0 refused. One
/// session at a time, on a serial queue (blocking calls). When the channel breaks, every session not
/// yet adopted stays with the old process, which serves it until it leaves or shutdown_timeout.
final class MigrationSender {
    static let envKey = "PG_DOORMAN_MIGRATION_FD"
    static let firstClientIDEnv = "PG_DOORMAN_FIRST_CLIENT_ID"
    static let ackTimeoutSeconds = 5

    private let socket: Int32
    private let queue = DispatchQueue(label: "pg_doorman.migration.send")
    private var broken = false  // confined to `queue`
    let migrated = ManagedAtomic<Int>(0)
    let refused = ManagedAtomic<Int>(0)
    let failed = ManagedAtomic<Int>(0)

    init(socket: Int32) {
        self.socket = socket
        var tv = timeval(tv_sec: Self.ackTimeoutSeconds, tv_usec: 0)
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Sends one session; `done(adopted)` runs on the queue. Closes `fd`.
    func send(_ handover: SessionHandover, fd: Int32, done: @escaping (Bool) -> Void) {
        queue.async { [self] in
            defer { close(fd) }
            guard !broken else {
                failed.wrappingIncrement(ordering: .relaxed)
                return done(false)
            }
            do {
                try DescriptorPassing.send(socket: socket, record: handover.encode(), fd: fd)
                var ack: UInt8 = 0
                var r: Int
                repeat { r = recv(socket, &ack, 1, 0) } while r < 0 && errno == EINTR
                guard r == 1 else {
                    broken = true
                    failed.wrappingIncrement(ordering: .relaxed)
                    return done(false)
                }
                (ack == 1 ? migrated : refused).wrappingIncrement(ordering: .relaxed)
                done(ack == 1)
            } catch {
                broken = true
                failed.wrappingIncrement(ordering: .relaxed)
                done(false)
            }
        }
    }

    /// Closes the channel once every queued send is done (the new process then sees its end).
    func finish() { queue.async { [self] in close(socket) } }
}

extension PoolerRuntime {
    /// Old process, after the new one serves: hands over every session that is idle now; the others
    /// go at their next idle point (`offerHandover`).
    func startMigration(_ sender: MigrationSender) {
        migrationSender = sender
        for session in clients {
            session.loop.execute { session.offerHandover() }
        }
    }

    /// New process: adopts the sessions the old process sends on `socket` until it closes it.
    func receiveMigratedSessions(socket: Int32) {
        let thread = Thread { [self] in
            var adopted = 0, refusedHere = 0
            while true {
                guard let (record, fd) = try? DescriptorPassing.receive(socket: socket) else { break }
                var ok = false
                if let fd {
                    do {
                        let h = try SessionHandover.decode(record)
                        ok = adopt(h, fd: fd)
                    } catch {
                        logger.warning("binary upgrade: a session record from the old process is invalid: \(error)")
                        close(fd)
                    }
                }
                if ok { adopted += 1 } else { refusedHere += 1 }
                var ack: UInt8 = ok ? 1 : 0
                if Glibc.send(socket, &ack, 1, Int32(MSG_NOSIGNAL)) != 1 { break }
            }
            close(socket)
            logger.info("binary upgrade: \(adopted) client session(s) adopted from the old process\(refusedHere > 0 ? ", \(refusedHere) refused (they stay there)" : "")")
        }
        thread.name = "pg_doorman migration"
        thread.start()
    }

    /// Makes `fd` (a client's connection handed over) a session of this process; false (and `fd`
    /// closed) when it cannot: unknown pool, not transaction mode, shutting down, over a limit.
    func adopt(_ h: SessionHandover, fd: Int32) -> Bool {
        guard !isShuttingDown, let pool = pool(database: h.database, user: h.user), pool.settings.mode == .transaction,
              admitClient()
        else {
            close(fd)
            return false
        }
        if governor.admit(database: h.database, user: h.user) != nil {
            releaseAdmission()
            close(fd)
            return false
        }
        let loop = group.next()
        do {
            _ = try ClientBootstrap(group: loop)
                .channelInitializer { [unowned self] channel in
                    let session = ClientSession(runtime: self, loop: channel.eventLoop, id: h.processID,
                                                secretKey: h.secretKey,
                                                connectedAt: .uptimeNanoseconds(h.connectedAtUptimeNanos))
                    session.adoptedFrom = h
                    self.sessionStarted(session)
                    do {
                        try channel.pipeline.syncOperations.addHandler(session)
                        return channel.eventLoop.makeSucceededVoidFuture()
                    } catch {
                        return channel.eventLoop.makeFailedFuture(error)
                    }
                }
                .withConnectedSocket(fd).wait()
            return true
        } catch {
            logger.warning("binary upgrade: cannot adopt client \(h.peer) \(h.user)@\(h.database): \(error)")
            governor.leave(database: h.database, user: h.user)
            releaseAdmission()
            return false
        }
    }
}

extension ClientSession {
    /// While a migration runs (old process): go to the new process if idle now.
    func offerHandover() {
        guard let sender = runtime.migrationSender else { return }
        beginHandover { record, fd, done in sender.send(record, fd: fd, done: done) }
    }
}
