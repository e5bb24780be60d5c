import NIOCore
import Testing
@testable import Pooler

struct ServerReuseTests {
    static let now = NIODeadline.uptimeNanoseconds(10_000_000_000)

    static func verdict(broken: Bool = false, cancelled: Bool = false, closed: Bool = false, epoch: Int = 1,
                        poolEpoch: Int = 1, expiresIn seconds: Int64? = 60) -> ServerReuse {
        ServerReuse.verdict(broken: broken, cancelled: cancelled, closed: closed, epoch: epoch, poolEpoch: poolEpoch,
                            expiresAt: seconds.map { now + .seconds($0) }, now: now)
    }

    @Test func aHealthyServerIsReusable() {
        #expect(Self.verdict() == .reusable)
        #expect(Self.verdict(expiresIn: nil) == .reusable)  // no server_lifetime
        #expect(Self.verdict(epoch: 2, poolEpoch: 1) == .reusable)
    }

    @Test func eachReasonNotToReuse() {
        #expect(Self.verdict(closed: true) == .closed)
        #expect(Self.verdict(broken: true) == .broken)
        #expect(Self.verdict(cancelled: true) == .cancelled)
        #expect(Self.verdict(epoch: 1, poolEpoch: 2) == .staleEpoch)
        #expect(Self.verdict(expiresIn: -1) == .expired)
    }

    @Test func aClosedServerIsClosedWhateverElse() {
        #expect(Self.verdict(broken: true, cancelled: true, closed: true, epoch: 0, poolEpoch: 3, expiresIn: -5) == .closed)
    }
}
