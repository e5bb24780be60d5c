#if canImport(Glibc)
import Glibc
#endif

/// Counts this process's own sockets by type (Linux): every `/proc/self/fd` entry that links to
/// `socket:[inode]`, classified by the inode tables of `/proc/net/tcp`, `tcp6` and `unix`.
enum SocketCensus {
    struct Counts: Equatable {
        var tcp = 0, tcp6 = 0, unix = 0, unknown = 0
    }

    static func ownSockets() -> Counts {
        classify(socketInodes: ownSocketInodes(),
                 tcp: inodes(procNetInet: read("/proc/net/tcp")),
                 tcp6: inodes(procNetInet: read("/proc/net/tcp6")),
                 unix: inodes(procNetUnix: read("/proc/net/unix")))
    }

    static func classify(socketInodes: [UInt64], tcp: Set<UInt64>, tcp6: Set<UInt64>, unix: Set<UInt64>) -> Counts {
        var c = Counts()
        for inode in socketInodes {
            if tcp.contains(inode) { c.tcp += 1 } else if tcp6.contains(inode) { c.tcp6 += 1 } else if unix.contains(inode) {
                c.unix += 1
            } else {
                c.unknown += 1
            }
        }
        return c
    }

    /// Inodes of `/proc/net/tcp` or `tcp6` (the tenth column; the first line is a header).
    static func inodes(procNetInet text: String) -> Set<UInt64> { column(9, of: text) }

    /// Inodes of `/proc/net/unix` (the seventh column).
    static func inodes(procNetUnix text: String) -> Set<UInt64> { column(6, of: text) }

    private static func column(_ index: Int, of text: String) -> Set<UInt64> {
        var out = Set<UInt64>()
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if fields.count > index, let inode = UInt64(fields[index]) { out.insert(inode) }
        }
        return out
    }

    /// `socket:[123]` → 123.
    static func socketInode(linkTarget: String) -> UInt64? {
        guard linkTarget.hasPrefix("socket:["), linkTarget.hasSuffix("]") else { return nil }
        return UInt64(linkTarget.dropFirst(8).dropLast())
    }

    private static func ownSocketInodes() -> [UInt64] {
        guard let dir = opendir("/proc/self/fd") else { return [] }
        defer { closedir(dir) }
        var out: [UInt64] = []
        var buf = [CChar](repeating: 0, count: 64)
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard name.first?.isNumber == true else { continue }
            let n = readlink("/proc/self/fd/\(name)", &buf, buf.count - 1)
            guard n > 0 else { continue }
            let target = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if let inode = socketInode(linkTarget: target) { out.append(inode) }
        }
        return out
    }

    private static func read(_ path: String) -> String { ProcFile.read(path) ?? "" }
}
