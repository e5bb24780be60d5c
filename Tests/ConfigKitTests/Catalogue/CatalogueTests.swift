import Foundation
import Testing
@testable import ConfigKit

/// Repository root, found from this file's path.
let repositoryRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// camelCase property name → snake_case config key.
func snakeCase(_ name: String) -> String {
    var out = ""
    for ch in name {
        if ch.isUppercase {
            out += "_" + ch.lowercased()
        } else {
            out.append(ch)
        }
    }
    return out
}

/// Config keys of a model struct, by reflection.
func modelKeys(_ value: Any) -> Set<String> {
    Set(Mirror(reflecting: value).children.compactMap { $0.label.map(snakeCase) })
}

@Suite struct CatalogueTests {
    static let models: [(CatalogueSection, Any)] = [
        (.general, General()), (.pool, Pool()), (.user, User()), (.authQuery, AuthQuery()), (.web, Web()),
        (.talos, Talos()), (.include, Include()),
    ]

    @Test(arguments: CatalogueSection.allCases)
    func everyModelKeyHasAnEntryAndEveryEntryNamesAKey(_ section: CatalogueSection) {
        let model = modelKeys(Self.models.first { $0.0 == section }!.1)
        let catalogue = Set(Catalogue.fields(in: section).map(\.key))
        #expect(model.subtracting(catalogue).sorted() == [], "model keys without a catalogue entry")
        #expect(catalogue.subtracting(model).sorted() == [], "catalogue entries naming no model key")
    }

    @Test func modelKeysCoverTheTopLevel() {
        #expect(modelKeys(Config()) == ["general", "pools", "web", "talos", "include"])
    }

    @Test func noDuplicatesAndEveryGroupIsUsed() {
        var seen = Set<String>()
        for f in Catalogue.fields {
            #expect(seen.insert("\(f.section.rawValue).\(f.key)").inserted, "duplicate \(f.key)")
            #expect(Catalogue.group(f.group) != nil)
            #expect(!f.comment.en.isEmpty && !f.comment.ru.isEmpty && !f.doc.isEmpty)
        }
        for g in Catalogue.groups {
            #expect(!Catalogue.fields(inGroup: g.id).isEmpty, "group \(g.id) has no keys")
        }
    }

    @Test func optionalKeysHaveExamples() {
        // Every key whose default is "unset" is shown as a commented example, so it needs an example value
        // (except the sub-sections and pg_hba, which the emitters write by hand).
        for f in Catalogue.fields where f.defaultText.hasPrefix("unset") && ![.hba, .table].contains(f.type) {
            #expect(f.example != nil, "\(f.section.rawValue).\(f.key) has no example")
        }
    }

    @Test func russianTextsAreRussian() {
        for f in Catalogue.fields {
            #expect(f.comment.ru.unicodeScalars.contains { (0x400...0x4FF).contains($0.value) },
                    "\(f.key): ru comment has no Cyrillic")
        }
    }

    /// The embedded Swift source must be what the script makes of i18n/fields.yaml.
    @Test func generatedSourceIsUpToDate() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", repositoryRoot.appendingPathComponent("scripts/gen-catalogue.py").path, "--stdout"]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        let expected = String(decoding: data, as: UTF8.self)
        let actual = try String(contentsOf: repositoryRoot.appendingPathComponent(
            "Sources/ConfigKit/Catalogue/CatalogueData.swift"), encoding: .utf8)
        #expect(actual == expected, "CatalogueData.swift is stale: run python3 scripts/gen-catalogue.py")
    }
}
