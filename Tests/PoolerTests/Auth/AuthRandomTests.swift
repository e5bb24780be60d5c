import Testing
@testable import Pooler

struct AuthRandomTests {
    @Test func returnsExactlyTheRequestedCount() {
        for n in [0, 1, 4, 18, 257, 4096] {
            #expect(AuthRandom.system(n).count == n)
        }
    }

    @Test func successiveRequestsDiffer() {
        // 2^-144 chance of a false failure for two 18-byte nonces.
        #expect(AuthRandom.system(18) != AuthRandom.system(18))
    }

    @Test func fillsTheWholeBuffer() {
        // A 4 KiB request uses every byte value; a partially filled buffer would keep a run of zeros.
        let bytes = AuthRandom.system(4096)
        #expect(Set(bytes).count > 200)
        #expect(bytes.suffix(64).contains { $0 != 0 })
    }
}
