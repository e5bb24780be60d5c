import Foundation
import Testing
@testable import Pooler

struct LatencyHistogramTests {
    @Test func emptyIsZero() {
        #expect(LatencyHistogram().percentile(0.99) == 0)
    }

    @Test func percentilesWithinBucketResolution() {
        let h = LatencyHistogram()
        for v in 1...1000 { h.record(micros: v * 10) }  // 10 µs ... 10 ms, uniform
        for (q, exact) in [(0.5, 5000.0), (0.95, 9500.0), (0.99, 9900.0)] {
            let got = Double(h.percentile(q))
            #expect(got >= exact * 0.99 && got <= exact * 1.2, "p\(q): \(got) vs \(exact)")
        }
    }

    @Test func bucketsAreMonotonic() {
        var last = -1
        for v in [0, 1, 2, 3, 10, 100, 1000, 1 << 20, Int.max >> 20] {
            let b = LatencyHistogram.bucket(for: v)
            #expect(b >= last)
            last = b
        }
    }

    @Test func bucketIsFloorOfFourTimesLog2() {
        // floor(4·log2 v) is the largest k with 2^k <= v^4: exact in integers while v^4 fits.
        for v in 2..<32_768 {
            let v4 = v * v * v * v
            let k = Int.bitWidth - 1 - v4.leadingZeroBitCount
            #expect(LatencyHistogram.bucket(for: v) == k, "v=\(v)")
        }
        // Large values: the octave is exact; the quarter agrees with log2 away from its edges.
        for v in [40_000, 1_000_000, 123_456_789, (1 << 31) - 1, 1 << 31, 3 << 35] {
            #expect(LatencyHistogram.bucket(for: v) == Int((log2(Double(v)) * 4).rounded(.down)), "v=\(v)")
        }
        #expect(LatencyHistogram.bucket(for: 0) == 0)
        #expect(LatencyHistogram.bucket(for: 1) == 0)
        #expect(LatencyHistogram.bucket(for: Int.max) == LatencyHistogram.bucketCount - 1)
    }
}
