import Testing
@testable import Pooler

/// `auth_failure_delay` decisions with a fake clock (nanoseconds).
struct AuthFailureDelayTests {
    static let ms: UInt64 = 1_000_000
    static let second: UInt64 = 1_000_000_000

    @Test func offByDefaultAndWhenZero() {
        var d = AuthFailureDelay()
        #expect(d.failed(address: "10.0.0.1", now: 0) == 0)
        #expect(d.trackedAddresses == 0)
    }

    @Test func doublesPerFailureFromOneAddressUpToTheCap() {
        var d = AuthFailureDelay(baseNanos: 100 * Self.ms, maxFactor: 8)
        let delays = (0..<6).map { i in d.failed(address: "10.0.0.1", now: UInt64(i) * Self.second) }
        #expect(delays == [100, 200, 400, 800, 800, 800].map { $0 * Self.ms })
        // Another address starts at the base.
        #expect(d.failed(address: "10.0.0.2", now: 6 * Self.second) == 100 * Self.ms)
    }

    @Test func successAndQuietForgive() {
        var d = AuthFailureDelay(baseNanos: 10 * Self.ms, forgetAfterNanos: 60 * Self.second)
        _ = d.failed(address: "a", now: 0)
        #expect(d.failed(address: "a", now: Self.second) == 20 * Self.ms)
        d.succeeded(address: "a")
        #expect(d.failed(address: "a", now: 2 * Self.second) == 10 * Self.ms)
        #expect(d.failed(address: "a", now: 3 * Self.second) == 20 * Self.ms)
        // More than forgetAfter since the last failure: back to the base.
        #expect(d.failed(address: "a", now: 64 * Self.second) == 10 * Self.ms)
    }

    @Test func memoryIsBoundedByCapacity() {
        var d = AuthFailureDelay(baseNanos: Self.ms, capacity: 100)
        for i in 0..<10_000 { _ = d.failed(address: "10.0.\(i / 256).\(i % 256)", now: UInt64(i)) }
        #expect(d.trackedAddresses == 100)
        // The least recently failing address was forgotten: it starts over.
        #expect(d.failed(address: "10.0.0.0", now: 20_000) == Self.ms)
        // A recent one is remembered.
        #expect(d.failed(address: "10.0.39.15", now: 20_001) == 2 * Self.ms)
    }

    @Test func hugeSettingsSaturateInsteadOfOverflowing() {
        var d = AuthFailureDelay(baseNanos: UInt64(1) << 63, maxFactor: 32)
        _ = d.failed(address: "a", now: 0)
        #expect(d.failed(address: "a", now: 1) == UInt64.max)
        for i in 0..<200 { _ = d.failed(address: "b", now: UInt64(i)) }  // failure count stays bounded
        #expect(d.failed(address: "b", now: 500) == UInt64.max)
    }

    @Test func reloadToZeroForgetsEverything() {
        var d = AuthFailureDelay(baseNanos: Self.ms)
        _ = d.failed(address: "a", now: 0)
        d.setBase(nanos: 0)
        #expect(d.trackedAddresses == 0)
        #expect(d.failed(address: "a", now: 1) == 0)
        d.setBase(nanos: Self.ms)
        #expect(d.failed(address: "a", now: 2) == Self.ms)
    }
}
