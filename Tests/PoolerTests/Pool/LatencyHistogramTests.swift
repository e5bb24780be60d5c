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
}
