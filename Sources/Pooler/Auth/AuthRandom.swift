/// Randomness for authentication exchanges (MD5 salts, SCRAM nonces and salts).
///
/// Every type in `Auth/` takes a generator of this shape instead of calling a random source itself,
/// so tests can inject fixed bytes and the state machines stay deterministic.
public typealias AuthRandomBytes = (_ count: Int) -> [UInt8]

public enum AuthRandom {
    /// Cryptographically secure bytes from `SystemRandomNumberGenerator` (getrandom/arc4random).
    public static func system(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        var bytes = [UInt8]()
        bytes.reserveCapacity(count)
        while bytes.count < count {
            var word = generator.next()
            for _ in 0..<Swift.min(8, count - bytes.count) {
                bytes.append(UInt8(truncatingIfNeeded: word))
                word >>= 8
            }
        }
        return bytes
    }
}
