import Testing
@testable import Pooler

@Suite struct SocketCensusTests {
    let tcp = """
      sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
       0: 0100007F:1920 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
       1: 0100007F:D2A4 0100007F:1920 01 00000000:00000000 02:000A7D5C 00000000     0        0 1002 2 0000000000000000 20 4 30 10 -1
    """
    let unix = """
    Num       RefCount Protocol Flags    Type St Inode Path
    0000000000000000: 00000002 00000000 00010000 0001 01 3001 /tmp/.s.PGSQL.6432
    0000000000000000: 00000003 00000000 00000000 0001 03 3002
    """

    @Test func inodeColumnsAreRead() {
        #expect(SocketCensus.inodes(procNetInet: tcp) == [1001, 1002])
        #expect(SocketCensus.inodes(procNetUnix: unix) == [3001, 3002])
        #expect(SocketCensus.inodes(procNetInet: "") == [])
    }

    @Test func ownSocketsAreClassifiedByTable() {
        let c = SocketCensus.classify(socketInodes: [1001, 2001, 3002, 9999, 1002],
                                      tcp: [1001, 1002], tcp6: [2001], unix: [3001, 3002])
        #expect(c == SocketCensus.Counts(tcp: 2, tcp6: 1, unix: 1, unknown: 1))
    }

    @Test func socketLinkTargets() {
        #expect(SocketCensus.socketInode(linkTarget: "socket:[12345]") == 12345)
        #expect(SocketCensus.socketInode(linkTarget: "pipe:[12345]") == nil)
        #expect(SocketCensus.socketInode(linkTarget: "/dev/null") == nil)
    }
}
