import Testing
@testable import Pooler

struct CommandTagTests {
    private func dirty(_ tag: String) -> Bool {
        let bytes = Array(tag.utf8.prefix(8)) + (tag.utf8.count < 8 ? [0] : [])
        return bytes.withUnsafeBytes { CommandTag.makesSessionState($0) }
    }

    @Test func sessionStateTags() {
        #expect(dirty("SET"))
        #expect(dirty("DECLARE CURSOR"))
        #expect(dirty("PREPARE"))
        #expect(dirty("LISTEN"))
        #expect(dirty("CREATE TABLE"))
    }

    @Test func ordinaryTags() {
        #expect(!dirty("SELECT 1"))
        #expect(!dirty("INSERT 0 1"))
        #expect(!dirty("UPDATE 3"))
        #expect(!dirty("COMMIT"))
        #expect(!dirty("DELETE 0"))
        #expect(!dirty("CREATE INDEX"))
        #expect(!dirty("DEALLOCATE"))
    }
}
