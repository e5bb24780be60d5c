import NIOCore
import Testing
@testable import Pooler

/// Fuzz target for the small byte parsers of the relay (`ClientSession`'s static helpers): the
/// ParameterStatus prefix, the header of a large Query/CopyData to stream, the lone Terminate, and
/// the size a buffered message announces to `max_memory_usage`.
struct ClientSessionParsingFuzzTests {
    @Test(arguments: Fuzz.seeds)
    func relayHelpersTakeAnyBytes(seed: UInt64) {
        var rng = Fuzz.announce("ClientSession parsers", seed: seed)
        for iteration in 0..<Fuzz.iterations(3_000) {
            let status = Wire.cString("TimeZone") + Wire.cString("Europe/Berlin")
            let p = rng.chance(2) ? rng.mutate(status) : rng.bytes(rng.int(0..<24), from: [0, 0x41, 0xC3, 0xFF])
            let complete = rng.chance(2)
            let parsed = p.withUnsafeBytes { ClientSession.parseParameterStatus($0, complete: complete) }
            if p == status && complete {
                check(parsed?.0 == "TimeZone" && parsed?.1 == "Europe/Berlin", "seed \(seed) iteration \(iteration)")
            }
            if parsed != nil { check(p.contains(0), "seed \(seed) iteration \(iteration)") }

            let type = [UInt8(ascii: "Q"), UInt8(ascii: "d"), UInt8(ascii: "P")][rng.int(0..<3)]
            let threshold = 1 << 20
            var header = [type] + Wire.int32(rng.lyingLength(real: threshold + 10))
            header += rng.bytes(rng.int(0...16))
            let input = rng.chance(3) ? rng.mutate(header) : header
            let maxLength = rng.chance(2) ? 256 << 20 : rng.int(5...(2 << 20))
            do {
                if let (t, length) = try ClientSession.largeIncompleteMessage(
                    input.buffer, types: ClientSession.streamedFrontend, threshold: threshold, maxLength: maxLength) {
                    check(t == input[0] && length <= maxLength && length - 4 > threshold
                            && input.count < 1 + length, "seed \(seed) iteration \(iteration)")
                }
            } catch let error as MessageScanner.ScanError {
                guard case .badLength(_, let length) = error else { continue }
                check(length > maxLength, "seed \(seed) iteration \(iteration)")
            } catch {
                Issue.record("untyped error \(error)")
            }
            _ = ClientSession.isLoneTerminate(input.buffer)
            check(ClientSession.announcedSize(input.buffer) >= 0, "seed \(seed) iteration \(iteration)")
        }
    }
}
