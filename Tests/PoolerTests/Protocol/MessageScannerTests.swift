import NIOCore
import Testing
@testable import Pooler

struct MessageScannerTests {
    private func messages(_ chunks: [[UInt8]], prefix: (UInt8) -> Int = { _ in 0 }) throws
        -> [(UInt8, Int, [UInt8], Int)]
    {
        var scanner = MessageScanner()
        var out: [(UInt8, Int, [UInt8], Int)] = []
        for c in chunks {
            var b = ByteBufferAllocator().buffer(capacity: c.count)
            b.writeBytes(c)
            try scanner.scan(b, wantPrefix: prefix) { t, n, p, s in out.append((t, n, Array(p), s)) }
        }
        #expect(scanner.atBoundary)
        return out
    }

    private func ready(_ status: UInt8) -> [UInt8] { [UInt8(ascii: "Z"), 0, 0, 0, 5, status] }
    private func complete(_ tag: String) -> [UInt8] {
        let body = Array(tag.utf8) + [0]
        let len = body.count + 4
        return [UInt8(ascii: "C"), 0, 0, UInt8(len >> 8), UInt8(len & 0xFF)] + body
    }

    @Test func findsEveryMessageInOneBuffer() throws {
        let stream = complete("SELECT 1") + ready(UInt8(ascii: "I"))
        let msgs = try messages([stream], prefix: { $0 == UInt8(ascii: "Z") ? 1 : 0 })
        #expect(msgs.map { $0.0 } == [UInt8(ascii: "C"), UInt8(ascii: "Z")])
        #expect(msgs[1].2 == [UInt8(ascii: "I")])
        #expect(msgs[0].3 == 0)
        #expect(msgs[1].3 == 14)
    }

    @Test func headerAndPrefixSplitAcrossReadsAtEveryPosition() throws {
        let stream = complete("SET") + ready(UInt8(ascii: "T")) + complete("COMMIT") + ready(UInt8(ascii: "I"))
        for cut1 in 1..<stream.count {
            for cut2 in cut1..<stream.count {
                let chunks = [Array(stream[0..<cut1]), Array(stream[cut1..<cut2]), Array(stream[cut2...])]
                let msgs = try messages(chunks, prefix: { t in t == UInt8(ascii: "Z") ? 1 : (t == UInt8(ascii: "C") ? 8 : 0) })
                #expect(msgs.count == 4)
                #expect(msgs[1].2 == [UInt8(ascii: "T")])
                #expect(msgs[3].2 == [UInt8(ascii: "I")])
                #expect(msgs[0].2 == Array("SET".utf8) + [0])
            }
        }
    }

    @Test func startIsRelativeToTheBufferTheCallbackComesIn() throws {
        // Header of C in the first read (after Z), its wanted prefix only in the second one.
        let stream = ready(UInt8(ascii: "I")) + complete("SET")
        let first = Array(stream[0..<(6 + 5)]), second = Array(stream[(6 + 5)...])
        let msgs = try messages([first, second], prefix: { $0 == UInt8(ascii: "C") ? 3 : 0 })
        #expect(msgs.map { $0.3 } == [0, -5])
        #expect(msgs[1].2 == Array("SET".utf8))
    }

    @Test func rejectsImpossibleLengths() {
        var scanner = MessageScanner()
        var b = ByteBufferAllocator().buffer(capacity: 5)
        b.writeBytes([UInt8(ascii: "Q"), 0, 0, 0, 3])
        #expect(throws: MessageScanner.ScanError.self) {
            try scanner.scan(b, wantPrefix: { _ in 0 }) { _, _, _, _ in }
        }
        var big = MessageScanner(maxMessageLength: 1000)
        var b2 = ByteBufferAllocator().buffer(capacity: 5)
        b2.writeBytes([UInt8(ascii: "d"), 0, 1, 0, 0])
        #expect(throws: MessageScanner.ScanError.self) {
            try big.scan(b2, wantPrefix: { _ in 0 }) { _, _, _, _ in }
        }
    }

    @Test func largeBodiesAreSkippedWithoutCopying() throws {
        let body = [UInt8](repeating: 7, count: 100_000)
        let len = body.count + 4
        let msg = [UInt8(ascii: "D"), UInt8(len >> 24), UInt8((len >> 16) & 0xFF), UInt8((len >> 8) & 0xFF), UInt8(len & 0xFF)] + body
        let stream = msg + ready(UInt8(ascii: "I"))
        let chunks = stride(from: 0, to: stream.count, by: 4096).map { Array(stream[$0..<min($0 + 4096, stream.count)]) }
        let msgs = try messages(chunks, prefix: { $0 == UInt8(ascii: "Z") ? 1 : 0 })
        #expect(msgs.map { $0.0 } == [UInt8(ascii: "D"), UInt8(ascii: "Z")])
        #expect(msgs[0].1 == 100_000)
    }
}
