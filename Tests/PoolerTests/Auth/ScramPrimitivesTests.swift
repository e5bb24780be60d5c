import Testing
@testable import Pooler

@Suite struct ScramAttributeListTests {
    private func parse(_ text: String) -> [String]? {
        ScramAttribute.parseList(Array(text.utf8)[...])?.map { "\(Character(UnicodeScalar($0.name)))=\(String(decoding: $0.value, as: UTF8.self))" }
    }

    @Test func splitsOnCommasKeepingEmptyValues() {
        #expect(parse("n=user,r=abc") == ["n=user", "r=abc"])
        #expect(parse("c=biws,r=a=b,p=xyz==") == ["c=biws", "r=a=b", "p=xyz=="])
        #expect(parse("n=") == ["n="])
        #expect(parse("n=,r=x") == ["n=", "r=x"])
    }

    @Test func rejectsEmptyPartsAndBadNames() {
        #expect(parse("") == nil)
        #expect(parse("n=a,") == nil)
        #expect(parse(",n=a") == nil)
        #expect(parse("n=a,,r=b") == nil)
        #expect(parse("1=a") == nil)
        #expect(parse("na") == nil)
    }

    @Test func worksOnSlicesWithNonZeroStart() {
        let bytes = Array("xxn=u,r=v".utf8)
        let list = ScramAttribute.parseList(bytes[2...])
        #expect(list?.count == 2)
        #expect(list.map { $0.map(\.name) } == [UInt8(ascii: "n"), UInt8(ascii: "r")])
    }
}
