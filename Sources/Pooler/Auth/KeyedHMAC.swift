import Crypto

/// HMAC-SHA-256 (RFC 2104) with the key absorbed once: the inner and outer SHA-256 states after
/// `K XOR ipad` and `K XOR opad` are kept, so a MAC costs two hashes of the message-sized parts.
///
/// Used for the two per-login MACs of a SCRAM exchange (`ScramServer.Keys`). swift-crypto's
/// `HMAC<SHA256>` computes the same, but its `update(data:)` is not specialisable from outside the
/// module and went through `DataProtocol` generics at a few microseconds per login; `SHA256`'s
/// inlinable `update` does not. `KeyedHMACTests` checks it against `HMAC<SHA256>`.
struct KeyedHMAC {
    private static let blockSize = 64
    private let inner: SHA256
    private let outer: SHA256

    init(key: [UInt8]) {
        // Keys longer than the block are hashed first (RFC 2104 §2); shorter ones are zero-padded.
        var block = key.count > Self.blockSize ? SHA256.hash(data: key).byteArray : key
        block += [UInt8](repeating: 0, count: Self.blockSize - block.count)
        var i = SHA256(), o = SHA256()
        i.update(data: block.map { $0 ^ 0x36 })
        o.update(data: block.map { $0 ^ 0x5c })
        inner = i
        outer = o
    }

    func mac(_ message: [UInt8]) -> [UInt8] {
        var i = inner
        i.update(data: message)
        let innerDigest = i.finalize()
        var o = outer
        innerDigest.withUnsafeBytes { o.update(bufferPointer: $0) }
        return o.finalize().byteArray
    }
}

extension Digest {
    /// The digest as an array, copied in one go (`Array(digest)` walks it byte by byte through its
    /// generic `Sequence` iterator: ~1,800 instructions for 32 bytes instead of ~100).
    var byteArray: [UInt8] { withUnsafeBytes { Array($0) } }
}

extension HashedAuthenticationCode {
    /// The MAC as an array, copied in one go (see `Digest.byteArray`).
    var byteArray: [UInt8] { withUnsafeBytes { Array($0) } }
}
