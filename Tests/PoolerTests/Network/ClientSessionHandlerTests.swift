import ConfigKit
import Logging
import NIOCore
import NIOEmbedded
import Testing
@testable import Pooler

/// The client handler on an `EmbeddedChannel`: bytes in, bytes out, no socket and no PostgreSQL.
/// What is checked here is what the handler does with the machines' decisions — the login
/// exchange, refusals with their SQLSTATEs, the admin console — on the wire.
struct ClientSessionHandlerTests {
    static let md5User = "alice"
    static let md5Password = "wonderland"

    static func runtime() -> PoolerRuntime {
        var c = Config()
        c.general.adminUsername = "admin"
        c.general.adminPassword = "secret"
        var pool = Pool()
        pool.serverHost = "127.0.0.1"
        pool.serverPort = 1
        pool.users = [User(username: md5User, password: MD5Password.hash(password: md5Password, user: md5User),
                           poolSize: 1)]
        c.pools["db"] = pool
        return PoolerRuntime(config: c, configPath: "/nonexistent", logger: Logger(label: "test"),
                             logLevels: LogLevels(startup: .error), eventLoops: 1)
    }

    /// A connected channel with a fresh session on it.
    static func channel(_ runtime: PoolerRuntime) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        let session = ClientSession(runtime: runtime, loop: channel.eventLoop, id: 1)
        try channel.pipeline.syncOperations.addHandler(session)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000)).wait()
        return channel
    }

    static func send(_ channel: EmbeddedChannel, _ build: (inout ByteBuffer) -> Void) throws {
        var buf = ByteBufferAllocator().buffer(capacity: 64)
        build(&buf)
        try channel.writeInbound(buf)
    }

    /// Everything the handler wrote, as backend messages (type, body).
    static func received(_ channel: EmbeddedChannel) throws -> [(UInt8, ByteBuffer)] {
        channel.embeddedEventLoop.run()  // work the handler queued on its loop
        var all = ByteBufferAllocator().buffer(capacity: 64)
        while var part = try channel.readOutbound(as: ByteBuffer.self) { all.writeBuffer(&part) }
        var out: [(UInt8, ByteBuffer)] = []
        while let m = try MessageFramer.next(&all) { out.append(m) }
        return out
    }

    static func types(_ messages: [(UInt8, ByteBuffer)]) -> String {
        String(decoding: messages.map(\.0), as: UTF8.self)
    }

    static func sqlState(_ messages: [(UInt8, ByteBuffer)]) -> String? {
        guard let (_, body) = messages.first(where: { $0.0 == BackendMessageID.errorResponse.rawValue }) else {
            return nil
        }
        return ServerError(body: body).code.code
    }

    @Test func sslRequestWithoutTLSIsAnsweredN() throws {
        let runtime = Self.runtime()
        defer { runtime.shutdownGroup() }
        let channel = try Self.channel(runtime)
        try Self.send(channel) { FrontendMessage.sslRequest(into: &$0) }
        let answer = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(answer.readableBytes == 1 && answer.getInteger(at: answer.readerIndex, as: UInt8.self) == UInt8(ascii: "N"))
        #expect(channel.isActive)
        _ = try? channel.finish()
    }

    @Test func unknownDatabaseIsRefusedWith3D000() throws {
        let runtime = Self.runtime()
        defer { runtime.shutdownGroup() }
        let channel = try Self.channel(runtime)
        try Self.send(channel) { FrontendMessage.startup(parameters: [("user", Self.md5User), ("database", "nope")], into: &$0) }
        let messages = try Self.received(channel)
        #expect(Self.types(messages) == "E")
        #expect(Self.sqlState(messages) == "3D000")
        #expect(!channel.isActive)
    }

    @Test func aWrongMD5PasswordIs28P01() throws {
        let runtime = Self.runtime()
        defer { runtime.shutdownGroup() }
        // AuthenticationMD5Password, then 28P01 and the connection closes. (The right password is
        // followed by a server connection, which needs a real event loop: see the admin test and
        // the integration suite.)
        let wrong = try Self.channel(runtime)
        try Self.send(wrong) { FrontendMessage.startup(parameters: [("user", Self.md5User), ("database", "db")], into: &$0) }
        let challenge = try Self.received(wrong)
        #expect(Self.types(challenge) == "R")
        var body = try #require(challenge.first?.1)
        let method = body.readInteger(as: Int32.self)
        #expect(method == 5)
        try Self.send(wrong) { FrontendMessage.password("md5" + String(repeating: "0", count: 32), into: &$0) }
        let refused = try Self.received(wrong)
        #expect(Self.sqlState(refused) == "28P01")
        #expect(!wrong.isActive)
    }

    @Test func adminConsoleAnswersOverTheHandler() throws {
        let runtime = Self.runtime()
        defer { runtime.shutdownGroup() }
        let channel = try Self.channel(runtime)
        try Self.send(channel) { FrontendMessage.startup(parameters: [("user", "admin"), ("database", "pgdoorman")], into: &$0) }
        var challenge = try #require(try Self.received(channel).first?.1)
        let method = challenge.readInteger(as: Int32.self)
        #expect(method == 5)
        let saltBytes = challenge.readBytes(length: 4)
        let salt = try #require(saltBytes)
        let response = MD5Password.challengeResponse(md5Hash: MD5Password.hash(password: "secret", user: "admin"),
                                                     salt: salt)
        try Self.send(channel) { FrontendMessage.password(response, into: &$0) }
        let login = try Self.received(channel)
        #expect(Self.types(login).hasPrefix("R"))
        #expect(Self.types(login).hasSuffix("Z"))
        try Self.send(channel) { FrontendMessage.query("SHOW VERSION", into: &$0) }
        let reply = try Self.received(channel)
        #expect(Self.types(reply) == "TDCZ")
        try Self.send(channel) { FrontendMessage.query("SHOW NOSUCHTHING", into: &$0) }
        let error = try Self.received(channel)
        #expect(Self.types(error) == "EZ")
        try Self.send(channel) { FrontendMessage.terminate(into: &$0) }
        #expect(!channel.isActive)
    }

    @Test func aMalformedStartupIsRefused() throws {
        let runtime = Self.runtime()
        defer { runtime.shutdownGroup() }
        let channel = try Self.channel(runtime)
        // A length below the minimum a startup packet can have: closed without a reply (there is no
        // protocol version yet to answer in).
        try Self.send(channel) { $0.writeInteger(Int32(4)) }
        #expect(try Self.received(channel).isEmpty)
        #expect(!channel.isActive)
    }

    @Test func aStrayMessageBeforeStartupIsRefused() throws {
        let runtime = Self.runtime()
        defer { runtime.shutdownGroup() }
        let channel = try Self.channel(runtime)
        // A Query where the startup packet should be: its length field reads as 'Q...', far too
        // large, and the connection closes before reading more.
        try Self.send(channel) { FrontendMessage.query("SELECT 1", into: &$0) }
        #expect(try Self.received(channel).isEmpty)
        #expect(!channel.isActive)
    }
}
