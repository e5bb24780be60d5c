#if canImport(Glibc)
import Glibc
#endif
import Atomics
import Dispatch
import Foundation
import Logging
import NIOConcurrencyHelpers
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
        let census = migrationCensus(offering: true)
        let stays = census.filter { $0.key != "idle" && $0.key != "in a transaction" }
        logger.info("binary upgrade: \(census["idle"] ?? 0) idle client session(s) move now, \(census["in a transaction"] ?? 0) at the end of their transaction\(stays.isEmpty ? "" : "; staying here: " + Self.describe(stays))")
    }

    /// Why each client session can or cannot move now, counted (run on the sessions' loops; call
    /// off the event loops). With `offering`, each idle one starts moving.
    func migrationCensus(offering: Bool) -> [String: Int] {
        let futures = clients.map { session in
            session.loop.submit { () -> String in
                let blocker = session.handoverBlocker
                if offering && blocker == nil { session.offerHandover() }
                return blocker ?? "idle"
            }
        }
        var census: [String: Int] = [:]
        for f in futures {
            if let reason = try? f.wait() { census[reason, default: 0] += 1 }
        }
        return census
    }

    static func describe(_ census: [String: Int]) -> String {
        census.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
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
        if let relay = relayLoop(for: loop) {
            // Straight onto a RelayLoop (SwiftNIO never sees the connection).
            let session = ClientSession(runtime: self, loop: relay, id: h.processID, secretKey: h.secretKey,
                                        connectedAt: .uptimeNanoseconds(h.connectedAtUptimeNanos))
            session.remoteAddress = RelayAcceptor.peerAddress(of: fd)
            if case .some(.unixDomainSocket) = session.remoteAddress { session.isUnixSocket = true }
            sessionStarted(session)
            relay.execute { session.restoreOnRelay(fd: fd, from: h) }
            return true
        }
        do {
            _ = try ClientSession.channel(connected: fd, on: loop) { [unowned self] in
                let session = ClientSession(runtime: self, loop: loop, id: h.processID, secretKey: h.secretKey,
                                            connectedAt: .uptimeNanoseconds(h.connectedAtUptimeNanos))
                session.adoptedFrom = h
                self.sessionStarted(session)
                return session
            }.wait()
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

/// Cancel requests for clients that stayed with the old process (inside a transaction, session
/// mode, TLS): they reach the listening socket, which the new process owns, so the new process
/// passes each one it has no session for to the old process over a second socket pair (its fd 6,
/// named by `PG_DOORMAN_CANCEL_FD`): 8 bytes, the process id and secret key. The old process acts on
/// them as on its own (and passes on those it does not know, to an older process still running).
final class CancelRelay {
    static let envKey = "PG_DOORMAN_CANCEL_FD"

    private let lock = NIOLock()
    private var fd: Int32

    init(fd: Int32) { self.fd = fd }

    /// Best effort: a full or closed channel (the old process has exited) drops the request.
    func forward(processID: Int32, secretKey: Int32) {
        lock.withLock {
            guard fd >= 0 else { return }
            var record = [UInt8](repeating: 0, count: 8)
            for (i, v) in [UInt32(bitPattern: processID), UInt32(bitPattern: secretKey)].enumerated() {
                for b in 0..<4 { record[i * 4 + b] = UInt8((v >> UInt32(24 - 8 * b)) & 0xff) }
            }
            let r = record.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, 8, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            if r != 8 && !(r < 0 && (errno == EAGAIN || errno == EINTR)) {
                close(fd)
                fd = -1
            }
        }
    }
}

extension PoolerRuntime {
    /// Old process: cancels the new process passes on (`CancelRelay`), until it closes its end.
    func serveForwardedCancels(socket: Int32) {
        let thread = Thread { [self] in
            var record = [UInt8](repeating: 0, count: 8)
            while true {
                var got = 0
                while got < 8 {
                    let r = record.withUnsafeMutableBytes { recv(socket, $0.baseAddress! + got, 8 - got, 0) }
                    if r < 0 && errno == EINTR { continue }
                    if r <= 0 { close(socket); return }
                    got += r
                }
                let pid = Int32(bitPattern: record[0..<4].reduce(0) { ($0 << 8) | UInt32($1) })
                let secret = Int32(bitPattern: record[4..<8].reduce(0) { ($0 << 8) | UInt32($1) })
                cancel(processID: pid, secretKey: secret)
            }
        }
        thread.name = "pg_doorman cancel relay"
        thread.start()
    }
}
