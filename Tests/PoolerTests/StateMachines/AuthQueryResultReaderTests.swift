import NIOCore
import Testing
@testable import Pooler

@Suite struct AuthQueryResultReaderTests {
    static let md5 = "md5" + String(repeating: "c", count: 32)
    static let scram = "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy"

    func body(_ write: (inout ByteBuffer) -> Void) -> ByteBuffer {
        var b = ByteBuffer()
        write(&b)
        return b
    }

    func rowDescription(_ names: [String]) -> (UInt8, ByteBuffer) {
        (UInt8(ascii: "T"), body { b in
            b.writeInteger(Int16(names.count))
            for n in names {
                b.writeString(n); b.writeInteger(UInt8(0))
                b.writeInteger(Int32(0)); b.writeInteger(Int16(0)); b.writeInteger(Int32(25))
                b.writeInteger(Int16(-1)); b.writeInteger(Int32(-1)); b.writeInteger(Int16(0))
            }
        })
    }

    func dataRow(_ values: [String?]) -> (UInt8, ByteBuffer) {
        (UInt8(ascii: "D"), body { b in
            b.writeInteger(Int16(values.count))
            for v in values {
                if let v { b.writeInteger(Int32(v.utf8.count)); b.writeString(v) } else { b.writeInteger(Int32(-1)) }
            }
        })
    }

    let ready = (UInt8(ascii: "Z"), ByteBuffer(bytes: [UInt8(ascii: "I")]))
    let parseComplete = (UInt8(ascii: "1"), ByteBuffer())
    let bindComplete = (UInt8(ascii: "2"), ByteBuffer())
    let complete = (UInt8(ascii: "C"), ByteBuffer(string: "SELECT 1\0"))

    func run(_ messages: [(UInt8, ByteBuffer)]) -> AuthQueryResultReader.Step {
        var r = AuthQueryResultReader()
        var last = AuthQueryResultReader.Step.more
        for (t, b) in messages {
            last = r.receive(type: t, body: b)
            if case .done = last { return last }
        }
        return last
    }

    func outcome(_ rows: [[String?]], columns: [String] = ["usename", "passwd"]) -> AuthQueryFetch? {
        let step = run([parseComplete, bindComplete, rowDescription(columns)] + rows.map(dataRow) + [complete, ready])
        if case .done(let o, _) = step { return o }
        return nil
    }

    @Test func oneRowWithAPasswdColumn() {
        #expect(outcome([["alice", Self.md5]]) == .found(AuthQuerySecret(password: Self.md5)))
        #expect(outcome([[Self.scram]], columns: ["rolpassword"]) == .found(AuthQuerySecret(password: Self.scram)))
        #expect(outcome([["x", Self.scram, "y"]], columns: ["a", "password", "b"])
                == .found(AuthQuerySecret(password: Self.scram)))
    }

    @Test func noRowNullOrEmptyPasswordIsNotFound() {
        #expect(outcome([]) == .notFound)
        #expect(outcome([["alice", nil]]) == .notFound)
        #expect(outcome([["alice", ""]]) == .notFound)
    }

    @Test func hostileResultsAreUnusableNotFatal() {
        guard case .unusable(let many)? = outcome([["a", Self.md5], ["a", Self.md5]]) else { Issue.record("two rows"); return }
        #expect(many.contains("2 rows"))
        guard case .unusable? = outcome([["a", "b"]], columns: ["x", "y"]) else { Issue.record("no passwd column"); return }
        guard case .unusable? = outcome([["a", "hunter2"]]) else { Issue.record("plaintext"); return }
        // A DataRow shorter than its description, and a truncated one.
        #expect(outcome([["a"]]) == .notFound)
        let truncated = (UInt8(ascii: "D"), ByteBuffer(bytes: [0, 2, 0, 0, 0, 9, 65]))
        let step = run([rowDescription(["passwd"]), truncated, complete, ready])
        #expect(step == .done(.notFound, reusable: true))
    }

    @Test func startupParametersColumn() {
        let cols = ["passwd", "startup_parameters"]
        let ok = outcome([[Self.md5, #"{"work_mem": "64MB", "statement_timeout": 5000, "jit": false}"#]], columns: cols)
        #expect(ok == .found(AuthQuerySecret(password: Self.md5, startupParameters: [
            .init(key: "jit", value: "off"), .init(key: "statement_timeout", value: "5000"),
            .init(key: "work_mem", value: "64MB"),
        ])))
        #expect(outcome([[Self.md5, nil]], columns: cols) == .found(AuthQuerySecret(password: Self.md5)))
        guard case .unusable(let why)? = outcome([[Self.md5, "{not json"]], columns: cols) else {
            Issue.record("bad JSON"); return
        }
        #expect(why.contains("startup_parameters"))
        guard case .unusable? = outcome([[Self.md5, "[1,2]"]], columns: cols) else { Issue.record("array"); return }
        guard case .unusable? = outcome([[Self.md5, #"{"a": {"b": 1}}"#]], columns: cols) else { Issue.record("nested"); return }
    }

    @Test func serverErrorAndProtocolSurprises() {
        var err = ByteBuffer()
        err.writeString("SERROR\0C42P01\0Mrelation \"nope\" does not exist\0\0")
        let step = run([(UInt8(ascii: "E"), err), ready])
        guard case .done(.unavailable(let why), let reusable) = step else { Issue.record("error"); return }
        #expect(why.contains("42P01") && reusable)
        guard case .done(.unavailable, false) = run([(UInt8(ascii: "G"), ByteBuffer())]) else { Issue.record("copy"); return }
        guard case .done(.unavailable, false) = run([(0x01, ByteBuffer())]) else { Issue.record("unknown"); return }
        // In a transaction (a query that left one open): not reusable.
        let inTx = (UInt8(ascii: "Z"), ByteBuffer(bytes: [UInt8(ascii: "T")]))
        guard case .done(_, false) = run([rowDescription(["passwd"]), inTx]) else { Issue.record("tx"); return }
    }

    @Test func requestCarriesTheUserAsAParameter() {
        var b = ByteBuffer()
        AuthQueryResultReader.request(query: "SELECT passwd FROM pg_shadow WHERE usename = $1", user: "o'brien", into: &b)
        var types: [Character] = []
        while let (t, _) = try? MessageFramer.next(&b) { types.append(Character(UnicodeScalar(t))) }
        #expect(types == ["P", "B", "D", "E", "S"])
    }
}
