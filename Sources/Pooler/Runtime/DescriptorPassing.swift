#if canImport(Glibc)
import Glibc
#endif

/// Sends and receives one record with an optional file descriptor over a connected Unix stream
/// socket (SCM_RIGHTS): the transport of a binary upgrade's session handover. A record is a u32
/// big-endian length and that many bytes; the descriptor rides with the record's first byte, so a
/// receiver never gets a descriptor without its record. Blocking calls, for a dedicated thread.
enum DescriptorPassing {
    enum Failure: Error, Equatable {
        case closed
        case tooLarge(Int)
        case system(String, Int32)
    }

    /// The largest record accepted (a session with its prepared statements).
    static let maxRecord = 80 << 20

    /// Sends `record` with `fd` (which the receiver gets a duplicate of; the caller still owns its own).
    static func send(socket: Int32, record: [UInt8], fd: Int32?) throws {
        guard record.count <= maxRecord else { throw Failure.tooLarge(record.count) }
        var header = [UInt8](repeating: 0, count: 4)
        let n = UInt32(record.count)
        header[0] = UInt8(n >> 24); header[1] = UInt8((n >> 16) & 0xff)
        header[2] = UInt8((n >> 8) & 0xff); header[3] = UInt8(n & 0xff)
        let whole = header + record
        var sent = 0
        // The first sendmsg carries the descriptor (and at least the header's first byte).
        try whole.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            var iov = iovec(iov_base: UnsafeMutableRawPointer(mutating: base), iov_len: raw.count)
            let controlSize = fd == nil ? 0 : cmsgSpace(MemoryLayout<Int32>.size)
            var control = [UInt8](repeating: 0, count: max(controlSize, 1))
            let r: Int = control.withUnsafeMutableBytes { cbuf in
                withUnsafeMutablePointer(to: &iov) { iovp in
                    var msg = msghdr()
                    msg.msg_iov = iovp
                    msg.msg_iovlen = 1
                    if let fd, let cbase = cbuf.baseAddress {
                        msg.msg_control = cbase
                        msg.msg_controllen = controlSize
                        let cmsg = cbase.assumingMemoryBound(to: cmsghdr.self)
                        cmsg.pointee.cmsg_level = SOL_SOCKET
                        cmsg.pointee.cmsg_type = Int32(SCM_RIGHTS)
                        cmsg.pointee.cmsg_len = cmsgLen(MemoryLayout<Int32>.size)
                        (cbase + cmsgHeaderSize).storeBytes(of: fd, as: Int32.self)
                    }
                    return sendmsgRetrying(socket, &msg)
                }
            }
            guard r > 0 else { throw r == 0 ? Failure.closed : Failure.system("sendmsg", errno) }
            sent = r
        }
        while sent < whole.count {
            let r = whole[sent...].withUnsafeBytes { raw in Glibc.send(socket, raw.baseAddress, raw.count, Int32(MSG_NOSIGNAL)) }
            if r < 0 && errno == EINTR { continue }
            guard r > 0 else { throw r == 0 ? Failure.closed : Failure.system("send", errno) }
            sent += r
        }
    }

    /// Receives one record and the descriptor sent with it (nil when none came).
    static func receive(socket: Int32) throws -> (record: [UInt8], fd: Int32?) {
        var header = [UInt8](repeating: 0, count: 4)
        var fd: Int32?
        var got = 0
        // The first read can carry the descriptor.
        let controlSize = cmsgSpace(MemoryLayout<Int32>.size)
        var control = [UInt8](repeating: 0, count: controlSize)
        let r: Int = header.withUnsafeMutableBytes { hbuf in
            control.withUnsafeMutableBytes { cbuf in
                var iov = iovec(iov_base: hbuf.baseAddress, iov_len: 4)
                return withUnsafeMutablePointer(to: &iov) { iovp in
                    var msg = msghdr()
                    msg.msg_iov = iovp
                    msg.msg_iovlen = 1
                    msg.msg_control = cbuf.baseAddress
                    msg.msg_controllen = controlSize
                    var n: Int
                    repeat { n = recvmsg(socket, &msg, Int32(MSG_CMSG_CLOEXEC)) } while n < 0 && errno == EINTR
                    if n > 0, msg.msg_controllen >= cmsgLen(MemoryLayout<Int32>.size), let cbase = cbuf.baseAddress {
                        let cmsg = cbase.assumingMemoryBound(to: cmsghdr.self)
                        if cmsg.pointee.cmsg_level == SOL_SOCKET && cmsg.pointee.cmsg_type == Int32(SCM_RIGHTS) {
                            fd = (cbase + cmsgHeaderSize).load(as: Int32.self)
                        }
                    }
                    return n
                }
            }
        }
        guard r > 0 else {
            throw r == 0 ? Failure.closed : Failure.system("recvmsg", errno)
        }
        got = r
        do {
            try readExactly(socket, into: &header, from: got)
            let length = header.reduce(0) { ($0 << 8) | Int($1) }
            guard length <= maxRecord else { throw Failure.tooLarge(length) }
            var record = [UInt8](repeating: 0, count: length)
            try readExactly(socket, into: &record, from: 0)
            return (record, fd)
        } catch {
            if let fd { close(fd) }
            throw error
        }
    }

    private static func readExactly(_ socket: Int32, into buffer: inout [UInt8], from start: Int) throws {
        var got = start
        while got < buffer.count {
            let r = buffer.withUnsafeMutableBytes { raw in recv(socket, raw.baseAddress! + got, raw.count - got, 0) }
            if r < 0 && errno == EINTR { continue }
            guard r > 0 else { throw r == 0 ? Failure.closed : Failure.system("recv", errno) }
            got += r
        }
    }

    private static func sendmsgRetrying(_ socket: Int32, _ msg: inout msghdr) -> Int {
        var r: Int
        repeat { r = sendmsg(socket, &msg, Int32(MSG_NOSIGNAL)) } while r < 0 && errno == EINTR
        return r
    }

    // CMSG_* macros are not imported: the same arithmetic (glibc aligns to size_t).
    private static let cmsgAlign = MemoryLayout<Int>.size
    private static func align(_ n: Int) -> Int { (n + cmsgAlign - 1) & ~(cmsgAlign - 1) }
    private static var cmsgHeaderSize: Int { align(MemoryLayout<cmsghdr>.size) }
    private static func cmsgLen(_ n: Int) -> Int { cmsgHeaderSize + n }
    private static func cmsgSpace(_ n: Int) -> Int { cmsgHeaderSize + align(n) }
}
