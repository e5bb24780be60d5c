import NIOCore
import Testing
@testable import Pooler

struct StartupPacketTests {
    private func buffer(_ bytes: [UInt8]) -> ByteBuffer {
        var b = ByteBufferAllocator().buffer(capacity: bytes.count)
        b.writeBytes(bytes)
        return b
    }

    @Test func decodesStartupParameters() throws {
        var b = ByteBufferAllocator().buffer(capacity: 64)
        FrontendMessage.startup(parameters: [("user", "alice"), ("database", "app"), ("application_name", "psql")], into: &b)
        guard case .success(.startup(let params))? = StartupPacket.decode(&b) else {
            Issue.record("not decoded")
            return
        }
        #expect(params["user"] == "alice")
        #expect(params["database"] == "app")
        #expect(params.count == 3)
        #expect(b.readableBytes == 0)
    }

    @Test func laterDuplicateParameterWins() {
        var b = ByteBufferAllocator().buffer(capacity: 64)
        FrontendMessage.startup(parameters: [("user", "alice"), ("options", "a"), ("options", "b")], into: &b)
        guard case .success(.startup(let params))? = StartupPacket.decode(&b) else {
            Issue.record("not decoded")
            return
        }
        #expect(params == ["user": "alice", "options": "b"])
    }

    @Test func waitsForMoreBytes() {
        var b = ByteBufferAllocator().buffer(capacity: 64)
        FrontendMessage.startup(parameters: [("user", "alice")], into: &b)
        var partial = b.getSlice(at: 0, length: b.readableBytes - 3)!
        #expect(StartupPacket.decode(&partial) == nil)
        var tiny = buffer([0, 0])
        #expect(StartupPacket.decode(&tiny) == nil)
    }

    @Test func recognisesSpecialRequests() {
        var ssl = buffer([0, 0, 0, 8, 0x04, 0xD2, 0x16, 0x2F])
        #expect(StartupPacket.decode(&ssl) == .success(.sslRequest))
        var gss = buffer([0, 0, 0, 8, 0x04, 0xD2, 0x16, 0x30])
        #expect(StartupPacket.decode(&gss) == .success(.gssEncRequest))
        var cancel = ByteBufferAllocator().buffer(capacity: 16)
        FrontendMessage.cancelRequest(processID: 42, secretKey: -7, into: &cancel)
        #expect(StartupPacket.decode(&cancel) == .success(.cancel(processID: 42, secretKey: -7)))
    }

    @Test func rejectsBadPackets() {
        var short = buffer([0, 0, 0, 4, 0, 0, 0, 0])
        #expect(StartupPacket.decode(&short) == .failure(.badLength(4)))
        var huge = buffer([0, 1, 0, 0, 0, 3, 0, 0])
        #expect(StartupPacket.decode(&huge) == .failure(.badLength(65536)))
        var unknown = buffer([0, 0, 0, 8, 0, 2, 0, 0])
        #expect(StartupPacket.decode(&unknown) == .failure(.unsupportedCode(131072)))
        var noUser = ByteBufferAllocator().buffer(capacity: 32)
        FrontendMessage.startup(parameters: [("database", "x")], into: &noUser)
        #expect(StartupPacket.decode(&noUser) == .failure(.missingUser))
        var unterminated = buffer([0, 0, 0, 13, 0, 3, 0, 0, 0x75, 0x73, 0x65, 0x72, 0x00])
        #expect(StartupPacket.decode(&unterminated) == .failure(.malformedParameters))
    }
}
