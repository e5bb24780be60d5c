#if canImport(Glibc)
import Glibc
#endif

/// Creates listening TCP sockets by hand, so the process knows their descriptors and can hand them
/// to a new process during a binary upgrade.
enum ListenSocket {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// socket + SO_REUSEADDR + SO_REUSEPORT + bind + listen (+ TCP_DEFER_ACCEPT) for `host:port`.
    /// Returns the descriptor.
    static func open(host: String, port: Int, backlog: Int32) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host.isEmpty ? nil : host, String(port), &hints, &res)
        guard rc == 0, let first = res else {
            throw Failure(description: "cannot resolve \(host):\(port): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(res) }
        var lastError = "no address"
        var ai: UnsafeMutablePointer<addrinfo>? = first
        while let a = ai {
            ai = a.pointee.ai_next
            let fd = socket(a.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            if fd < 0 { lastError = String(cString: strerror(errno)); continue }
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size))
            if bind(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) != 0 || listen(fd, backlog) != 0 {
                lastError = String(cString: strerror(errno))
                close(fd)
                continue
            }
            deferAccept(fd)
            return fd
        }
        throw Failure(description: "cannot listen on \(host):\(port): \(lastError)")
    }

    /// TCP_DEFER_ACCEPT (Linux), one second, as PgBouncer's default: a connection is handed to the
    /// pooler once its first bytes (the SSLRequest or startup packet; PostgreSQL clients speak first)
    /// have arrived, so the accept and the first read happen in one wake-up instead of two, and a
    /// peer that connects and sends nothing waits in the kernel for that second instead of holding a
    /// descriptor (the kernel hands it over after that; the startup timeout runs from then).
    static func deferAccept(_ fd: Int32) {
        #if os(Linux)
        var seconds: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_DEFER_ACCEPT, &seconds, socklen_t(MemoryLayout<Int32>.size))
        #endif
    }

    /// The local port of a bound socket (nil when getsockname(2) fails).
    static func port(of fd: Int32) -> Int? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return rc == 0 ? RelayAcceptor.address(storage)?.port : nil
    }

    /// Clears or sets FD_CLOEXEC.
    static func setCloseOnExec(_ fd: Int32, _ on: Bool) {
        let flags = fcntl(fd, F_GETFD)
        guard flags >= 0 else { return }
        _ = fcntl(fd, F_SETFD, on ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC))
    }
}
