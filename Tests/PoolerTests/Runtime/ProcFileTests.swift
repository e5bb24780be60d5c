import Foundation
import Testing
@testable import Pooler

@Suite struct ProcFileTests {
    @Test func readsAFileLargerThanOneChunkWhole() throws {
        let text = (0..<20_000).map { "line \($0)\n" }.joined()  // ~200 KB, several reads
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("procfile-\(UUID().uuidString)")
        try text.write(to: url, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: url) }
        #expect(ProcFile.read(url.path) == text)
    }

    @Test func readsProcfsPastItsFirstPage() {
        // /proc/self/maps of a test process runs to hundreds of lines, past the first page
        // (Foundation's String(contentsOfFile:) stops there).
        let maps = ProcFile.read("/proc/self/maps") ?? ""
        #expect(maps.split(separator: "\n").count > 60)
        #expect(maps.hasSuffix("\n"))
    }

    @Test func missingFileIsNil() {
        #expect(ProcFile.read("/proc/self/no-such-file") == nil)
    }
}
