#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import Testing
@testable import Pooler

@Suite struct RelayAcceptorTests {
    /// A listening socket on 127.0.0.1 (a free port), non-blocking as `Listener` makes it.
    private func listener() throws -> (fd: CInt, port: Int) {
        let fd = try ListenSocket.open(host: "127.0.0.1", port: 0, backlog: 64)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        let port = try #require(ListenSocket.port(of: fd))
        return (fd, port)
    }

    /// A blocking client connection to 127.0.0.1:port, and its local port.
    private func connectTo(_ port: Int) -> (fd: CInt, localPort: Int) {
        let fd = socket(AF_INET, CInt(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        precondition(rc == 0)
        return (fd, ListenSocket.port(of: fd) ?? -1)
    }

    private final class Accepted: @unchecked Sendable {
        let lock = NIOLock()
        var entries: [(fd: CInt, address: SocketAddress?, loop: String)] = []
        func add(_ fd: CInt, _ address: SocketAddress?, _ loop: String) { lock.withLock { entries.append((fd, address, loop)) } }
        var count: Int { lock.withLock { entries.count } }
        func waitFor(_ n: Int) -> Bool {
            for _ in 0..<400 where count < n { usleep(5_000) }
            return count >= n
        }
    }

    @Test func failuresAreClassified() {
        #expect(RelayAcceptor.failure(errno: EAGAIN) == .drained)
        #expect(RelayAcceptor.failure(errno: EINTR) == .retry)
        #expect(RelayAcceptor.failure(errno: ECONNABORTED) == .retry)
        #expect(RelayAcceptor.failure(errno: EMFILE) == .backOff)
        #expect(RelayAcceptor.failure(errno: ENFILE) == .backOff)
        #expect(RelayAcceptor.failure(errno: ENOMEM) == .backOff)
        #expect(RelayAcceptor.failure(errno: EBADF) == .backOff)
    }

    @Test func acceptsOnTheLoopWithThePeersAddressUntilStopped() throws {
        let loop = try RelayLoop(name: "test accept")
        defer { loop.syncShutdown() }
        let (lfd, port) = try listener()
        defer { close(lfd) }
        let accepted = Accepted()
        let acceptor = RelayAcceptor(fd: lfd, loop: loop, accepted: { fd, address in
            #expect(loop.inEventLoop)
            #expect(fcntl(fd, F_GETFL) & O_NONBLOCK != 0)
            accepted.add(fd, address, loop.name)
        }, backingOff: { _ in })
        #expect(try loop.submit { acceptor.start() }.wait())
        let clients = (0..<3).map { _ in connectTo(port) }
        #expect(accepted.waitFor(3))
        for (client, entry) in zip(clients.sorted { $0.localPort < $1.localPort },
                                   accepted.entries.sorted { ($0.address?.port ?? 0) < ($1.address?.port ?? 0) }) {
            #expect(entry.address?.ipAddress == "127.0.0.1")
            #expect(entry.address?.port == client.localPort)
        }
        try loop.submit { acceptor.stop() }.wait()
        let late = connectTo(port)  // completes in the kernel's backlog, never accepted by the loop
        usleep(100_000)
        #expect(accepted.count == 3)
        for c in clients { close(c.fd) }
        close(late.fd)
        for e in accepted.entries { close(e.fd) }
    }

    @Test func thePeersAddressIsFormattedWhenRead() throws {
        var v4 = sockaddr_in()
        v4.sin_family = sa_family_t(AF_INET)
        v4.sin_port = in_port_t(5432).bigEndian
        v4.sin_addr.s_addr = UInt32(0x0a00_0102).bigEndian  // 10.0.1.2
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: v4, as: sockaddr_in.self) }
        let a = try #require(RelayAcceptor.address(storage))
        #expect(a.ipAddress == "10.0.1.2")
        #expect(a.port == 5432)
        #expect(a.description == "[IPv4]10.0.1.2:5432")

        var v6 = sockaddr_in6()
        v6.sin6_family = sa_family_t(AF_INET6)
        v6.sin6_port = in_port_t(6432).bigEndian
        v6.sin6_addr = in6addr_loopback
        storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: v6, as: sockaddr_in6.self) }
        let b = try #require(RelayAcceptor.address(storage))
        #expect(b.ipAddress == "::1")
        #expect(b.port == 6432)
        #expect(b.description == "[IPv6]::1:6432")
    }

    @Test func twoLoopsShareOneListenerAndAcceptEachConnectionOnce() throws {
        let loops = try [RelayLoop(name: "accept a"), RelayLoop(name: "accept b")]
        defer { for l in loops { l.syncShutdown() } }
        let (lfd, port) = try listener()
        defer { close(lfd) }
        let accepted = Accepted()
        for loop in loops {
            let acceptor = RelayAcceptor(fd: lfd, loop: loop, accepted: { accepted.add($0, $1, loop.name) },
                                         backingOff: { _ in })
            #expect(try loop.submit { acceptor.start() }.wait())
        }
        let clients = (0..<40).map { _ in connectTo(port) }
        #expect(accepted.waitFor(40))
        usleep(50_000)
        #expect(accepted.count == 40)
        #expect(Set(accepted.entries.compactMap { $0.address?.port }) == Set(clients.map(\.localPort)))
        for c in clients { close(c.fd) }
        for e in accepted.entries { close(e.fd) }
    }
}

private final class Silent: RelaySocketDelegate {
    var closedCalls = 0
    func relaySocketRead(_ buffer: ByteBuffer) {}
    func relaySocketReadComplete() {}
    func relaySocketWritabilityChanged(_ writable: Bool) {}
    func relaySocketClosed() { closedCalls += 1 }
}

@Suite struct RelaySocketGiveUpTests {
    @Test func aGivenUpDescriptorStaysOpenAndUnwatched() throws {
        let loop = try RelayLoop(name: "test give up")
        defer { loop.syncShutdown() }
        var fds: [CInt] = [0, 0]
        #expect(socketpair(AF_UNIX, CInt(SOCK_STREAM.rawValue), 0, &fds) == 0)
        let delegate = Silent()
        let (given, watched, closedCalls): (CInt, Int, Int) = try loop.submit {
            let socket = RelaySocket(fd: fds[0], loop: loop, delegate: delegate)
            let before = loop.watchedCount
            let given = socket?.giveUpDescriptor() ?? -1
            #expect(socket?.isActive == false)
            #expect(socket?.giveUpDescriptor() == -1)  // once
            return (given, before - loop.watchedCount, delegate.closedCalls)
        }.wait()
        #expect(given == fds[0])
        #expect(watched == 1)
        #expect(closedCalls == 0)
        // Still open: bytes written to it reach the peer.
        var byte: UInt8 = 42
        #expect(write(given, &byte, 1) == 1)
        var got: UInt8 = 0
        #expect(read(fds[1], &got, 1) == 1)
        #expect(got == 42)
        close(given)
        close(fds[1])
    }
}
