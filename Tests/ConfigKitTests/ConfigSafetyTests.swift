// Hostile and large configs: YAML bombs, duplicate keys, deep nesting, many pools, and a seeded mutation fuzz of the
// loader. Correctness only — timings are measured by hand with scripts/gen-big-config.py.

import Foundation
import Testing
import TestSupport
import Yams
@testable import ConfigKit

private let generalYAML = """
general:
  admin_username: "admin"
  admin_password: "secret"

"""

/// "Billion laughs": `levels` nested lists of `width` aliases each (10^9 strings at 9 x 10).
func yamlBomb(levels: Int = 9, width: Int = 10, aliasAsKey: Bool = false) -> String {
    var s = generalYAML + "lol:\n  l0: &l0 \"lol\"\n"
    for lv in 1...levels {
        s += "  l\(lv): &l\(lv) [" + Array(repeating: "*l\(lv - 1)", count: width).joined(separator: ", ") + "]\n"
    }
    if aliasAsKey { s += "  ? *l\(levels)\n  : 1\n" }
    return s + "pools: {}\n"
}

/// `n` pools `db_0000000`..., one user each (the shape of scripts/gen-big-config.py).
func manyPoolsYAML(_ n: Int) -> String {
    var s = generalYAML + "pools:\n"
    s.reserveCapacity(n * 200)
    for i in 0..<n {
        let name = poolName(i)
        s += """
          \(name):
            server_host: "\(host(i))"
            server_port: 5432
            pool_mode: "transaction"
            users:
              - username: "app_\(i)"
                password: "md5\(hex32(i))"
                pool_size: 20

        """
    }
    return s
}

func manyPoolsTOML(_ n: Int) -> String {
    var s = "[general]\nadmin_username = \"admin\"\nadmin_password = \"secret\"\n"
    s.reserveCapacity(n * 200)
    for i in 0..<n {
        let name = poolName(i)
        s += """

        [pools.\(name)]
        server_host = "\(host(i))"
        server_port = 5432
        pool_mode = "transaction"

        [[pools.\(name).users]]
        username = "app_\(i)"
        password = "md5\(hex32(i))"
        pool_size = 20

        """
    }
    return s
}

private func poolName(_ i: Int) -> String {
    let digits = String(i)
    return "db_" + String(repeating: "0", count: max(0, 7 - digits.count)) + digits
}

private func host(_ i: Int) -> String { "10.\((i >> 16) & 255).\((i >> 8) & 255).\(i & 255)" }

private func hex32(_ i: Int) -> String {
    let h = String(i, radix: 16)
    return String(repeating: "0", count: 32 - h.count) + h
}

@Suite struct ConfigSafetyTests {
    // MARK: Anchors and aliases

    @Test func yamlBombIsRejectedAtTheFirstAnchor() {
        for text in [yamlBomb(), yamlBomb(levels: 12, width: 12), yamlBomb(aliasAsKey: true)] {
            let r = yaml(text)
            #expect(r.config == nil)
            #expect(r.errors.count == 1, "\(r.diagnostics)")
            let e = r.errors.first
            #expect(e?.message == "YAML parse error: anchors are not supported (found anchor '&l0')")
            #expect(e?.keyPath == "lol.l0")
            #expect(e?.line == 5)
            #expect(e?.file == "test.yaml")
            #expect(e?.hint?.contains("aliases (*name)") == true)
        }
    }

    @Test func anchorsAliasesAndMergeKeysAreRejected() {
        let reuse = yaml(generalYAML + """
        pools:
          a: &base
            server_host: "h"
            users: []
          b: *base
        """)
        #expect(errorMessages(reuse) == ["YAML parse error: anchors are not supported (found anchor '&base')"])
        #expect(reuse.errors.first?.keyPath == "pools.a")
        #expect(reuse.errors.first?.line == 5)

        let merge = yaml(generalYAML + """
        pools:
          a:
            <<: *base
        """)
        #expect(errorMessages(merge) == ["YAML parse error: aliases are not supported (found alias '*base')"])
        #expect(merge.errors.first?.keyPath == "pools.a.<<")
        #expect(merge.errors.first?.line == 6)

        let inList = yaml("general:\n  hba: [\"10.0.0.0/8\", *nets]\n")
        #expect(inList.errors.first?.message == "YAML parse error: aliases are not supported (found alias '*nets')")
        #expect(inList.errors.first?.keyPath == "general.hba[1]")

        let anchoredKey = yaml("&k general:\n  admin_username: a\n")
        #expect(anchoredKey.errors.first?.message == "YAML parse error: anchors are not supported (found anchor '&k')")
        #expect(anchoredKey.errors.first?.line == 1)
    }

    @Test func anchorInAnIncludeIsReportedAgainstTheInclude() throws {
        let dir = makeTempDir()
        let main = dir.appendingPathComponent("main.yaml")
        let inc = dir.appendingPathComponent("inc.yaml")
        try (generalYAML + "include:\n  files: [\"inc.yaml\"]\npools: {}\n").write(to: main, atomically: true,
                                                                                       encoding: .utf8)
        try "pools:\n  x: &x {}\n  y: *x\n".write(to: inc, atomically: true, encoding: .utf8)
        let r = ConfigLoader.load(path: main.path)
        #expect(r.config == nil)
        #expect(r.errors.first?.message == "YAML parse error: anchors are not supported (found anchor '&x')")
        #expect(r.errors.first?.file == inc.path)
        #expect(r.errors.first?.line == 2)
    }

    // MARK: Duplicate keys

    @Test func duplicateYAMLKeys() {
        let top = yaml(generalYAML + "pools: {}\ngeneral:\n  port: 1\n")
        #expect(errorMessages(top) == ["YAML parse error: duplicate key 'general'"])
        #expect(top.errors.first?.keyPath == "general")
        #expect(top.errors.first?.line == 5)

        let inUser = yaml(generalYAML + """
        pools:
          app:
            users:
              - username: "a"
                password: ""
                username: "b"
        """)
        #expect(errorMessages(inUser) == ["YAML parse error: duplicate key 'username'"])
        #expect(inUser.errors.first?.keyPath == "pools.app.users[0].username")
        #expect(inUser.errors.first?.line == 9)

        // A first occurrence with a null value still counts.
        let afterNull = yaml("general:\n  unix_socket_dir:\n  unix_socket_dir: /tmp\n")
        #expect(errorMessages(afterNull) == ["YAML parse error: duplicate key 'unix_socket_dir'"])

        // Keys are compared as written text: 1 and "1" are the same key.
        let mixed = yaml("general:\n  startup_parameters:\n    1: a\n    \"1\": b\n")
        #expect(errorMessages(mixed) == ["YAML parse error: duplicate key '1'"])
    }

    @Test func duplicatePoolAmongManyYAML() {
        let n = 5000
        let text = manyPoolsYAML(n) + "  db_0000000:\n    server_host: \"again\"\n"
        let r = yaml(text)
        #expect(errorMessages(r) == ["YAML parse error: duplicate key 'db_0000000'"])
        #expect(r.errors.first?.keyPath == "pools.db_0000000")
        #expect(r.errors.first?.line == text.split(separator: "\n", omittingEmptySubsequences: false).count - 2)
    }

    @Test func duplicateTOMLKeys() {
        let key = toml("[general]\nadmin_username = \"a\"\nadmin_username = \"b\"\n")
        #expect(key.config == nil)
        #expect(key.errors.count == 1)
        #expect(key.errors.first?.message.hasPrefix("TOML parse error") == true)
        #expect(key.errors.first?.line == 3)

        let table = toml(manyPoolsTOML(2000) + "\n[pools.db_0000007]\nserver_port = 1\n")
        #expect(table.config == nil)
        #expect(table.errors.count == 1)
        #expect(table.errors.first?.message.hasPrefix("TOML parse error") == true)
    }

    @Test func duplicateKeysAcrossIncludesMerge() throws {
        // Not an error: an include overrides scalars and merges tables (linear-time merge into a large table).
        let dir = makeTempDir()
        let main = dir.appendingPathComponent("main.yaml")
        let inc = dir.appendingPathComponent("inc.toml")
        try (manyPoolsYAML(3000) + "include:\n  files: [\"inc.toml\"]\n").write(to: main, atomically: true,
                                                                                encoding: .utf8)
        try "[pools.db_0002999]\nserver_port = 6000\n[pools.extra]\nserver_port = 6001\n"
            .write(to: inc, atomically: true, encoding: .utf8)
        let r = ConfigLoader.load(path: main.path)
        #expect(!r.hasErrors, "\(r.errors)")
        #expect(r.config?.pools.count == 3001)
        #expect(r.config?.pools["db_0002999"]?.serverPort == 6000)
        #expect(r.config?.pools["db_0002999"]?.users.first?.username == "app_2999")
    }

    // MARK: Large configs

    @Test func twentyThousandPools() throws {
        let n = 20_000
        let y = yaml(manyPoolsYAML(n))
        #expect(!y.hasErrors, "\(y.errors.prefix(3))")
        let c = try #require(y.config)
        #expect(c.pools.count == n)
        for i in [0, 1, 12_345, n - 1] {
            let p = try #require(c.pools[poolName(i)])
            #expect(p.serverHost == host(i))
            #expect(p.serverPort == 5432)
            #expect(p.poolMode == .transaction)
            #expect(p.users.map(\.username) == ["app_\(i)"])
            #expect(p.users.first?.password == "md5\(hex32(i))")
            #expect(p.users.first?.poolSize == 20)
        }
        let t = toml(manyPoolsTOML(n))
        #expect(!t.hasErrors, "\(t.errors.prefix(3))")
        #expect(t.config == c)
    }

    @Test func manyProblemsStillPointAtTheirLines() {
        // The location index is built when validation reports something; every pool gets its own line.
        let n = 3000
        let text = manyPoolsYAML(n).replacingOccurrences(of: "pool_size: 20", with: "pool_size: 20\n"
            + "        min_pool_size: 30")
        let r = yaml(text)
        let problems = r.errors.filter { $0.keyPath.hasSuffix(".users[0].min_pool_size") }
        #expect(problems.count == n, "\(r.errors.prefix(3))")
        #expect(Set(problems.compactMap(\.line)).count == n)
    }

    // MARK: Structure limits

    @Test func deepNesting() {
        let flow = yaml("general: " + String(repeating: "[", count: 65) + String(repeating: "]", count: 65))
        #expect(errorMessages(flow) == ["YAML parse error: nesting deeper than 64 levels is not supported"])
        #expect(flow.errors.first?.keyPath == "general" + String(repeating: "[0]", count: 63))
        // Deeper still, libyaml's own limit (1000) may answer first, while scanning ahead.
        for depth in [1000, 100_000] {
            let r = yaml("general: " + String(repeating: "[", count: depth) + String(repeating: "]", count: depth))
            #expect(r.config == nil)
            #expect(r.errors.count == 1)
            #expect(r.errors.first?.message.lowercased().contains("nesting") == true)
        }
        var block = ""
        for i in 0..<200 { block += String(repeating: "  ", count: i) + "k\(i):\n" }
        #expect(errorMessages(yaml(block)) == ["YAML parse error: nesting deeper than 64 levels is not supported"])

        // A shallow config nests 4 levels; 60 is still fine for the parser (the decoder reports the type).
        let ok = yaml("general: " + String(repeating: "[", count: 60) + String(repeating: "]", count: 60))
        #expect(!errorMessages(ok).contains { $0.contains("nesting") })

        let deepTOML = toml("a = " + String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000))
        #expect(deepTOML.config == nil)
        #expect(deepTOML.errors.first?.message.hasPrefix("TOML parse error") == true)
    }

    @Test func tomlHeadersThatWouldAbortTOMLKitAreErrors() {
        // toml++ asserts (aborting the process) on these; the loader reports them instead.
        for (text, line) in [("[[[x]]]\n", 1), ("[general]\nport = 1\n[[ [x]]]\n", 3), ("[.a]\n", 1), ("[=]\n", 1),
                             ("a = 1\n  [\n", 2), ("[[\n", 1), ("[[\u{e9}]]\n", 1)] {
            let r = toml(text)
            #expect(r.config == nil)
            #expect(errorMessages(r) == ["TOML parse error: a table header must start with a key name or a quoted "
                + "key after '[' or '[['"], "\(text)")
            #expect(r.errors.first?.line == line, "\(text)")
        }
        // An earlier problem is reported first, as toml++ words it.
        let earlier = toml("a = \n[[[x]]]\n")
        #expect(earlier.errors.count == 1)
        #expect(earlier.errors.first?.message.contains("table header must start") == false)
        #expect(earlier.errors.first?.line == 1)
        // Brackets inside strings, comments and multi-line arrays are not headers.
        let fine = toml(minimalTOML + """

        [pools.other]
        application_name = \"\"\"
        [[[not a header]]]\"\"\"
        [pools.other.x]
        options = '[=]' # [[[
        y = [
          [[1]], [ [2] ],
        ]
        """)
        #expect(!fine.hasErrors, "\(fine.errors)")
        #expect(fine.config?.pools["other"]?.applicationName == "[[[not a header]]]")
    }

    @Test func documentShape() {
        let two = yaml("general:\n  port: 1\n---\npools: {}\n")
        #expect(errorMessages(two) == ["YAML parse error: expected a single document in the stream, but found "
            + "another document"])
        #expect(two.errors.first?.line == 3)
        #expect(errorMessages(yaml("- a\n- b\n")) == ["YAML parse error: the document root must be a mapping, "
            + "found array"])
        #expect(errorMessages(yaml("general:\n  ? [a]\n  : 1\n")) == ["YAML parse error: mapping keys must be scalars"])
        let syntax = yaml("general:\n  admin_username: a\n  bad: [1, 2\n")
        #expect(syntax.errors.count == 1)
        #expect(syntax.errors.first?.message.hasPrefix("YAML parse error: ") == true)
        #expect(syntax.errors.first?.message.contains("^") == true)  // snippet with a caret
        #expect(syntax.errors.first?.line != nil)
        // Explicit document markers and an empty document are fine.
        #expect(yaml("---\n" + minimalYAML + "\n...\n").config == yaml(minimalYAML).config)
        #expect(errorMessages(yaml("")) == errorMessages(yaml("# only a comment\n")))
    }

    // MARK: Scalars

    /// The typing of the old Yams-composer path (kept in the reader, partly with fast paths).
    static func yamsTyped(_ s: String) -> ConfigValue? {
        let node = Node.scalar(.init(s, Tag(.implicit), .plain))
        switch Tag.Name(rawValue: node.tag.rawValue) {
        case .null: return nil
        case .bool: return .bool(node.bool ?? false)
        case .int: return node.int.map { .integer(Int64($0)) } ?? .string(s)
        case .float: return node.float.map { .float($0) } ?? .string(s)
        default: return .string(s)
        }
    }

    @Test func plainScalarsAreTypedAsBefore() {
        var samples = [
            "", "~", "null", "Null", "NULL", "nULL", "yes", "Yes", "YES", "yEs", "no", "No", "y", "n", "on", "On",
            "off", "OFF", "true", "True", "TRUE", "tRUE", "false", "False", "0", "00", "0755", "0o17", "0x1F",
            "0b101", "1_000", "+5", "-5", "12:30", "-1:30:00", "1:60", "3.5", "1e3", "1.5e-3", ".5", ".inf",
            "-.Inf", ".nan", "2024-01-01", "2024-01-01 10:00:00", "<<", "=", "abc", "a1", "127.0.0.1",
            "10.0.0.0/8", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
            "123456789012345678", "1234567890123456789", "99999999999999999999", "5s", "256MB", "md5abc",
            "SCRAM-SHA-256$4096:abc=", "transaction", "0.0.0.0", "1.0", "١٢٣", "é", "1 2", "1__0",
        ]
        var rng = SplitMix64(seed: 0xC0FFEE)
        let alphabet = Array("0123456789_:.+-eExXoObBaAfFnNyYtTlL~")
        for _ in 0..<3000 {
            samples.append(String((0..<Int(rng.next() % 8 + 1)).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }))
        }
        for s in samples {
            let ours = YAMLReader.scalarValue(s, tag: nil, plain: true)
            if s.contains(":"), s.count > 12 {
                continue  // base 60 beyond Int64 traps in Yams; ours is checked below
            }
            if ours == nil || Self.yamsTyped(s) == nil {
                #expect(ours == nil && Self.yamsTyped(s) == nil, "\(s)")
                continue
            }
            #expect("\(ours!)" == "\(Self.yamsTyped(s)!)", "\(s)")
        }
        #expect(YAMLReader.scalarValue("1:30", tag: nil, plain: true) == .integer(90))
        #expect(YAMLReader.scalarValue("-1:00:01", tag: nil, plain: true) == .integer(-3601))
        #expect(YAMLReader.scalarValue("1_0:00", tag: nil, plain: true) == .integer(600))
        // Beyond Int64 in base 60: kept as text (Yams' own constructor would trap here).
        #expect(YAMLReader.scalarValue("1:0:0:0:0:0:0:0:0:0:0:0", tag: nil, plain: true)
            == .string("1:0:0:0:0:0:0:0:0:0:0:0"))
        #expect(YAMLReader.scalarValue("5", tag: "tag:yaml.org,2002:str", plain: true) == .string("5"))
        #expect(YAMLReader.scalarValue("yes", tag: nil, plain: false) == .string("yes"))

        let r = yamlWith(general: "port: 1:0:0:0:0:0:0:0:0:0:0:0\nbacklog: 1:30")
        #expect(r.config == nil)
        #expect(r.errors.map(\.keyPath) == ["general.port"])
    }

    // MARK: Fuzz

    @Test func seededMutationFuzz() throws {
        let yamlSeeds = [minimalYAML, try String(contentsOf: fixturesDir.appendingPathComponent("pg_doorman.yaml"),
                                                 encoding: .utf8)]
        let tomlSeeds = [minimalTOML, try String(contentsOf: fixturesDir.appendingPathComponent("pg_doorman.toml"),
                                                 encoding: .utf8)]
        var rng = SplitMix64(seed: 20_261_204)
        var outcomes = [0, 0]  // loaded, rejected
        for iteration in 0..<2000 {
            let isYAML = iteration % 2 == 0
            let seeds = isYAML ? yamlSeeds : tomlSeeds
            var bytes = Array(seeds[Int(rng.next() % UInt64(seeds.count))].utf8)
            for _ in 0..<(1 + rng.next() % 3) { mutate(&bytes, &rng) }
            let text = String(decoding: bytes, as: UTF8.self)
            let r = ConfigLoader.load(text: text, format: isYAML ? .yaml : .toml, file: isYAML ? "f.yaml" : "f.toml")
            // Either a config, or at least one error — never both, never neither.
            #expect((r.config != nil) != r.hasErrors, "iteration \(iteration): \(r.diagnostics.prefix(3))")
            #expect(r.diagnostics.allSatisfy { !$0.message.isEmpty }, "iteration \(iteration)")
            outcomes[r.config == nil ? 1 : 0] += 1
        }
        // The mutations are neither all harmless nor all fatal.
        #expect(outcomes[0] > 50 && outcomes[1] > 50, "\(outcomes)")
    }
}

/// Deterministic 64-bit generator (SplitMix64) for the seeded tests.
private let fuzzTokens: [String] = [
    "&a ", "*a", "&a [1, 2]", "*a\n", "<<: *a\n", "? ", ": ", "- ", "\n", "\t", "\"", "'", "#", "|", ">", "{", "}",
    "[", "]", ",", "=", "[[", "]]", "\0", "\u{FEFF}", "---\n", "...\n", "!!int ", "!!binary ", "!custom ", "%YAML 1.1\n",
    "\\u0000", "1:0:0:0:0:0:0:0:0:0:0:0", "99999999999999999999999", "-1", "0x", ".inf", "~", "null", "yes",
    "é", "\u{202E}", "\r\n", "pools:\n", "general:\n", "users:\n", "[pools.x]\n", "[[pools.x.users]]\n",
]

/// One random edit: byte flips, truncation, deletion, anchors/aliases, deep nesting, duplicated or swapped lines.
private func mutate(_ b: inout [UInt8], _ rng: inout SplitMix64) {
    let pos = rng.below(b.count + 1)
    switch rng.below(9) {
    case 0:
        for _ in 0...rng.below(4) where !b.isEmpty { b[rng.below(b.count)] = UInt8(truncatingIfNeeded: rng.next()) }
    case 1:
        b.removeSubrange(pos...)
    case 2:
        let end = min(b.count, pos + rng.below(64))
        b.removeSubrange(pos..<end)
    case 3, 4:
        b.insert(contentsOf: Array(fuzzTokens[rng.below(fuzzTokens.count)].utf8), at: pos)
    case 5:
        let depth = 1 + rng.below(3000)
        let open = ["[", "{a: ", "- ", "a:\n" + String(repeating: " ", count: 2)][rng.below(4)]
        b.insert(contentsOf: Array(String(repeating: open, count: depth).utf8), at: pos)
    case 6, 7:
        // Duplicate or swap whole lines (duplicate keys, misplaced sections).
        var lines = b.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map(Array.init)
        guard lines.count > 1 else { return }
        let i = rng.below(lines.count), j = rng.below(lines.count)
        if rng.below(2) == 0 { lines.insert(lines[i], at: j) } else { lines.swapAt(i, j) }
        b = Array(lines.joined(separator: [UInt8(ascii: "\n")]))
    default:
        // Anchor a random key's value and alias it elsewhere.
        b.insert(contentsOf: Array(" &x".utf8), at: pos)
        let other = rng.below(b.count + 1)
        b.insert(contentsOf: Array(" *x".utf8), at: other)
    }
}
