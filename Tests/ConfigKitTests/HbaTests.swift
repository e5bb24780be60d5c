import Testing
@testable import ConfigKit

@Suite struct HbaTests {
    @Test func ipParsing() {
        #expect(IPAddress("10.1.2.3")?.bytes == [10, 1, 2, 3])
        #expect(IPAddress("::1")?.bytes == [UInt8](repeating: 0, count: 15) + [1])
        #expect(IPAddress("fe80::1:2")?.bytes.count == 16)
        #expect(IPAddress("::ffff:1.2.3.4")?.unmappedV4.bytes == [1, 2, 3, 4])
        #expect(IPAddress("1.2.3") == nil)
        #expect(IPAddress("256.1.1.1") == nil)
        #expect(IPAddress("1::2::3") == nil)
        #expect(IPNetwork(cidr: "10.0.0.0/8")?.contains(IPAddress("10.9.8.7")!) == true)
        #expect(IPNetwork(cidr: "10.0.0.0/8")?.contains(IPAddress("11.0.0.1")!) == false)
        #expect(IPNetwork(cidr: "10.0.0.1") == nil)  // strict CIDR for general.hba
        #expect(IPNetwork(cidr: "10.0.0.0/33") == nil)
        #expect(IPNetwork(cidrOrAddress: "10.0.0.1")?.prefixLength == 32)
        #expect(IPNetwork(cidr: "2001:db8::/32")?.contains(IPAddress("2001:db8:1::5")!) == true)
        #expect(IPNetwork(cidr: "127.0.0.0/8")?.contains(IPAddress("::ffff:127.0.0.1")!) == true)
    }

    @Test func parseReportsBadLinesWithLineNumbers() {
        let text = """
        # comment
        host all all 10.0.0.0/8 md5
        hots all all 10.0.0.0/8 md5
        host all all not-an-ip md5
        local all
        host all all 1.2.3.4 frobnicate
        local all all peer
        """
        let (rules, problems) = PgHba.parse(text)
        #expect(rules.count == 2)
        #expect(problems.filter { !$0.isWarning }.map(\.line) == [3, 4, 5, 6])
        #expect(problems.first { $0.line == 3 }?.message
            == "unknown connection type 'hots' (expected local, host, hostssl or hostnossl)")
        #expect(problems.first { $0.line == 7 }?.isWarning == true)
    }

    @Test func firstMatchWins() {
        let hba = PgHba(content: """
        local   all      all                 trust
        hostssl app      alice  10.0.0.0/8    scram-sha-256
        host    app,db2  alice  10.0.0.0/8    reject
        host    all      bob    0.0.0.0/0     md5
        host    "App"    all    192.168.1.5   trust
        host    all      all    all           reject
        """)
        #expect(hba.rules.count == 6)
        #expect(hba.match(transport: .unix, database: "x", user: "y")?.method == .trust)
        let tls = HbaTransport.tcp(addressString: "10.1.1.1", tls: true)!
        let plain = HbaTransport.tcp(addressString: "10.1.1.1", tls: false)!
        #expect(hba.match(transport: tls, database: "app", user: "alice")?.method == .scramSha256)
        #expect(hba.match(transport: plain, database: "app", user: "alice")?.line == 3)
        #expect(hba.match(transport: plain, database: "db2", user: "alice")?.method == .reject)
        #expect(hba.match(transport: plain, database: "app", user: "bob")?.method == .md5)
        #expect(hba.match(transport: .tcp(addressString: "192.168.1.5", tls: false)!, database: "App",
                          user: "zed")?.method == .trust)
        #expect(hba.match(transport: .tcp(addressString: "192.168.1.6", tls: false)!, database: "App",
                          user: "zed")?.line == 6)
        let noCatchAll = PgHba(content: "host all all 127.0.0.1/32 trust")
        #expect(noCatchAll.match(transport: .tcp(addressString: "::1", tls: false)!, database: "a", user: "b") == nil)
        #expect(noCatchAll.match(transport: .unix, database: "a", user: "b") == nil)
    }

    @Test func legacyHbaList() {
        var g = General()
        #expect(g.legacyHbaAllows(.tcp(addressString: "8.8.8.8", tls: false)!))
        g.hba = ["10.0.0.0/8"]
        #expect(g.legacyHbaAllows(.unix))
        #expect(g.legacyHbaAllows(.tcp(addressString: "10.2.3.4", tls: false)!))
        #expect(!g.legacyHbaAllows(.tcp(addressString: "8.8.8.8", tls: false)!))
    }
}
