import NIOCore
import Testing
@testable import Pooler

struct ForwardRunsTests {
    /// Three messages 'A', 'B', 'C' with one-byte bodies; returns the buffer and each message's range.
    private func input(prefix: Int = 0) -> (ByteBuffer, [Range<Int>]) {
        var b = ByteBufferAllocator().buffer(capacity: 64)
        b.writeRepeatingByte(0xEE, count: prefix)
        b.moveReaderIndex(forwardBy: prefix)
        var ranges: [Range<Int>] = []
        for t in "ABC".utf8 {
            let start = b.writerIndex
            b.writeInteger(t)
            b.writeInteger(Int32(5))
            b.writeInteger(t &+ 32)
            ranges.append(start..<b.writerIndex)
        }
        return (b, ranges)
    }

    private func types(_ b: ByteBuffer) -> String { FE.types(b) }

    @Test func nothingEditedIsTheInputItself() {
        let (b, r) = input(prefix: 7)
        var runs = ForwardRuns(b)
        let out = runs.finish(at: r[2].upperBound)
        #expect(out == b)
        #expect(types(out) == "ABC")
    }

    /// An edit is built in the buffer handed back from the previous input (its old bytes gone);
    /// an input without edits returns that buffer untouched for the next.
    @Test func editsAreBuiltInTheReusedBuffer() {
        let (b, r) = input()
        func spare() -> ByteBuffer {  // (held by nobody else: a shared buffer would be copied)
            var s = ByteBufferAllocator().buffer(capacity: 256)
            s.writeString("stale bytes")
            return s
        }
        var runs = ForwardRuns(b, reuse: spare())
        var extra = ByteBuffer()
        runs.message(at: r[1].lowerBound, end: r[1].upperBound, keep: false, then: &extra)
        let out = runs.finish(at: r[2].upperBound)
        #expect(runs.edited)
        #expect(types(out) == "AC")
        #expect(out.capacity == 256)
        #expect(runs.takeSpare() == nil)
        var plain = ForwardRuns(b, reuse: out)
        #expect(plain.finish(at: r[2].upperBound) == b)
        #expect(!plain.edited)
        #expect(plain.takeSpare() == out)
    }

    @Test func finishStopsAtAPartialTail() {
        var (b, r) = input()
        b.writeBytes([UInt8(ascii: "D"), 0, 0])  // half a header
        var runs = ForwardRuns(b)
        let out = runs.finish(at: r[2].upperBound)
        #expect(types(out) == "ABC")
    }

    @Test(arguments: [0, 1, 2])
    func droppedMessageLeavesTheOthersInOrder(_ dropped: Int) {
        let (b, r) = input(prefix: 3)
        var runs = ForwardRuns(b)
        var none = ByteBuffer()
        runs.message(at: r[dropped].lowerBound, end: r[dropped].upperBound, keep: false, then: &none)
        var expected = Array("ABC")
        expected.remove(at: dropped)
        #expect(types(runs.finish(at: r[2].upperBound)) == String(expected))
    }

    @Test func keptMessagesWithNothingAfterThemStayTheInput() {
        let (b, r) = input(prefix: 2)
        var runs = ForwardRuns(b)
        var none = ByteBuffer()
        for range in r { runs.message(at: range.lowerBound, end: range.upperBound, keep: true, then: &none) }
        #expect(runs.finish(at: r[2].upperBound) == b)
    }

    @Test func replacementsAndInsertionsLandInPlace() {
        let (b, r) = input()
        var runs = ForwardRuns(b)
        var x = ByteBufferAllocator().buffer(capacity: 8)
        x.writeInteger(UInt8(ascii: "X")); x.writeInteger(Int32(4))
        runs.message(at: r[0].lowerBound, end: r[0].upperBound, keep: false, then: &x)  // A → X
        var y = ByteBufferAllocator().buffer(capacity: 8)
        y.writeInteger(UInt8(ascii: "Y")); y.writeInteger(Int32(4))
        runs.message(at: r[1].lowerBound, end: r[1].upperBound, keep: true, then: &y)  // B, then Y
        #expect(y.readableBytes == 0)
        #expect(types(runs.finish(at: r[2].upperBound)) == "XBYC")
    }

    @Test func injectionsGoBeforeTheirMessage() {
        let (b, r) = input(prefix: 1)
        var runs = ForwardRuns(b)
        var x = ByteBufferAllocator().buffer(capacity: 8)
        x.writeInteger(UInt8(ascii: "X")); x.writeInteger(Int32(4))
        runs.message(at: r[1].lowerBound, end: r[1].upperBound, keep: true, precededBy: &x)  // X, then B
        #expect(x.readableBytes == 0)
        var y = ByteBufferAllocator().buffer(capacity: 8)
        y.writeInteger(UInt8(ascii: "Y")); y.writeInteger(Int32(4))
        runs.message(at: r[2].lowerBound, end: r[2].upperBound, keep: false, precededBy: &y)  // C → Y
        #expect(types(runs.finish(at: r[2].upperBound)) == "AXBY")
    }

    @Test func aDroppedLastMessageIsNotForwarded() {
        let (b, r) = input()
        var runs = ForwardRuns(b)
        var none = ByteBuffer()
        runs.message(at: r[2].lowerBound, end: r[2].upperBound, keep: false, precededBy: &none)
        #expect(types(runs.finish(at: r[2].upperBound)) == "AB")
        // Stopping before a message (a Terminate the session never sends) leaves it out too.
        var untouched = ForwardRuns(b)
        let upToC = untouched.finish(at: r[2].lowerBound)
        #expect(types(upToC) == "AB")
    }
}
