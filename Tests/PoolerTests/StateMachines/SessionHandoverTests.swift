import Testing
@testable import Pooler

@Suite struct SessionHandoverTests {
    static let sample = SessionHandover(
        processID: 12345, secretKey: -987654, connectedAtUptimeNanos: 123_456_789_012, database: "example_db",
        user: "app", applicationName: "psql", peer: "127.0.0.1:5555", transactionCount: 7, queryCount: 42,
        parameters: ["TimeZone": "Asia/Tokyo", "DateStyle": "ISO, DMY", "application_name": "psql"],
        baseline: ["TimeZone": "UTC", "DateStyle": "ISO, MDY"], extendedClient: true,
        statements: [.init(name: "s1", query: "SELECT $1::int", parameterTypes: [23]),
                     .init(name: "ünïcode", query: "SELECT 'ё'", parameterTypes: [])],
        unnamedParse: [0x50, 0, 0, 0, 8, 0, 0, 0], pendingInput: Array("Q\0\0\0\u{d}SELECT 1\0".utf8))

    @Test func roundTrips() throws {
        let bytes = Self.sample.encode()
        #expect(try SessionHandover.decode(bytes) == Self.sample)
        var bare = Self.sample
        bare.unnamedParse = nil
        bare.statements = []
        bare.parameters = [:]
        bare.pendingInput = []
        #expect(try SessionHandover.decode(bare.encode()) == bare)
    }

    /// Every truncation is an error, never a trap or a half session.
    @Test func everyTruncationIsRejected() {
        let bytes = Self.sample.encode()
        for n in 0..<bytes.count {
            #expect(throws: SessionHandover.DecodeError.self) { try SessionHandover.decode(Array(bytes.prefix(n))) }
        }
        #expect(throws: SessionHandover.DecodeError.trailingBytes) { try SessionHandover.decode(bytes + [0]) }
    }

    @Test func wrongMagicOrVersionIsRejected() {
        var bytes = Self.sample.encode()
        bytes[0] ^= 0xff
        #expect(throws: SessionHandover.DecodeError.badMagic) { try SessionHandover.decode(bytes) }
        bytes = Self.sample.encode()
        bytes[5] = 9
        #expect(throws: SessionHandover.DecodeError.unsupportedVersion(9)) { try SessionHandover.decode(bytes) }
    }

    /// Seeded mutations (bit flips, lying lengths, random bytes): decode either returns a session or
    /// throws; it never traps or allocates by a length it was not given bytes for.
    @Test(arguments: [1, 2, 3, 4, 5] as [UInt64])
    func mutationsNeverTrap(seed: UInt64) {
        var rng = SplitMix(seed: seed)
        let base = Self.sample.encode()
        for _ in 0..<2_000 {
            var b = base
            switch rng.next() % 4 {
            case 0:
                for _ in 0..<(1 + Int(rng.next() % 4)) { b[Int(rng.next() % UInt64(b.count))] ^= UInt8(1 << (rng.next() % 8)) }
            case 1:
                let at = Int(rng.next() % UInt64(b.count - 4))
                for i in 0..<4 { b[at + i] = 0xff }
            case 2:
                b = (0..<Int(rng.next() % 200)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            default:
                b = Array(b.prefix(Int(rng.next() % UInt64(b.count)))) + [UInt8(truncatingIfNeeded: rng.next())]
            }
            _ = try? SessionHandover.decode(b)
        }
    }

    struct SplitMix {
        var state: UInt64
        init(seed: UInt64) { state = seed }
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }
}
