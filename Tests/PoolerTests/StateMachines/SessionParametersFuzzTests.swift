import Testing
@testable import Pooler

/// Fuzz targets for the client-supplied text `SessionParameters` parses: libpq's `options`
/// (startup packet) and the first bytes of a SET statement (Query/Parse bodies).
struct SessionParametersFuzzTests {
    @Test(arguments: Fuzz.seeds)
    func parseOptionsTakesAnyText(seed: UInt64) {
        var rng = Fuzz.announce("SessionParameters.parseOptions", seed: seed)
        let alphabet = Array("-c -c--=\\ \t\nab_=x'\"".utf8)
        let samples = ["-c search_path=a\\ b", "--statement-timeout=5", "-cwork_mem=1MB -c", "-c =x", "\\", "-c a= b"]
        for iteration in 0..<Fuzz.iterations(8_000) {
            let raw = rng.chance(2) ? rng.bytes(rng.int(0..<32), from: alphabet)
                                    : rng.mutate(Array(samples[rng.int(0..<samples.count)].utf8))
            var text = String(decoding: raw, as: UTF8.self)
            if rng.chance(6) { text += ["é", "\u{301}", "\\\u{301}", "日"][rng.int(0..<4)] }
            for (name, _) in SessionParameters.parseOptions(text) {
                check(!name.isEmpty && !name.contains("-"), "seed \(seed) iteration \(iteration): \(text.debugDescription)")
            }
        }
    }

    @Test(arguments: Fuzz.seeds)
    func parseSetTakesAnyBytes(seed: UInt64) {
        var rng = Fuzz.announce("SessionParameters.parseSet", seed: seed)
        let alphabet = Array("SETsetTO to=;' \t\r\nx_.9DEFAULT".utf8) + [0, 0xC3, 0xA9, 0xFF]
        let samples = ["SET search_path TO 'a', 'b'", "set session TimeZone = 'UTC';", "SET x.y TO ''''", "SET a TO ;",
                       "SET LOCAL a TO 1", "SET a = 'x''y'", "SET a TO DEFAULT", "SET a TO 'é'\0tail"]
        for iteration in 0..<Fuzz.iterations(12_000) {
            let raw = rng.chance(3) ? rng.bytes(rng.int(0..<40), from: alphabet)
                                    : rng.mutate(Array(samples[rng.int(0..<samples.count)].utf8))
            let complete = rng.chance(2)
            let parsed = raw.withUnsafeBytes { SessionParameters.parseSet($0, complete: complete) }
            if let (name, _) = parsed {
                check(!name.isEmpty, "seed \(seed) iteration \(iteration)")
            }
            // A shorter prefix of the same text may be undecided, never a different SET.
            if let (name, value) = parsed, raw.count > 1 {
                let cut = rng.int(1..<raw.count)
                if let (n2, v2) = Array(raw[..<cut]).withUnsafeBytes({ SessionParameters.parseSet($0, complete: false) }) {
                    check(n2 == name && v2 == value, "seed \(seed) iteration \(iteration) cut \(cut)")
                }
            }
        }
    }
}
