import Testing
@testable import Pooler

/// Fuzz target for `LogEscape`, which every log line passes through with client-supplied text in
/// it (user names, database names, application names from the startup packet).
struct LogSafetyFuzzTests {
    @Test(arguments: Fuzz.seeds)
    func escapedTextHasNoControlCharactersAndKeepsTheRest(seed: UInt64) {
        var rng = Fuzz.announce("LogEscape", seed: seed)
        let specials: [UInt32] = [0x0A, 0x0D, 0x09, 0x00, 0x1B, 0x7F, 0x85, 0x9F, 0x2028, 0x2029, 0x5C, 0x41, 0xE9, 0x1F600]
        for iteration in 0..<Fuzz.iterations(6_000) {
            var scalars = String.UnicodeScalarView()
            for _ in 0..<rng.int(0..<24) {
                let v = rng.chance(2) ? specials[rng.int(0..<specials.count)] : UInt32(rng.int(0...0x10FFFF))
                if let u = Unicode.Scalar(v) { scalars.append(u) }
            }
            let input = String(scalars)
            let out = LogEscape.controlCharacters(input)
            let bad = out.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) || $0.value == 0x2028 || $0.value == 0x2029 }
            check(!bad, "seed \(seed) iteration \(iteration): \(input.debugDescription) -> \(out.debugDescription)")
            // Nothing to escape: unchanged.
            if !input.unicodeScalars.contains(where: { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) || $0.value == 0x2028 || $0.value == 0x2029 }) {
                check(out == input, "seed \(seed) iteration \(iteration)")
            }
        }
    }
}
