import Testing
@testable import Generate

@Test func GenerateBuilds() { #expect(Bool(true)) }
