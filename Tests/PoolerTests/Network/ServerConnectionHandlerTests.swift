import ConfigKit
import NIOCore
import NIOEmbedded
import Testing
@testable import Pooler

/// The server handler on an `EmbeddedChannel`: PostgreSQL's side is played by the test.
struct ServerConnectionHandlerTests {
    /// A client stand-in that records what the relay hands it.
    final class Owner: ServerOwner {
        let loop: EventLoop
        var read: [ByteBuffer] = []
        var closed = false
        init(loop: EventLoop) { self.loop = loop }
        func serverRead(_ buffer: ByteBuffer) { read.append(buffer) }
        func serverReadComplete() {}
        func serverClosed(_ server: ServerConnection) { closed = true }
        func serverWritabilityChanged(_ writable: Bool) {}
    }

    static func settings() -> PoolSettings {
        var pool = Pool()
        pool.serverHost = "127.0.0.1"
        let user = User(username: "u", password: MD5Password.hash(password: "pw", user: "u"), poolSize: 2)
        return PoolSettings.resolve(poolName: "db", pool: pool, user: user, general: General())
    }

    /// A server connection on an embedded channel, logged in (trust).
    static func loggedIn() throws -> (EmbeddedChannel, ServerConnection, ServerPool) {
        let settings = settings()
        let pool = ServerPool(settings: settings, connector: ServerConnector(tcpNoDelay: true))
        let channel = EmbeddedChannel()
        let server = ServerConnection(id: 1, loop: channel.eventLoop, pool: pool, epoch: pool.epoch, lifetimeMs: 0)
        try channel.pipeline.syncOperations.addHandler(server)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 5432)).wait()
        let login = server.startLogin(channel: channel, settings: settings, clientKey: nil)
        var startup = try #require(try channel.readOutbound(as: ByteBuffer.self))
        let length = startup.readInteger(as: Int32.self)
        let version = startup.readInteger(as: Int32.self)
        #expect(length == Int32(startup.readableBytes + 8) && version == 196_608)
        var reply = ByteBufferAllocator().buffer(capacity: 64)
        BackendMessage.authenticationOk(into: &reply)
        BackendMessage.parameterStatus("server_version", "15.0", into: &reply)
        BackendMessage.backendKeyData(processID: 77, secretKey: 99, into: &reply)
        BackendMessage.readyForQuery(into: &reply)
        try channel.writeInbound(reply)
        var done: ServerConnection?
        login.whenSuccess { done = $0 }
        channel.embeddedEventLoop.run()
        #expect(done === server)
        return (channel, server, pool)
    }

    /// Frontend messages the handler wrote, by type.
    static func sentTypes(_ channel: EmbeddedChannel) throws -> String {
        var all = ByteBufferAllocator().buffer(capacity: 64)
        while var part = try channel.readOutbound(as: ByteBuffer.self) { all.writeBuffer(&part) }
        var types: [UInt8] = []
        while let (type, _) = try MessageFramer.next(&all) { types.append(type) }
        return String(decoding: types, as: UTF8.self)
    }

    @Test func loginThenIdle() throws {
        let (channel, server, _) = try Self.loggedIn()
        #expect(server.processID == 77 && server.secretKey == 99)
        #expect(server.parameterValues["server_version"] == "15.0")
        #expect(server.stateName == "idle")
        _ = try? channel.finish()
    }

    @Test func checkedOutBytesGoToTheOwnerUnparsed() throws {
        let (channel, server, _) = try Self.loggedIn()
        let owner = Owner(loop: channel.eventLoop)
        server.attach(to: owner)
        #expect(server.stateName == "active")
        var half = ByteBufferAllocator().buffer(capacity: 8)
        half.writeBytes([UInt8(ascii: "Z"), 0, 0])  // half a message: still relayed as is
        try channel.writeInbound(half)
        #expect(owner.read.map(\.readableBytes) == [3])
        #expect(server.detachClean())
        #expect(server.stateName == "idle")
        _ = try? channel.finish()
    }

    @Test func cleanupRunsItsQueriesAndReportsTheVerdict() throws {
        let (channel, server, pool) = try Self.loggedIn()
        server.attach(to: Owner(loop: channel.eventLoop))
        var clean: Bool?
        server.detach(runningCleanup: ["ROLLBACK", "DISCARD ALL"]) { clean = $0 }
        #expect(try Self.sentTypes(channel) == "QQ")
        #expect(server.stateName == "used")
        var replies = ByteBufferAllocator().buffer(capacity: 64)
        BackendMessage.commandComplete("ROLLBACK", into: &replies)
        BackendMessage.readyForQuery(into: &replies)
        BackendMessage.commandComplete("DISCARD ALL", into: &replies)
        try channel.writeInbound(replies)
        #expect(clean == nil)  // one ReadyForQuery still to come
        var last = ByteBufferAllocator().buffer(capacity: 8)
        BackendMessage.readyForQuery(into: &last)
        try channel.writeInbound(last)
        #expect(clean == true)
        #expect(server.reuse(epoch: pool.epoch, now: .now()) == .reusable)
        _ = try? channel.finish()
    }

    @Test func closingAnIdleServerSaysTerminate() throws {
        let (channel, server, _) = try Self.loggedIn()
        server.close()
        #expect(try Self.sentTypes(channel) == "X")
        #expect(!channel.isActive)
        #expect(server.stateName == "closed")
    }

    @Test func anUnsolicitedErrorOnAnIdleServerMakesItUnusable() throws {
        let (channel, server, pool) = try Self.loggedIn()
        var fatal = ByteBufferAllocator().buffer(capacity: 64)
        BackendMessage.errorResponse(severity: "FATAL", code: .adminShutdown, message: "terminating", into: &fatal)
        try channel.writeInbound(fatal)
        #expect(server.reuse(epoch: pool.epoch, now: .now()) != .reusable)
        _ = try? channel.finish()
    }

    @Test func aClientLosingItsServerIsTold() throws {
        let (channel, server, _) = try Self.loggedIn()
        let owner = Owner(loop: channel.eventLoop)
        server.attach(to: owner)
        channel.pipeline.fireChannelInactive()
        #expect(owner.closed)
        #expect(server.stateName == "closed")
    }
}
