import Foundation
import Testing
@testable import ConfigKit

/// reference/ holds what `pg_doorman generate --reference` writes plus the markdown reference; regenerate with
/// `PGDM_UPDATE_REFERENCE=1 swift test --filter ReferenceGoldenTests`.
@Suite struct ReferenceGoldenTests {
    static let outputs: [(String, AnnotatedFormat, CatalogueLanguage)] = [
        ("pg_doorman.yaml", .yaml, .english), ("pg_doorman.toml", .toml, .english),
        ("pg_doorman.ru.yaml", .yaml, .russian), ("pg_doorman.ru.toml", .toml, .russian),
    ]

    static var update: Bool { ProcessInfo.processInfo.environment["PGDM_UPDATE_REFERENCE"] == "1" }

    static func check(_ name: String, _ expected: String) throws {
        let url = repositoryRoot.appendingPathComponent("reference").appendingPathComponent(name)
        if update {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try expected.write(to: url, atomically: true, encoding: .utf8)
            return
        }
        let actual = try String(contentsOf: url, encoding: .utf8)
        #expect(actual == expected, "reference/\(name) is stale: PGDM_UPDATE_REFERENCE=1 swift test --filter ReferenceGoldenTests")
    }

    @Test func referenceConfigs() throws {
        for (name, format, language) in Self.outputs {
            try Self.check(name, AnnotatedEmitter.render(AnnotatedReference.config(), format: format,
                                                         language: language, notes: AnnotatedReference.notes))
        }
    }

    @Test func markdownReference() throws {
        try Self.check("CONFIG.md", CatalogueMarkdown.render())
    }
}
