import NIOCore
import Testing
@testable import Pooler

/// Fuzz target for what a server (or something posing as one) sends during the pooler's login to
/// it: authentication requests with lying codes and short bodies, parameter statuses without
/// terminators, key data of any length, errors. Every step is a typed action; after `.fail` or
/// `.ready` nothing more is accepted.
struct BackendLoginStateMachineFuzzTests {
    static func message(_ rng: inout FuzzRNG) -> (UInt8, [UInt8]) {
        let t = { (c: Character) in c.asciiValue ?? 0 }
        switch rng.int(0..<9) {
        case 0: return (t("R"), Wire.int32([0, 3, 5, 10, 11, 12, 7, -1][rng.int(0..<8)]) + rng.bytes(rng.int(0...6)))
        case 1: return (t("R"), Wire.int32(10) + Wire.cString("SCRAM-SHA-256") + [0])
        case 2: return (t("R"), Wire.int32(11) + rng.mutate(bytes(RFC7677.serverFirst)))
        case 3: return (t("R"), Wire.int32(12) + rng.mutate(bytes(RFC7677.serverFinal)))
        case 4: return (t("S"), rng.mutate(Wire.cString("TimeZone") + Wire.cString("UTC")))
        case 5: return (t("K"), rng.bytes(rng.int(0...12)))
        case 6: return (t("Z"), [t("I")])
        case 7: return (t("E"), rng.mutate([t("C")] + Wire.cString("28P01") + [0]))
        default: return (UInt8.random(in: 0...255, using: &rng), rng.bytes(rng.int(0...8)))
        }
    }

    @Test(arguments: Fuzz.seeds)
    func loginTakesAnyServerMessages(seed: UInt64) {
        var rng = Fuzz.announce("BackendLoginStateMachine", seed: seed)
        let clientKey = Base64.decode(RFC7677.clientKey)!
        let credentials: [BackendCredential] = [.none, .plaintext("pencil"), .md5Hash(MD5Password.hash(password: "x", user: "u")),
                                                .scramPassthrough(verifier: RFC7677.verifier.description)]
        for iteration in 0..<Fuzz.iterations(4_000) {
            let credential = credentials[rng.int(0..<credentials.count)]
            var isPlaintext = false
            if case .plaintext = credential { isPlaintext = true }
            var machine = BackendLoginStateMachine(user: "user", credential: credential,
                                                   clientKey: rng.chance(2) ? clientKey : nil)
            var ended = false
            for step in 0..<8 {
                var (type, body) = Self.message(&rng)
                // Keep PBKDF2 out of the loop: a cleartext credential meets SCRAM only with the
                // fixed iteration count.
                if type == UInt8(ascii: "R"), body.count >= 4, body[3] == 11, isPlaintext {
                    body = Wire.int32(11) + bytes(RFC7677.serverFirst)
                }
                let action = machine.receive(type: type, body: body.buffer)
                if ended {
                    guard case .fail = action else {
                        Issue.record("seed \(seed) iteration \(iteration) step \(step): accepted a message after the end")
                        break
                    }
                }
                switch action {
                case .fail, .ready: ended = true
                case .send, .wait: break
                }
            }
        }
    }
}
