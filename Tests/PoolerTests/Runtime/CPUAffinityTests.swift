#if canImport(Glibc)
import Glibc
#endif
import NIOPosix
import Testing
@testable import Pooler

@Suite struct CPUAffinityTests {
    @Test func appliesFromThreeCores() {
        #expect(!CPUAffinity.applies(enabled: true, cores: 2))
        #expect(CPUAffinity.applies(enabled: true, cores: 3))
        #expect(!CPUAffinity.applies(enabled: false, cores: 64))
    }

    #if os(Linux)
    /// A loop pinned to core 0 reports exactly that core in its affinity mask.
    @Test func pinsALoopThreadToOneCore() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let loop = group.next()
        #expect(CPUAffinity.pin(loops: [loop], cores: 1) == 1)
        let mask: [UInt8] = try loop.submit {
            var set = cpu_set_t()
            _ = withUnsafeMutableBytes(of: &set) { CPUAffinity.getAffinity?(0, MemoryLayout<cpu_set_t>.size, $0.baseAddress!) }
            return withUnsafeBytes(of: &set) { Array($0.prefix(2)) }
        }.wait()
        #expect(mask == [1, 0])
    }
    #endif
}
