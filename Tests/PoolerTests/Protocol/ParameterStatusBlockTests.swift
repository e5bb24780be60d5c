import NIOCore
import Testing
@testable import Pooler

@Suite struct ParameterStatusBlockTests {
    private func decode(_ buffer: ByteBuffer) -> [String: String] {
        var b = buffer
        var result: [String: String] = [:]
        while b.readableBytes > 0 {
            #expect(b.readInteger(as: UInt8.self) == UInt8(ascii: "S"))
            let length = Int(b.readInteger(as: Int32.self)!)
            var body = b.readSlice(length: length - 4)!
            let name = body.readNullTerminatedString()!, value = body.readNullTerminatedString()!
            #expect(body.readableBytes == 0)
            #expect(result[name] == nil, "each parameter once")
            result[name] = value
        }
        return result
    }

    private let server = [("server_version", "15.8"), ("application_name", "from_server"), ("TimeZone", "UTC")]

    @Test func replaysServerParametersWithItsApplicationName() {
        var out = ByteBufferAllocator().buffer(capacity: 0)
        ParameterStatusBlock(server).write(clientApplicationName: "", into: &out)
        #expect(decode(out) == ["server_version": "15.8", "application_name": "from_server", "TimeZone": "UTC"])
    }

    @Test func clientApplicationNameReplacesTheServers() {
        var out = ByteBufferAllocator().buffer(capacity: 0)
        ParameterStatusBlock(server).write(clientApplicationName: "psql", into: &out)
        #expect(decode(out) == ["server_version": "15.8", "application_name": "psql", "TimeZone": "UTC"])
    }

    @Test func clientApplicationNameIsSentWhenTheServerHadNone() {
        var out = ByteBufferAllocator().buffer(capacity: 0)
        ParameterStatusBlock([("server_version", "15.8")]).write(clientApplicationName: "app", into: &out)
        #expect(decode(out) == ["server_version": "15.8", "application_name": "app"])
        var none = ByteBufferAllocator().buffer(capacity: 0)
        ParameterStatusBlock([]).write(clientApplicationName: "", into: &none)
        #expect(none.readableBytes == 0)
    }
}
