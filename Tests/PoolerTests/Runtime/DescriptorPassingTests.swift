#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import Pooler

@Suite struct DescriptorPassingTests {
    func socketPair() -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        return (fds[0], fds[1])
    }

    /// A record and a descriptor arrive together; the received descriptor is the same open file.
    @Test func aRecordCarriesADescriptor() throws {
        let (a, b) = socketPair()
        defer { close(a); close(b) }
        var pipeFDs: [Int32] = [-1, -1]
        #expect(pipe(&pipeFDs) == 0)
        defer { close(pipeFDs[0]) }
        let record = Array("hello, new process".utf8)
        try DescriptorPassing.send(socket: a, record: record, fd: pipeFDs[1])
        close(pipeFDs[1])  // the sender lets go of its copy
        let (got, fd) = try DescriptorPassing.receive(socket: b)
        #expect(got == record)
        let received = try #require(fd)
        #expect(write(received, "x", 1) == 1)
        close(received)
        var byte: UInt8 = 0
        #expect(read(pipeFDs[0], &byte, 1) == 1 && byte == UInt8(ascii: "x"))
    }

    @Test func recordsWithoutDescriptorsAndLargeRecords() throws {
        let (a, b) = socketPair()
        defer { close(a); close(b) }
        let big = (0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0) }
        // A writer thread: the record is larger than the socket buffer.
        var thread = pthread_t()
        final class Box { let fd: Int32; let bytes: [UInt8]; init(_ fd: Int32, _ b: [UInt8]) { self.fd = fd; bytes = b } }
        let box = Unmanaged.passRetained(Box(a, big)).toOpaque()
        pthread_create(&thread, nil, { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            try? DescriptorPassing.send(socket: box.fd, record: [1, 2, 3], fd: nil)
            try? DescriptorPassing.send(socket: box.fd, record: box.bytes, fd: nil)
            return nil
        }, box)
        let first = try DescriptorPassing.receive(socket: b)
        #expect(first.record == [1, 2, 3] && first.fd == nil)
        let second = try DescriptorPassing.receive(socket: b)
        #expect(second.record == big && second.fd == nil)
        pthread_join(thread, nil)
    }

    @Test func aClosedPeerIsAnError() {
        let (a, b) = socketPair()
        close(a)
        defer { close(b) }
        #expect(throws: DescriptorPassing.Failure.closed) { try DescriptorPassing.receive(socket: b) }
    }
}
