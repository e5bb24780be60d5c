import Testing
@testable import Pooler

@Test func PoolerBuilds() { #expect(Bool(true)) }
