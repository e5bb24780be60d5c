import ConfigKit
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Testing
import TestSupport
@testable import Pooler

/// TLS context construction from config paths (client-facing and server-facing).
struct TLSContextsTests {
    final class Files {
        let dir: String
        init() {
            dir = NSTemporaryDirectory() + "tlsctx-" + UUID().uuidString
            try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        }
        func write(_ name: String, _ text: String) -> String {
            let p = dir + "/" + name
            try! text.write(toFile: p, atomically: true, encoding: .utf8)
            return p
        }
        deinit { try? FileManager.default.removeItem(atPath: dir) }
    }

    private func general(_ f: Files, mode: String? = nil, ca: Bool = false, key: String = PEMFixtures.key) -> General {
        var g = General()
        g.tlsCertificate = f.write("server.crt", PEMFixtures.cert)
        g.tlsPrivateKey = f.write("server.key", key)
        g.tlsMode = mode
        if ca { g.tlsCaCert = f.write("ca.crt", PEMFixtures.cert) }
        return g
    }

    @Test func clientFacingBuildsWithCertificateAndKey() throws {
        let f = Files()
        let (ctx, mode) = try TLSContexts.makeClientFacing(general(f))
        #expect(ctx != nil)
        #expect(mode == .allow)
    }

    @Test func clientFacingWithoutCertificateAnswersN() throws {
        let (ctx, mode) = try TLSContexts.makeClientFacing(General())
        #expect(ctx == nil)
        #expect(mode == .allow)
        #expect(!mode.requiresTLS)
    }

    @Test func clientFacingDisableHasNoContext() throws {
        let f = Files()
        let (ctx, mode) = try TLSContexts.makeClientFacing(general(f, mode: "disable"))
        #expect(ctx == nil)
        #expect(mode == .disable)
    }

    @Test func clientFacingRequireAndVerifyFull() throws {
        let f = Files()
        let (ctx, mode) = try TLSContexts.makeClientFacing(general(f, mode: "require"))
        #expect(ctx != nil && mode.requiresTLS)
        let (ctx2, mode2) = try TLSContexts.makeClientFacing(general(f, mode: "verify-full", ca: true))
        #expect(ctx2 != nil && mode2 == .verifyFull && mode2.requiresTLS)
        #expect(throws: TLSConfigError.self) { try TLSContexts.makeClientFacing(general(f, mode: "verify-full")) }
        var g = General()
        g.tlsMode = "require"
        #expect(throws: TLSConfigError.self) { try TLSContexts.makeClientFacing(g) }
    }

    @Test func clientFacingErrorsNameTheProblem() {
        let f = Files()
        var g = general(f)
        g.tlsCertificate = f.write("garbage.crt", "not a certificate\n")
        expectError(contains: "tls is incorrectly configured") { try TLSContexts.makeClientFacing(g) }
        g.tlsCertificate = f.dir + "/missing.crt"
        expectError(contains: "missing.crt") { try TLSContexts.makeClientFacing(g) }
        expectError(contains: "tls is incorrectly configured") {
            try TLSContexts.makeClientFacing(general(f, key: PEMFixtures.otherKey))
        }
    }

    @Test func serverFacingModes() throws {
        let f = Files()
        let ca = f.write("ca.crt", PEMFixtures.cert)
        for mode in [ServerTLSMode.allow, .prefer, .require] {
            _ = try TLSContexts.makeServerFacing(ServerTLSSettings(mode: mode))
        }
        _ = try TLSContexts.makeServerFacing(ServerTLSSettings(mode: .verifyCA, caCert: ca))
        _ = try TLSContexts.makeServerFacing(ServerTLSSettings(mode: .verifyFull, caCert: ca))
        expectError(contains: "server_tls_ca_cert is not set") {
            try TLSContexts.makeServerFacing(ServerTLSSettings(mode: .verifyFull))
        }
        let crt = f.write("client.crt", PEMFixtures.cert), key = f.write("client.key", PEMFixtures.key)
        _ = try TLSContexts.makeServerFacing(ServerTLSSettings(mode: .require, certificate: crt, privateKey: key))
        expectError(contains: "server_tls_private_key is not") {
            try TLSContexts.makeServerFacing(ServerTLSSettings(mode: .require, certificate: crt))
        }
        let bad = f.write("bad.key", PEMFixtures.otherKey)
        expectError(contains: "Failed to load server TLS client identity") {
            try TLSContexts.makeServerFacing(ServerTLSSettings(mode: .require, certificate: crt, privateKey: bad))
        }
    }

    @Test func serverModeParsing() {
        #expect(ServerTLSMode(config: "VERIFY-FULL") == .verifyFull)
        #expect(ServerTLSMode(config: "allow") == .allow)
        #expect(ServerTLSMode(config: "bogus") == nil)
        #expect(!ServerTLSMode.allow.requestsTLSFirst && !ServerTLSMode.disable.requestsTLSFirst)
        #expect(ServerTLSMode.prefer.requestsTLSFirst && !ServerTLSMode.prefer.requiresTLS)
        #expect(ServerTLSMode.require.requiresTLS && ServerTLSMode.verifyCA.requiresTLS)
    }

    @Test func resolveUsesPoolOverride() {
        var g = General()
        g.serverTlsMode = "require"
        g.serverTlsCaCert = "/g/ca.crt"
        var p = Pool()
        #expect(ServerTLSSettings.resolve(pool: p, general: g) == ServerTLSSettings(mode: .require, caCert: "/g/ca.crt"))
        p.serverTlsMode = "verify-ca"
        p.serverTlsCaCert = "/p/ca.crt"
        #expect(ServerTLSSettings.resolve(pool: p, general: g) == ServerTLSSettings(mode: .verifyCA, caCert: "/p/ca.crt"))
    }

    @Test func reloadRereadsFiles() throws {
        let f = Files()
        let ca = f.write("ca.crt", PEMFixtures.cert)
        var config = Config()
        var pool = Pool()
        pool.serverTlsMode = "verify-ca"
        pool.serverTlsCaCert = ca
        config.pools["db"] = pool
        let contexts = TLSContexts()
        try contexts.reloadServerFacing(config)
        let settings = ServerTLSSettings(mode: .verifyCA, caCert: ca)
        let first = try contexts.serverContext(for: settings)
        #expect(try contexts.serverContext(for: settings) === first)
        try contexts.reloadServerFacing(config)
        #expect(try contexts.serverContext(for: settings) !== first)
        // A broken file rejects the reload and keeps the previous contexts.
        let second = try contexts.serverContext(for: settings)
        _ = f.write("ca.crt", "garbage\n")
        #expect(throws: TLSConfigError.self) { try contexts.reloadServerFacing(config) }
        #expect(try contexts.serverContext(for: settings) === second)
    }

    /// A real handshake over loopback: the client-facing context against a verify-full client context.
    @Test func loopbackHandshake() throws {
        let f = Files()
        let (serverCtx, _) = try TLSContexts.makeClientFacing(general(f))
        let clientCtx = try TLSContexts.makeServerFacing(
            ServerTLSSettings(mode: .verifyFull, caCert: f.write("ca.crt", PEMFixtures.cert)))
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let server = try ServerBootstrap(group: group)
            .childChannelInitializer { ch in
                ch.eventLoop.makeCompletedFuture {
                    try ch.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: serverCtx!))
                    try ch.pipeline.syncOperations.addHandler(Echo())
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        defer { try? server.close().wait() }
        let got = group.next().makePromise(of: String.self)
        let client = try ClientBootstrap(group: group)
            .channelInitializer { ch in
                ch.eventLoop.makeCompletedFuture {
                    try ch.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: clientCtx, serverHostname: nil))
                    try ch.pipeline.syncOperations.addHandler(Collect(promise: got))
                }
            }
            .connect(host: "127.0.0.1", port: server.localAddress!.port!).wait()
        try client.writeAndFlush(ByteBuffer(string: "hello")).wait()
        #expect(try got.futureResult.wait() == "hello")
        try? client.close().wait()
    }

    private func expectError<T>(contains text: String, _ body: () throws -> T,
                                sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try body()
            Issue.record("expected an error containing \(text)", sourceLocation: sourceLocation)
        } catch {
            #expect("\(error)".contains(text), "\(error)", sourceLocation: sourceLocation)
        }
    }
}

private final class Echo: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.writeAndFlush(data, promise: nil)
    }
}

private final class Collect: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let promise: EventLoopPromise<String>
    init(promise: EventLoopPromise<String>) { self.promise = promise }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var b = unwrapInboundIn(data)
        promise.succeed(b.readString(length: b.readableBytes) ?? "")
    }
    func errorCaught(context: ChannelHandlerContext, error: Error) { promise.fail(error) }
}
