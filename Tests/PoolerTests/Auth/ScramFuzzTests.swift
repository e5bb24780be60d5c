import Testing
@testable import Pooler

/// Fuzz targets for the SCRAM parsers on both sides (client-first/client-final in `ScramServer`,
/// server-first/server-final in `ScramClient`), base64 and SASLprep. Mutations of the RFC 7677
/// exchange and random attribute soup: every outcome is a typed result, and nothing but the exact
/// valid message is accepted where a proof or signature covers it.
struct ScramFuzzTests {
    static let attributeAlphabet = Array("nrcpsivemaby=,=,biws0123456789+/ABCxyz".utf8) + [0, 0x7F, 0xC3, 0xFF]
    static let verifier = RFC7677.verifier  // derived once (PBKDF2)
    static let keys = ScramServer.Keys(verifier)

    static func input(_ rng: inout FuzzRNG, from valid: String) -> [UInt8] {
        rng.chance(4) ? rng.bytes(rng.int(0..<48), from: attributeAlphabet) : rng.mutate(bytes(valid))
    }

    @Test(arguments: Fuzz.seeds)
    func serverParsesAnyClientFirst(seed: UInt64) {
        var rng = Fuzz.announce("ScramServer client-first", seed: seed)
        for iteration in 0..<Fuzz.iterations(20_000) {
            var server = ScramServer(keys: Self.keys, serverNonce: RFC7677.serverNoncePart)
            let message = Self.input(&rng, from: RFC7677.clientFirst)
            switch server.receiveClientFirst(message) {
            case .success(let serverFirst):
                // Whatever it accepted, it answers with its own nonce, salt and iterations.
                check(text(serverFirst).hasSuffix(",s=\(RFC7677.salt),i=4096"), "seed \(seed) iteration \(iteration)")
            case .failure:
                // Failed: a second message is refused too (no state left half-updated).
                check(server.receiveClientFinal(bytes(RFC7677.clientFinal)).failure != nil)
            }
        }
    }

    @Test(arguments: Fuzz.seeds)
    func serverAcceptsOnlyTheExactClientFinal(seed: UInt64) {
        var rng = Fuzz.announce("ScramServer client-final", seed: seed)
        for iteration in 0..<Fuzz.iterations(8_000) {
            var server = ScramServer(keys: Self.keys, serverNonce: RFC7677.serverNoncePart)
            check(server.receiveClientFirst(bytes(RFC7677.clientFirst)).success != nil)
            let message = Self.input(&rng, from: RFC7677.clientFinal)
            let result = server.receiveClientFinal(message)
            if message == bytes(RFC7677.clientFinal) {
                check(result.success != nil, "seed \(seed) iteration \(iteration)")
            } else {
                check(result.failure != nil, "seed \(seed) iteration \(iteration): accepted \(text(message))")
            }
        }
    }

    @Test(arguments: Fuzz.seeds)
    func clientParsesAnyServerMessages(seed: UInt64) {
        var rng = Fuzz.announce("ScramClient server-first/final", seed: seed)
        let clientKey = Base64.decode(RFC7677.clientKey)!
        for iteration in 0..<Fuzz.iterations(10_000) {
            // Passthrough: no PBKDF2 per iteration (a mutated i= may ask for billions of rounds).
            var client = ScramClient(credential: .passthrough(clientKey: clientKey, verifier: Self.verifier),
                                     username: "user", clientNonce: RFC7677.clientNonce)
            let first = Self.input(&rng, from: RFC7677.serverFirst)
            switch client.receiveServerFirst(first) {
            case .success(let clientFinal):
                if first == bytes(RFC7677.serverFirst) {
                    check(text(clientFinal) == RFC7677.clientFinal, "seed \(seed) iteration \(iteration)")
                }
                let final = rng.chance(3) ? bytes(RFC7677.serverFinal) : Self.input(&rng, from: RFC7677.serverFinal)
                let verdict = client.receiveServerFinal(final)
                if first == bytes(RFC7677.serverFirst) && final == bytes(RFC7677.serverFinal) {
                    check(verdict.failure == nil, "seed \(seed) iteration \(iteration)")
                } else if verdict.failure == nil {
                    // Accepted: only possible when the signature matches what this exchange expects.
                    check(final == bytes(RFC7677.serverFinal) || final.starts(with: bytes(RFC7677.serverFinal + ",")),
                            "seed \(seed) iteration \(iteration): accepted \(text(final)) after \(text(first))")
                }
            case .failure:
                check(client.receiveServerFinal(bytes(RFC7677.serverFinal)).failure != nil)
            }
        }
    }

    @Test(arguments: Fuzz.seeds)
    func base64DecodesOnlyCanonicalText(seed: UInt64) {
        var rng = Fuzz.announce("Base64", seed: seed)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/==".utf8) + [0, 0x80]
        for iteration in 0..<Fuzz.iterations(20_000) {
            let data = rng.bytes(rng.int(0..<40))
            check(Base64.decode(Base64.encodeBytes(data)) == data, "seed \(seed) iteration \(iteration)")
            let text = rng.chance(2) ? rng.bytes(rng.int(0..<40), from: alphabet) : rng.mutate(Base64.encodeBytes(data))
            if let decoded = Base64.decode(text) {
                check(Base64.encodeBytes(decoded) == text, "seed \(seed) iteration \(iteration)")
            }
        }
    }

    @Test(arguments: Fuzz.seeds)
    func saslprepTakesAnyBytes(seed: UInt64) {
        var rng = Fuzz.announce("SASLprep", seed: seed)
        let samples: [[UInt8]] = ["pencil", "pen\u{00A0}cil", "\u{00AD}x", "Ⅸ", "ﬁ", "\u{FEFF}", "\u{E000}", "\u{10FFFD}",
                                  "\u{0627}1", "é\u{301}"].map { Array($0.utf8) }
        for iteration in 0..<Fuzz.iterations(20_000) {
            let input: [UInt8]
            switch rng.int(0..<3) {
            case 0: input = rng.bytes(rng.int(0..<24))
            case 1: input = rng.mutate(samples[rng.int(0..<samples.count)])
            default:
                var s = String.UnicodeScalarView()
                for _ in 0..<rng.int(0..<8) {
                    if let scalar = Unicode.Scalar(UInt32(rng.int(0...0x10FFFF))) { s.append(scalar) }
                }
                input = Array(String(s).utf8)
            }
            let prepared = SASLprep.prepare(bytes: input)
            check(SASLprep.prepare(bytes: input) == prepared, "seed \(seed) iteration \(iteration)")
            if input.allSatisfy({ $0 < 0x80 }) { check(prepared == input, "seed \(seed) iteration \(iteration)") }
        }
    }
}
