// The floor of a relay that owns its sockets: one thread, one epoll set, each client paired with
// its own PostgreSQL connection (no pooling, no authentication of its own: the bytes of the login
// pass through), every read scanned for message boundaries the way the pooler's raw relay does
// (counting ReadyForQuery), then sent on with send(2). bench/relay-floor.sh counts its user-space
// instructions per transaction beside pg_doorman's: what owning the relayed sockets could save
// against the SwiftNIO read path. A measuring instrument, not a pooler: no timeouts, no limits.
//
// Usage: relay-floor <listen port> <postgres port>
#if canImport(Glibc)
import Glibc
#endif

func fail(_ what: String) -> Never {
    perror(what)
    exit(1)
}

let args = CommandLine.arguments
guard args.count == 3, let listenPort = UInt16(args[1]), let pgPort = UInt16(args[2]) else {
    print("usage: relay-floor <listen port> <postgres port>")
    exit(2)
}

func loopback(_ port: UInt16) -> sockaddr_in {
    var a = sockaddr_in()
    a.sin_family = sa_family_t(AF_INET)
    a.sin_port = port.bigEndian
    a.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    return a
}

func setNoDelay(_ fd: Int32) {
    var one: Int32 = 1
    _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
}

/// One side of a relayed pair: its socket, its peer's, where the stream stands, bytes its peer
/// would not take yet.
struct Side {
    var fd: Int32 = -1
    var peer: Int32 = -1
    /// Body bytes of the current message still to come.
    var remaining = 0
    /// Header bytes of the next message already seen (a header cut between reads).
    var headerSeen = 0
    var header: (UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0)
    /// Bytes for this side's socket that it did not take yet (EPOLLOUT pending).
    var pending: [UInt8] = []
    var readyForQuery = 0
    /// The client's side starts with its startup packet, which has no type byte.
    var untypedFirst = false
}

var sides = [Side](repeating: Side(), count: 65536)
let ep = epoll_create1(Int32(EPOLL_CLOEXEC))
if ep < 0 { fail("epoll_create1") }

func watch(_ fd: Int32, _ events: UInt32, op: Int32) {
    var e = epoll_event()
    e.events = events
    e.data.fd = fd
    if epoll_ctl(ep, op, fd, &e) != 0 { fail("epoll_ctl") }
}

let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
var one: Int32 = 1
_ = setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
var listenAddress = loopback(listenPort)
let bound = withUnsafePointer(to: &listenAddress) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
}
if bound != 0 || listen(listener, 1024) != 0 { fail("listen") }
watch(listener, EPOLLIN.rawValue, op: EPOLL_CTL_ADD)

func closePair(_ fd: Int32) {
    let peer = sides[Int(fd)].peer
    for f in [fd, peer] where f >= 0 {
        _ = epoll_ctl(ep, EPOLL_CTL_DEL, f, nil)
        close(f)
        sides[Int(f)] = Side()
    }
}

func acceptClient() {
    while true {
        let c = accept(listener, nil, nil)
        if c < 0 { return }
        _ = fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK)
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var pg = loopback(pgPort)
        let connected = withUnsafePointer(to: &pg) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if connected != 0 {
            close(c)
            close(s)
            continue
        }
        _ = fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK)
        setNoDelay(c)
        setNoDelay(s)
        sides[Int(c)] = Side(fd: c, peer: s, untypedFirst: true)
        sides[Int(s)] = Side(fd: s, peer: c)
        watch(c, EPOLLIN.rawValue, op: EPOLL_CTL_ADD)
        watch(s, EPOLLIN.rawValue, op: EPOLL_CTL_ADD)
    }
}

/// Finds the message boundaries in `p` (a read from side `fd`), as the pooler's raw relay does.
@inline(__always)
func scan(_ fd: Int32, _ p: UnsafeRawBufferPointer) {
    var side = sides[Int(fd)]
    var i = 0
    let n = p.count
    while i < n {
        if side.remaining > 0 {
            let skip = min(side.remaining, n - i)
            side.remaining -= skip
            i += skip
            continue
        }
        if side.headerSeen == 0 && n - i >= 5 {
            let type = p[i]
            let length = Int(p[i + 1]) << 24 | Int(p[i + 2]) << 16 | Int(p[i + 3]) << 8 | Int(p[i + 4])
            // (The startup packet has no type byte; a relay counting replies only needs the
            // server's stream to be framed, which it is from its first byte.)
            if type == UInt8(ascii: "Z") { side.readyForQuery &+= 1 }
            side.remaining = max(0, length - 4)
            i += 5
        } else {
            switch side.headerSeen {
            case 0: side.header.0 = p[i]
            case 1: side.header.1 = p[i]
            case 2: side.header.2 = p[i]
            case 3: side.header.3 = p[i]
            default: side.header.4 = p[i]
            }
            side.headerSeen += 1
            i += 1
            if side.headerSeen == 5 {
                side.headerSeen = 0
                let h = side.header
                side.remaining = max(0, (Int(h.1) << 24 | Int(h.2) << 16 | Int(h.3) << 8 | Int(h.4)) - 4)
            }
        }
    }
    sides[Int(fd)].remaining = side.remaining
    sides[Int(fd)].headerSeen = side.headerSeen
    sides[Int(fd)].header = side.header
    sides[Int(fd)].readyForQuery = side.readyForQuery
}

let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16)

func readable(_ fd: Int32) {
    let peer = sides[Int(fd)].peer
    let n = read(fd, buffer.baseAddress, buffer.count)
    if n <= 0 {
        if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
        return closePair(fd)
    }
    let data = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
    if sides[Int(fd)].untypedFirst {
        // The startup packet (length word, then its body; whole in the first read: it is small,
        // and the measurement runs without TLS, so no SSLRequest comes first).
        sides[Int(fd)].untypedFirst = false
        let length = n >= 4 ? Int(data[0]) << 24 | Int(data[1]) << 16 | Int(data[2]) << 8 | Int(data[3]) : n
        if length < n { scan(fd, UnsafeRawBufferPointer(rebasing: data[length...])) }
    } else {
        scan(fd, data)
    }
    let sent = send(peer, data.baseAddress, n, Int32(MSG_NOSIGNAL))
    if sent == n { return }
    if sent < 0 && errno != EAGAIN { return closePair(fd) }
    // The peer takes no more for now: keep the rest, stop reading this side until it drains.
    let from = max(0, sent)
    sides[Int(peer)].pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: data[from...]))
    watch(peer, EPOLLIN.rawValue | EPOLLOUT.rawValue, op: EPOLL_CTL_MOD)
    watch(fd, 0, op: EPOLL_CTL_MOD)
}

func writable(_ fd: Int32) {
    let pending = sides[Int(fd)].pending
    let sent = pending.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    if sent < 0 { return errno == EAGAIN ? () : closePair(fd) }
    sides[Int(fd)].pending.removeFirst(sent)
    if sides[Int(fd)].pending.isEmpty {
        watch(fd, EPOLLIN.rawValue, op: EPOLL_CTL_MOD)
        watch(sides[Int(fd)].peer, EPOLLIN.rawValue, op: EPOLL_CTL_MOD)
    }
}

var events = [epoll_event](repeating: epoll_event(), count: 256)
while true {
    let ready = epoll_wait(ep, &events, Int32(events.count), -1)
    if ready < 0 {
        if errno == EINTR { continue }
        fail("epoll_wait")
    }
    for k in 0..<Int(ready) {
        let fd = events[k].data.fd
        let ev = events[k].events
        if fd == listener { acceptClient(); continue }
        if sides[Int(fd)].fd < 0 { continue }  // closed earlier in this batch
        if ev & EPOLLOUT.rawValue != 0 { writable(fd) }
        if ev & (EPOLLIN.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0, sides[Int(fd)].fd >= 0 { readable(fd) }
    }
}
