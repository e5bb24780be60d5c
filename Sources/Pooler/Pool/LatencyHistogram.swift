import Atomics

/// A lock-free latency histogram with logarithmic buckets (four per power of two, so a reported
/// percentile is within about 19% of the true value), for SHOW POOLS_EXTENDED.
public final class LatencyHistogram {
    static let bucketsPerOctave = 4
    static let bucketCount = 40 * bucketsPerOctave  // up to 2^40 µs
    /// `UnsafeAtomic`s (freed in `deinit`): a `ManagedAtomic` is an object, retained and released
    /// around every increment.
    private let buckets: [UnsafeAtomic<Int>]

    public init() {
        buckets = (0..<Self.bucketCount).map { _ in UnsafeAtomic<Int>.create(0) }
    }

    deinit {
        for b in buckets { b.destroy() }
    }

    /// floor(4 · log2(micros)), clamped to the buckets; integer arithmetic only (it runs twice per
    /// transaction): the octave from the highest set bit, the quarter from the next 31 bits compared
    /// with 2^(1/4), 2^(2/4) and 2^(3/4) in 1.31 fixed point (exact below 2^31 µs).
    static func bucket(for micros: Int) -> Int {
        guard micros > 1 else { return 0 }
        let octave = Int.bitWidth - 1 - micros.leadingZeroBitCount
        let mantissa = octave >= 31 ? micros >> (octave - 31) : micros << (31 - octave)  // in [2^31, 2^32)
        let quarter = mantissa >= 3_611_622_603 ? 3 : mantissa >= 3_037_000_500 ? 2 : mantissa >= 2_553_802_895 ? 1 : 0
        return min(octave * bucketsPerOctave + quarter, bucketCount - 1)
    }

    /// The upper edge (µs) of a bucket.
    static func upperBound(of bucket: Int) -> Int {
        Int(pow2(Double(bucket + 1) / Double(bucketsPerOctave)).rounded(.up))
    }

    private static func pow2(_ x: Double) -> Double { exp2(x) }

    @inline(__always)
    public func record(micros: Int) {
        buckets[Self.bucket(for: micros)].wrappingIncrement(ordering: .relaxed)
    }

    /// The value below which `fraction` of the recorded samples fall (0 when empty).
    public func percentile(_ fraction: Double) -> Int {
        let counts = buckets.map { $0.load(ordering: .relaxed) }
        let total = counts.reduce(0, +)
        guard total > 0 else { return 0 }
        let target = Int((Double(total) * fraction).rounded(.up))
        var seen = 0
        for (i, c) in counts.enumerated() {
            seen += c
            if seen >= max(1, target) { return Self.upperBound(of: i) }
        }
        return Self.upperBound(of: Self.bucketCount - 1)
    }
}

import Foundation
