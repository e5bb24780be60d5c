#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Randomness for authentication exchanges (MD5 salts, SCRAM nonces and salts).
///
/// Every type in `Auth/` takes a generator of this shape instead of calling a random source itself,
/// so tests can inject fixed bytes and the state machines stay deterministic.
public typealias AuthRandomBytes = (_ count: Int) -> [UInt8]

public enum AuthRandom {
    /// Cryptographically secure bytes from the kernel in one getrandom(2) call for the whole request
    /// (glibc's `arc4random_buf`; `SystemRandomNumberGenerator` took one call per 8 bytes, three for a
    /// SCRAM nonce).
    public static func system(_ count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        guard count > 0 else { return bytes }
        #if os(Linux) || os(macOS)
        bytes.withUnsafeMutableBytes { arc4random_buf($0.baseAddress!, count) }
        #else
        var generator = SystemRandomNumberGenerator()
        for i in 0..<count { bytes[i] = generator.next() }
        #endif
        return bytes
    }
}
