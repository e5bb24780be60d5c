import Testing
@testable import Pooler

@Suite struct HandshakeLimiterTests {
    let ms: Int64 = 1_000_000

    @Test func oneHundredPerSecondIsOneEveryTenMilliseconds() {
        var p = HandshakeLimiter.Pacing(perSecond: 100)
        #expect(p.reserve(now: 0) == 0)
        #expect(p.reserve(now: 1 * ms) == 9 * ms)   // next window
        #expect(p.reserve(now: 2 * ms) == 18 * ms)  // the one after
        #expect(p.reserve(now: 30 * ms) == 0)       // the queue has drained by then
        #expect(p.reserve(now: 30 * ms) == 10 * ms)
    }

    @Test func threeHundredPerSecondIsThreePerTenMilliseconds() {
        var p = HandshakeLimiter.Pacing(perSecond: 300)
        let starts = (0..<9).map { _ in p.reserve(now: 0) }
        #expect(starts.first == 0)
        #expect(starts == starts.sorted())
        #expect(starts.last! < 30 * ms)  // nine take three windows, not longer
        // No 10 ms span ever holds more than 3 starts.
        for s in starts { #expect(starts.filter { $0 >= s && $0 < s + 10 * ms }.count <= 3) }
    }

    @Test func idleTimeIsNotBanked() {
        var p = HandshakeLimiter.Pacing(perSecond: 200)  // one every 5 ms
        _ = p.reserve(now: 0)
        let later: Int64 = 10_000 * ms
        #expect(p.reserve(now: later) == 0)
        #expect(p.reserve(now: later) == 5 * ms)
    }

    @Test func atLeastOnePerWindowBelowOneHundred() {
        var p = HandshakeLimiter.Pacing(perSecond: 50)
        #expect(p.interval == 10 * ms)
        #expect(p.reserve(now: 0) == 0)
        #expect(p.reserve(now: 0) == 10 * ms)
    }
}
