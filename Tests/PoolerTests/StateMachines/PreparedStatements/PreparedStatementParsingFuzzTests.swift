import NIOCore
import Testing
@testable import Pooler

/// Fuzz target for the bytes the prepared-statement rewriter decodes: Parse, Bind, Describe and
/// Close bodies from the client (mutated, lying counts, missing terminators) and any backend
/// message. Every message gets `.ok` or `.malformed`, and what the rewriter emits is always a
/// stream of whole messages.
struct PreparedStatementParsingFuzzTests {
    static func body(_ rng: inout FuzzRNG) -> (UInt8, [UInt8]) {
        let t = { (c: Character) in c.asciiValue ?? 0 }
        let name = rng.chance(3) ? "" : "s\(rng.int(0..<4))"
        let valid: (UInt8, [UInt8])
        switch rng.int(0..<8) {
        case 0: valid = (t("P"), Wire.cString(name) + Wire.cString("SELECT $1") + Wire.int16(1) + Wire.int32(23))
        case 1: valid = (t("B"), Wire.cString("") + Wire.cString(name) + Wire.int16(0) + Wire.int16(1) + Wire.int32(1)
                                 + [0x31] + Wire.int16(0))
        case 2: valid = (t("D"), [rng.chance(2) ? t("S") : t("P")] + Wire.cString(name))
        case 3: valid = (t("C"), [rng.chance(2) ? t("S") : t("P")] + Wire.cString(name))
        case 4: valid = (t("E"), Wire.cString("") + Wire.int32(0))
        case 5: valid = (t("S"), [])
        case 6: valid = (t("Q"), Wire.cString("SELECT 1"))
        default: valid = (t("H"), [])
        }
        if rng.chance(2) { return valid }
        if rng.chance(4), valid.0 == t("P") {
            // A parameter count that lies about the OIDs that follow.
            let count = Int16(truncatingIfNeeded: [0, 1, 2, 0x7FFF, -1][rng.int(0..<5)])
            return (valid.0, Wire.cString(name) + Wire.cString("SELECT 1") + Wire.int16(count) + rng.bytes(rng.int(0...8)))
        }
        return (valid.0, rng.mutate(valid.1))
    }

    /// The whole of `bytes` splits into complete messages.
    static func isWholeMessages(_ bytes: ByteBuffer) -> Bool {
        var b = bytes
        while b.readableBytes > 0 {
            guard let next = try? MessageFramer.next(&b, maxLength: 1 << 30), next != nil else { return false }
        }
        return true
    }

    @Test(arguments: Fuzz.seeds)
    func rewriterTakesAnyMessages(seed: UInt64) {
        var rng = Fuzz.announce("PreparedStatementRewriter", seed: seed)
        let backendTypes = Array("123nstTCDEIZSNAKsV".utf8)
        for iteration in 0..<Fuzz.iterations(800) {
            let cache = PreparedStatementCache(capacity: rng.int(1...4))
            var rewriter = PreparedStatementRewriter(cache: cache)
            let server = ServerStatements(capacity: rng.int(1...3))
            for step in 0..<30 {
                if rng.chance(3) {
                    let type = rng.chance(5) ? UInt8.random(in: 0...255, using: &rng) : backendTypes[rng.int(0..<backendTypes.count)]
                    var body = rng.bytes(rng.int(0..<12))
                    if type == UInt8(ascii: "Z") { body = [Array("ITE".utf8)[rng.int(0..<3)]] }
                    var toClient = ByteBufferAllocator().buffer(capacity: 64)
                    rewriter.serverMessage(type: type, body: body.buffer, toClient: &toClient)
                    check(Self.isWholeMessages(toClient), "seed \(seed) iteration \(iteration) step \(step)")
                    continue
                }
                let (type, body) = Self.body(&rng)
                var toServer = ByteBufferAllocator().buffer(capacity: 64)
                var toClient = ByteBufferAllocator().buffer(capacity: 64)
                let result = rewriter.clientMessage(type: type, body: body.buffer, server: server,
                                                    toServer: &toServer, toClientNow: &toClient)
                switch result {
                case .ok:
                    check(Self.isWholeMessages(toServer) && Self.isWholeMessages(toClient),
                            "seed \(seed) iteration \(iteration) step \(step)")
                case .malformed:
                    break  // the session ends with 08P01
                }
                if rng.chance(10) { _ = rewriter.serverReleased() }
            }
        }
    }

    @Test(arguments: Fuzz.seeds)
    func simpleQueryDetectorTakesAnyText(seed: UInt64) {
        var rng = Fuzz.announce("PreparedStatementRewriter.simpleQuery", seed: seed)
        let alphabet = Array("DEALLOCATE deallocate PREPARE all ALL DISCARD \"\";\t\n x".utf8) + [0xC3, 0xA9]
        for iteration in 0..<Fuzz.iterations(8_000) {
            var rewriter = PreparedStatementRewriter(cache: PreparedStatementCache(capacity: 2))
            let sql = String(decoding: rng.bytes(rng.int(0..<40), from: alphabet), as: UTF8.self)
            var out = ByteBufferAllocator().buffer(capacity: 64)
            let action = rewriter.simpleQuery(sql)
            PreparedStatementRewriter.writeLocalReply(action, transactionStatus: UInt8(ascii: "T"), into: &out)
            check(Self.isWholeMessages(out), "seed \(seed) iteration \(iteration): \(sql.debugDescription)")
        }
    }
}
