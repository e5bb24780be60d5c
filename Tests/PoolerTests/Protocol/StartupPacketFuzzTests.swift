import NIOCore
import Testing
@testable import Pooler

/// Fuzz target for the first packet a client sends (StartupMessage, SSLRequest, GSSENCRequest,
/// CancelRequest): valid packets round-trip whole and split anywhere; mutated and random ones give
/// a typed error or "more bytes needed", never consume what is not theirs.
struct StartupPacketFuzzTests {
    static let keyAlphabet = Array("userdatbasoptinlc_-=\\ ".utf8)

    static func randomString(_ rng: inout FuzzRNG, maxCount: Int) -> String {
        var s = String(decoding: rng.bytes(rng.int(0...maxCount), from: keyAlphabet), as: UTF8.self)
        if rng.chance(4) { s += ["é", "日本", "\u{1F600}", "\u{301}"][rng.int(0..<4)] }
        return s
    }

    /// A valid first packet and what it decodes to.
    static func validPacket(_ rng: inout FuzzRNG) -> ([UInt8], StartupPacket) {
        var buf = ByteBufferAllocator().buffer(capacity: 128)
        switch rng.int(0..<5) {
        case 0:
            FrontendMessage.sslRequest(into: &buf)
            return (Array(buf.readableBytesView), .sslRequest)
        case 1:
            buf.writeInteger(Int32(8))
            buf.writeInteger(FrontendMessage.gssEncRequestCode)
            return (Array(buf.readableBytesView), .gssEncRequest)
        case 2:
            let pid = Int32.random(in: .min ... .max, using: &rng), key = Int32.random(in: .min ... .max, using: &rng)
            FrontendMessage.cancelRequest(processID: pid, secretKey: key, into: &buf)
            return (Array(buf.readableBytesView), .cancel(processID: pid, secretKey: key))
        default:
            var pairs: [(String, String)] = [("user", "u" + randomString(&rng, maxCount: 8))]
            var expected: [String: String] = [:]
            for _ in 0..<rng.int(0...6) {
                let key = "k" + randomString(&rng, maxCount: 6)
                pairs.append((rng.chance(5) ? "user" : key, randomString(&rng, maxCount: 12)))
            }
            pairs.shuffle(using: &rng)
            for (k, v) in pairs { expected[k] = v }
            FrontendMessage.startup(parameters: pairs, into: &buf)
            if expected["user"]?.isEmpty ?? true { return (Array(buf.readableBytesView), .startup(parameters: [:])) }
            return (Array(buf.readableBytesView), .startup(parameters: expected))
        }
    }

    /// Decodes `bytes` followed by `trailer`; checks what was consumed.
    static func decode(_ bytes: [UInt8], trailer: [UInt8] = [], seed: UInt64, iteration: Int)
        -> Result<StartupPacket, StartupPacket.DecodeError>? {
        var buffer = (bytes + trailer).buffer
        let before = buffer.readableBytes
        let result = StartupPacket.decode(&buffer)
        let consumed = before - buffer.readableBytes
        switch result {
        case nil:
            check(consumed == 0, "seed \(seed) iteration \(iteration): nothing consumed while waiting")
        case .success:
            // Exactly the packet's own length, never the bytes after it.
            let length = Int(Int32(bitPattern: UInt32(bytes[0]) << 24 | UInt32(bytes[1]) << 16
                                   | UInt32(bytes[2]) << 8 | UInt32(bytes[3])))
            check(consumed == length && consumed <= bytes.count, "seed \(seed) iteration \(iteration)")
        case .failure:
            check(consumed <= before, "seed \(seed) iteration \(iteration)")
        }
        return result
    }

    @Test(arguments: Fuzz.seeds)
    func validPacketsRoundTripAndSplitAnywhere(seed: UInt64) {
        var rng = Fuzz.announce("StartupPacket valid", seed: seed)
        for iteration in 0..<Fuzz.iterations(1_200) {
            let (bytes, expected) = Self.validPacket(&rng)
            let whole = Self.decode(bytes, trailer: rng.bytes(rng.int(0...8)), seed: seed, iteration: iteration)
            if case .startup(let p) = expected, p.isEmpty {
                check(whole == .failure(.missingUser), "seed \(seed) iteration \(iteration)")
            } else {
                check(whole == .success(expected), "seed \(seed) iteration \(iteration)")
            }
            // Any prefix of a valid packet only asks for more bytes.
            for cut in 0..<bytes.count {
                check(Self.decode(Array(bytes[..<cut]), seed: seed, iteration: iteration) == nil,
                        "seed \(seed) iteration \(iteration) cut \(cut)")
            }
        }
    }

    @Test(arguments: Fuzz.seeds)
    func mutatedAndRandomPacketsGiveTypedResults(seed: UInt64) {
        var rng = Fuzz.announce("StartupPacket mutated", seed: seed)
        for iteration in 0..<Fuzz.iterations(8_000) {
            let input: [UInt8]
            if rng.chance(5) {
                input = rng.bytes(rng.int(0..<40))
            } else {
                var packet = Self.validPacket(&rng).0
                if rng.chance(3), packet.count >= 4 {
                    // A lying length field at the front.
                    let v = UInt32(bitPattern: rng.lyingLength(real: packet.count))
                    packet.replaceSubrange(0..<4, with: [UInt8(v >> 24), UInt8((v >> 16) & 0xFF),
                                                         UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)])
                }
                input = rng.mutate(packet)
            }
            let result = Self.decode(input, seed: seed, iteration: iteration)
            if input.count < 4 { check(result == nil, "seed \(seed) iteration \(iteration)") }
        }
    }
}
