import Testing
@testable import Validate

@Test func ValidateBuilds() { #expect(Bool(true)) }
