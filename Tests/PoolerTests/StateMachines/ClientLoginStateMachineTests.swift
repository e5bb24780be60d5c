import ConfigKit
import NIOCore
import Testing
@testable import Pooler

/// The client's login decisions without a channel: first packets, the exchange a stored credential
/// calls for, and the MD5 / SCRAM exchanges message by message.
struct ClientLoginStateMachineTests {
    typealias Machine = ClientLoginStateMachine

    static func packet(_ build: (inout ByteBuffer) -> Void) -> Result<StartupPacket, StartupPacket.DecodeError>? {
        var buf = ByteBufferAllocator().buffer(capacity: 64)
        build(&buf)
        return StartupPacket.decode(&buf)
    }

    static func password(_ build: (inout ByteBuffer) -> Void) -> (UInt8, ByteBuffer) {
        var buf = ByteBufferAllocator().buffer(capacity: 64)
        build(&buf)
        guard let m = try? MessageFramer.next(&buf) else { return (0, ByteBuffer()) }
        return m
    }

    static func name(_ step: Machine.Step) -> String {
        switch step {
        case .sendSASLContinue: return "continue"
        case .sendSASLFinalAndAccept: return "final+accept"
        case .accept: return "accept"
        case .md5Mismatch: return "mismatch"
        case .wrongPassword: return "wrong"
        case .refuse(let code, _): return "refuse \(code.code)"
        case .protocolViolation: return "violation"
        }
    }

    // MARK: - First packet

    @Test func firstPackets() {
        let table: [(String, Result<StartupPacket, StartupPacket.DecodeError>?, Bool, Machine.FirstPacket)] = [
            ("ssl, tls configured", Self.packet { FrontendMessage.sslRequest(into: &$0) }, true, .startTLS),
            ("ssl, no tls", Self.packet { FrontendMessage.sslRequest(into: &$0) }, false, .answerNo),
            ("gssenc", Self.packet { $0.writeInteger(Int32(8)); $0.writeInteger(FrontendMessage.gssEncRequestCode) },
             true, .answerNo),
            ("cancel", Self.packet { FrontendMessage.cancelRequest(processID: 7, secretKey: 9, into: &$0) }, true,
             .cancel(processID: 7, secretKey: 9)),
            ("startup", Self.packet { FrontendMessage.startup(parameters: [("user", "u"), ("database", "d")], into: &$0) },
             true, .startup(["user": "u", "database": "d"])),
            ("half a packet", Self.packet { $0.writeInteger(Int32(40)) }, true, .needMore),
            ("too short", Self.packet { $0.writeInteger(Int32(4)); $0.writeInteger(Int32(0)) }, true, .close),
            ("unknown code", Self.packet { $0.writeInteger(Int32(8)); $0.writeInteger(Int32(1234)) }, true, .close),
            ("no user", Self.packet { FrontendMessage.startup(parameters: [("database", "d")], into: &$0) }, true, .close),
        ]
        for (name, decoded, tls, expected) in table {
            #expect(Machine.firstPacket(decoded, tlsAvailable: tls) == expected, "\(name)")
        }
    }

    // MARK: - Which exchange

    @Test func exchangeForEachStoredCredential() {
        let md5 = MD5Password.hash(password: "pw", user: "u")
        let keys = ScramServer.Keys(RFC7677.verifier)
        func name(_ stored: String, _ method: ClientAuthMethod, keys k: ScramServer.Keys? = keys) -> String {
            switch Machine.exchange(stored: stored, method: method, user: "u", scramKeys: { k }) {
            case .trust: return "trust"
            case .md5(let hash): return hash == stored ? "md5" : "md5?"
            case .scram: return "scram"
            case .mock(let md5): return md5 ? "mock md5" : "mock scram"
            case .refuse(let code, _): return "refuse \(code.code)"
            case .fail: return "fail"
            }
        }
        #expect(name(md5, .trust) == "trust")
        #expect(name(md5, .md5) == "md5")
        #expect(name(md5, .password) == "md5")
        #expect(name(md5, .scram) == "mock scram")  // SCRAM cannot run against an MD5 hash
        #expect(name("SCRAM-SHA-256$4096:abc", .md5) == "scram")
        #expect(name("SCRAM-SHA-256$broken", .scram, keys: nil) == "refuse 28P01")
        #expect(name("", .md5) == "refuse 28P01")
        #expect(name(User.jwtPasswordPrefix + "/keys/pub.pem", .md5) == "refuse 28P01")
        #expect(name("plain secret", .md5) == "scram")
        #expect(name("plain secret", .md5, keys: nil) == "fail")
    }

    // MARK: - MD5

    @Test func md5RightWrongAndMalformed() {
        let hash = MD5Password.hash(password: "pw", user: "u")
        let salt: [UInt8] = [1, 2, 3, 4]
        let right = MD5Password.challengeResponse(md5Hash: hash, salt: salt)
        var m = Machine.md5(hash: hash, salt: salt)
        var (type, body) = Self.password { FrontendMessage.password(right, into: &$0) }
        #expect(Self.name(m.receive(type: type, body: body)) == "accept")
        #expect(Self.name(m.receive(type: type, body: body)) == "violation")  // the exchange is over

        m = Machine.md5(hash: hash, salt: salt)
        (type, body) = Self.password { FrontendMessage.password("md5" + String(repeating: "0", count: 32), into: &$0) }
        #expect(Self.name(m.receive(type: type, body: body)) == "mismatch")

        m = Machine.md5(hash: hash, salt: salt)
        (type, body) = Self.password { FrontendMessage.query("SELECT 1", into: &$0) }
        #expect(Self.name(m.receive(type: type, body: body)) == "violation")
    }

    // MARK: - SCRAM

    /// The RFC 7677 exchange through the machine, with the RFC's server nonce.
    @Test func scramFullExchange() {
        var m = Machine.scram(ScramServer(keys: ScramServer.Keys(RFC7677.verifier),
                                          serverNonce: RFC7677.serverNoncePart))
        let first = bytes(RFC7677.clientFirst)
        var (type, body) = Self.password {
            FrontendMessage.saslInitialResponse(mechanism: "SCRAM-SHA-256", data: first, into: &$0)
        }
        let cont = m.receive(type: type, body: body)
        guard case .sendSASLContinue(let serverFirst) = cont else {
            Issue.record("\(Self.name(cont))")
            return
        }
        #expect(text(serverFirst) == RFC7677.serverFirst)
        (type, body) = Self.password { FrontendMessage.saslResponse(data: bytes(RFC7677.clientFinal), into: &$0) }
        let final = m.receive(type: type, body: body)
        guard case .sendSASLFinalAndAccept(let serverFinal, let clientKey) = final else {
            Issue.record("\(Self.name(final))")
            return
        }
        #expect(text(serverFinal) == RFC7677.serverFinal)
        #expect(Base64.encode(clientKey) == RFC7677.clientKey)
    }

    @Test func scramWrongProofMalformedFirstAndOtherMechanism() {
        let keys = ScramServer.Keys(RFC7677.verifier)
        // A proof for another password.
        var m = Machine.scram(ScramServer(keys: keys, serverNonce: RFC7677.serverNoncePart))
        var (type, body) = Self.password {
            FrontendMessage.saslInitialResponse(mechanism: "SCRAM-SHA-256", data: bytes(RFC7677.clientFirst), into: &$0)
        }
        _ = m.receive(type: type, body: body)
        let badProof = RFC7677.clientFinal.replacingOccurrences(of: "p=dHzb", with: "p=AAAA")
        (type, body) = Self.password { FrontendMessage.saslResponse(data: bytes(badProof), into: &$0) }
        #expect(Self.name(m.receive(type: type, body: body)) == "wrong")

        // Another mechanism, and a client-first-message that does not parse.
        for (mechanism, data) in [("SCRAM-SHA-1", RFC7677.clientFirst), ("SCRAM-SHA-256", "garbage")] {
            var n = Machine.scram(ScramServer(keys: keys, serverNonce: RFC7677.serverNoncePart))
            let (t, b) = Self.password {
                FrontendMessage.saslInitialResponse(mechanism: mechanism, data: bytes(data), into: &$0)
            }
            #expect(Self.name(n.receive(type: t, body: b)) == "refuse 28P01", "\(mechanism) \(data)")
        }

        // A truncated SASLInitialResponse (its length says more than there is).
        var t = Machine.scram(ScramServer(keys: keys, serverNonce: RFC7677.serverNoncePart))
        (type, body) = Self.password { buf in
            var inner = ByteBufferAllocator().buffer(capacity: 32)
            inner.writeString("SCRAM-SHA-256")
            inner.writeInteger(UInt8(0))
            inner.writeInteger(Int32(100))
            inner.writeString("short")
            buf.writeInteger(FrontendMessageID.password.rawValue)
            buf.writeInteger(Int32(4 + inner.readableBytes))
            buf.writeBuffer(&inner)
        }
        #expect(Self.name(t.receive(type: type, body: body)) == "refuse 28P01")
    }
}
