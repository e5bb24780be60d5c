import Foundation
import NIOCore
import TestSupport
import Testing

/// Seeded randomized ("fuzz") tests of everything that parses bytes a peer sends.
///
/// Each target runs a bounded number of iterations per seed, so it fits in `swift test`: the fixed
/// seeds replay the same inputs on every machine, the clock-derived one explores new inputs on each
/// run. The seed is the test's argument (shown with any failed expectation) and is printed before
/// a target starts, so an input that traps can be replayed: `PGDM_FUZZ_SEED=<seed> swift test
/// --filter <Target>`. `PGDM_FUZZ_SCALE=<n>` multiplies every iteration count (longer runs by hand).
enum Fuzz {
    static let timeSeed = UInt64(Date().timeIntervalSince1970 * 1000)

    static var seeds: [UInt64] {
        if let text = ProcessInfo.processInfo.environment["PGDM_FUZZ_SEED"], let seed = UInt64(text) { return [seed] }
        return [1, 2, 3, 0x5EED_F00D, timeSeed]
    }

    static func iterations(_ base: Int) -> Int {
        let scale = ProcessInfo.processInfo.environment["PGDM_FUZZ_SCALE"].flatMap(Int.init) ?? 1
        return base * max(1, scale)
    }

    /// Printed before a target runs: a trap ends the test process without an expectation message.
    static func announce(_ target: String, seed: UInt64) -> FuzzRNG {
        FileHandle.standardError.write(Data("fuzz \(target): seed \(seed) (PGDM_FUZZ_SEED=\(seed) to replay)\n".utf8))
        return FuzzRNG(seed: seed)
    }
}

/// The fuzz targets' generator: TestSupport's SplitMix64 (the same sequence for a seed on every
/// platform) with the draws the targets need.
typealias FuzzRNG = SplitMix64

extension SplitMix64 {
    mutating func int(_ range: Range<Int>) -> Int { Int.random(in: range, using: &self) }
    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &self) }
    mutating func chance(_ oneIn: Int) -> Bool { int(0..<oneIn) == 0 }

    mutating func bytes(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255, using: &self) }
    }

    /// Bytes drawn from `alphabet` (to hit the characters a parser looks for).
    mutating func bytes(_ count: Int, from alphabet: [UInt8]) -> [UInt8] {
        (0..<count).map { _ in alphabet[int(0..<alphabet.count)] }
    }

    /// Length values that break parsers: negative, zero, just below/above the minimum and the
    /// real size, the largest Int32.
    mutating func lyingLength(real: Int) -> Int32 {
        let candidates: [Int] = [0, 1, 3, 4, 5, 7, 8, 9, real - 1, real, real + 1, real + 4, -1, -4,
                                 Int(Int32.min), Int(Int32.max), 0x7FFF_FFF0, 1 << 24, 10_000, 10_001, 256 << 20]
        return Int32(truncatingIfNeeded: candidates[int(0..<candidates.count)])
    }

    /// One to three random mutations of `input`: bit flips, random bytes, truncation, insertion,
    /// deletion, duplication, or a lying big-endian Int32 written at a random offset.
    mutating func mutate(_ input: [UInt8]) -> [UInt8] {
        var out = input
        for _ in 0..<int(1...3) {
            switch int(0..<8) {
            case 0 where !out.isEmpty:
                let i = int(0..<out.count)
                out[i] ^= UInt8(1) << UInt8(int(0..<8))
            case 1 where !out.isEmpty:
                out[int(0..<out.count)] = UInt8.random(in: 0...255, using: &self)
            case 2:
                out = Array(out.prefix(int(0...out.count)))
            case 3:
                out.insert(contentsOf: bytes(int(1...8)), at: int(0...out.count))
            case 4 where !out.isEmpty:
                let start = int(0..<out.count)
                out.removeSubrange(start..<min(out.count, start + int(1...8)))
            case 5 where !out.isEmpty:
                let start = int(0..<out.count)
                let piece = out[start..<min(out.count, start + int(1...16))]
                out.insert(contentsOf: piece, at: int(0...out.count))
            case 6 where out.count >= 4:
                let at = int(0...(out.count - 4))
                let v = UInt32(bitPattern: lyingLength(real: out.count - at))
                out[at] = UInt8(v >> 24); out[at + 1] = UInt8((v >> 16) & 0xFF)
                out[at + 2] = UInt8((v >> 8) & 0xFF); out[at + 3] = UInt8(v & 0xFF)
            default:
                out.append(contentsOf: bytes(int(0...4)))
            }
        }
        return out
    }

    /// Cut points splitting `count` bytes into 1–6 pieces.
    mutating func cuts(_ count: Int) -> [Int] {
        guard count > 1 else { return [] }
        return (0..<int(0...5)).map { _ in int(1..<count) }.sorted()
    }
}

extension Array where Element == UInt8 {
    /// The pieces of this array at `cuts` (sorted offsets; empty pieces allowed).
    func pieces(at cuts: [Int]) -> [[UInt8]] {
        var out: [[UInt8]] = []
        var start = 0
        for c in cuts {
            out.append(Array(self[start..<c]))
            start = c
        }
        out.append(Array(self[start...]))
        return out
    }

    var buffer: ByteBuffer {
        var b = ByteBufferAllocator().buffer(capacity: count)
        b.writeBytes(self)
        return b
    }
}

/// Typed protocol messages (Byte1 type, Int32 length including itself, body).
enum Wire {
    static func message(_ type: UInt8, _ body: [UInt8]) -> [UInt8] {
        let length = UInt32(body.count + 4)
        return [type, UInt8(length >> 24), UInt8((length >> 16) & 0xFF), UInt8((length >> 8) & 0xFF),
                UInt8(length & 0xFF)] + body
    }

    static func cString(_ s: String) -> [UInt8] { Array(s.utf8) + [0] }

    static func int32(_ v: Int32) -> [UInt8] {
        let u = UInt32(bitPattern: v)
        return [UInt8(u >> 24), UInt8((u >> 16) & 0xFF), UInt8((u >> 8) & 0xFF), UInt8(u & 0xFF)]
    }

    static func int16(_ v: Int16) -> [UInt8] {
        let u = UInt16(bitPattern: v)
        return [UInt8(u >> 8), UInt8(u & 0xFF)]
    }

    /// A plausible message of a random type: valid frontend and backend bodies, or random ones.
    static func randomMessage(_ rng: inout FuzzRNG) -> [UInt8] {
        let t = { (c: Character) in c.asciiValue ?? 0 }
        switch rng.int(0..<12) {
        case 0: return message(t("Q"), cString("SELECT \(rng.int(0..<1000))"))
        case 1: return message(t("P"), cString(rng.chance(2) ? "" : "s\(rng.int(0..<4))") + cString("SELECT $1")
                               + int16(1) + int32(23))
        case 2: return message(t("B"), cString("") + cString("s1") + int16(0) + int16(1) + int32(1) + [0x31] + int16(0))
        case 3: return message(t("D"), [t("S")] + cString("s\(rng.int(0..<4))"))
        case 4: return message(t("E"), cString("") + int32(0))
        case 5: return message(t("S"), [])
        case 6: return message(t("Z"), [[t("I"), t("T"), t("E")][rng.int(0..<3)]])
        case 7: return message(t("C"), cString(["SELECT 1", "SET", "BEGIN", "COMMIT", "DISCARD ALL"][rng.int(0..<5)]))
        case 8: return message(t("d"), rng.bytes(rng.int(0..<64)))
        case 9: return message(t("E"), [t("S")] + cString("ERROR") + [t("C")] + cString("42P01") + [t("M")]
                               + cString("boom") + [0])
        case 10: return message(t("S"), cString("TimeZone") + cString("UTC"))
        default: return message(UInt8.random(in: 0...255, using: &rng), rng.bytes(rng.int(0..<32)))
        }
    }

    /// A stream of 1–8 random messages, sometimes mutated (lying lengths and all).
    static func randomStream(_ rng: inout FuzzRNG, mutate: Bool) -> [UInt8] {
        var out: [UInt8] = []
        for _ in 0..<rng.int(1...8) { out += randomMessage(&rng) }
        return mutate && rng.chance(2) ? rng.mutate(out) : out
    }
}

/// `#expect` for the inner loops of fuzz targets: it only builds an issue when the condition fails
/// (`#expect` records its operands on every call, which in a debug build costs more than the code
/// under test).
func check(_ condition: Bool, _ message: @autoclosure () -> String = "", sourceLocation: SourceLocation = #_sourceLocation) {
    if !condition { Issue.record(Comment(rawValue: message()), sourceLocation: sourceLocation) }
}
