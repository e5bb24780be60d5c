import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The open-file limit: 2,000 clients need more than the default 1,024 descriptors.
enum FileLimit {
    /// Raises the soft limit to the hard one and warns when even that is short for `clients` (each
    /// may need a server connection too).
    static func raise(forClients clients: Int, logger: Logger) {
        var rl = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl) == 0 else { return }
        if rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
        }
        let needed = UInt64(clients) * 2 + 64
        if UInt64(rl.rlim_cur) < needed {
            logger.warning("open file limit is \(rl.rlim_cur); max_connections=\(clients) may need up to \(needed) descriptors")
        }
    }
}
