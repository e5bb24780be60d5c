import ConfigKit
import NIOCore
import Testing
@testable import Pooler

struct HbaAddressTests {
    @Test func peerAddressBytesMatchTheTextForm() throws {
        for text in ["127.0.0.1", "10.20.30.40", "::1", "2001:db8::7", "::ffff:192.168.1.9"] {
            let socket = try SocketAddress(ipAddress: text, port: 5432)
            #expect(PoolerRuntime.ipAddress(of: socket) == IPAddress(text), "\(text)")
        }
    }

    @Test func unixPeersHaveNoAddress() throws {
        let socket = try SocketAddress(unixDomainSocketPath: "/tmp/.s.PGSQL.6432")
        #expect(PoolerRuntime.ipAddress(of: socket) == nil)
    }

    @Test func legacyNetworksDecideWithoutPgHba() throws {
        let inside = HbaTransport.tcp(address: IPAddress("10.1.2.3")!, tls: false)
        let outside = HbaTransport.tcp(address: IPAddress("192.168.0.1")!, tls: false)
        func decide(_ t: HbaTransport) -> HbaDecision {
            General.hbaDecision(pgHba: nil, legacyNetworks: ["10.0.0.0/8"], transport: t, database: "db", user: "u")
        }
        #expect(decide(inside) == .method(.password))
        #expect(decide(.unix) == .method(.password))
        guard case .denied(let why) = decide(outside) else {
            Issue.record("outside address allowed"); return
        }
        #expect(why.contains("host \"192.168.0.1\"") && why.contains("general.hba"))
        #expect(General.hbaDecision(pgHba: nil, legacyNetworks: [], transport: outside, database: "db", user: "u")
                == .method(.password))
    }
}
