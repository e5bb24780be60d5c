#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// `worker_cpu_affinity_pinning`: each event-loop thread bound to its own CPU core (event loop i to
/// core i), on hosts with at least three cores — with fewer, the pooler shares the cores with
/// PostgreSQL and the clients, and pinning would only get in their way (the reference's rule).
enum CPUAffinity {
    static let minimumCores = 3

    /// Whether pinning applies on this host.
    static func applies(enabled: Bool, cores: Int) -> Bool { enabled && cores >= minimumCores }

    /// Pins each loop's thread to core `index % cores`; returns how many loops were pinned.
    @discardableResult
    static func pin(loops: [EventLoop], cores: Int) -> Int {
        #if os(Linux)
        var pinned = 0
        for (i, loop) in loops.enumerated() {
            let core = i % max(1, cores)
            let ok = try? loop.submit { pinCurrentThread(to: core) }.wait()
            if ok == true { pinned += 1 }
        }
        return pinned
        #else
        return 0
        #endif
    }

    #if os(Linux)
    /// glibc's sched_setaffinity/sched_getaffinity (Swift's Glibc module leaves the _GNU_SOURCE
    /// declarations out), looked up once.
    typealias AffinityCall = @convention(c) (pid_t, Int, UnsafeMutableRawPointer) -> Int32
    static func libc(_ name: String) -> AffinityCall? {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), name) else { return nil }
        return unsafeBitCast(sym, to: AffinityCall.self)
    }
    static let setAffinity = libc("sched_setaffinity")
    static let getAffinity = libc("sched_getaffinity")

    /// Binds the calling thread to one core (thread id 0 = the caller).
    static func pinCurrentThread(to core: Int) -> Bool {
        var set = cpu_set_t()
        let size = MemoryLayout<cpu_set_t>.size
        guard core >= 0, core < size * 8 else { return false }
        withUnsafeMutableBytes(of: &set) { raw in
            raw[core / 8] |= UInt8(1) << UInt8(core % 8)
        }
        guard let setAffinity else { return false }
        return withUnsafeMutableBytes(of: &set) { setAffinity(0, size, $0.baseAddress!) } == 0
    }
    #endif
}
