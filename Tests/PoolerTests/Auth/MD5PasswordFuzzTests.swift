import Testing
@testable import Pooler

/// Fuzz target for the MD5 password response a client sends: any bytes, any length; only the exact
/// response (with or without its NUL) is accepted.
struct MD5PasswordFuzzTests {
    @Test(arguments: Fuzz.seeds)
    func onlyTheExactResponseIsAccepted(seed: UInt64) {
        var rng = Fuzz.announce("MD5Password.verify", seed: seed)
        let hash = MD5Password.hash(password: "md5pass", user: "u")
        for iteration in 0..<Fuzz.iterations(10_000) {
            let salt = rng.bytes(4)
            let valid = Array(MD5Password.challengeResponse(md5Hash: hash, salt: salt).utf8)
            let response = rng.chance(3) ? rng.bytes(rng.int(0..<48)) : rng.mutate(valid + [0])
            let accepted = MD5Password.verify(clientResponse: response, storedHash: hash, salt: salt)
            check(accepted == (response == valid || response == valid + [0]), "seed \(seed) iteration \(iteration)")
        }
    }
}
