import Testing
@testable import ConfigKit

@Test func ConfigKitBuilds() { #expect(Bool(true)) }
