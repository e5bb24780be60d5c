import Foundation
import Testing
import TestSupport
@testable import ConfigKit

/// PEM sanity checks behind `pg_doorman -t` for tls_* and server_tls_* files.
@Suite struct PEMCheckTests {
    private func file(_ dir: URL, _ name: String, _ text: String) -> String {
        let url = dir.appendingPathComponent(name)
        try! text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    @Test func goodFilesPass() {
        let dir = makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(PEMCheck.problem(path: file(dir, "a.crt", PEMFixtures.cert), kind: .certificates) == nil)
        #expect(PEMCheck.problem(path: file(dir, "bundle.crt", PEMFixtures.cert + "\n" + PEMFixtures.cert), kind: .certificates) == nil)
        #expect(PEMCheck.problem(path: file(dir, "a.key", PEMFixtures.key), kind: .privateKey) == nil)
    }

    @Test func badFilesAreNamed() {
        let dir = makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let garbage = file(dir, "g.crt", "hello\n")
        #expect(PEMCheck.problem(path: garbage, kind: .certificates) == "No certificates found in \(garbage)")
        let cut = file(dir, "cut.crt", String(PEMFixtures.cert.prefix(100)))
        #expect(PEMCheck.problem(path: cut, kind: .certificates)?.contains("Unterminated PEM block") == true)
        let keyAsCert = file(dir, "k.crt", PEMFixtures.key)
        #expect(PEMCheck.problem(path: keyAsCert, kind: .certificates)?.contains("No certificates found") == true)
        let certAsKey = file(dir, "c.key", PEMFixtures.cert)
        #expect(PEMCheck.problem(path: certAsKey, kind: .privateKey)?.contains("No private key found") == true)
        let badBase64 = file(dir, "b.crt", "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n")
        #expect(PEMCheck.problem(path: badBase64, kind: .certificates)?.contains("Failed to parse certificate #1") == true)
    }

    @Test func validatorReportsGarbageCertificates() {
        let dir = makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let garbage = file(dir, "g.crt", "hello\n"), key = file(dir, "a.key", PEMFixtures.key)
        let r = yamlWith(general: """
        tls_certificate: "\(garbage)"
        tls_private_key: "\(key)"
        server_tls_mode: "verify-ca"
        server_tls_ca_cert: "\(garbage)"
        """)
        let messages = errorMessages(r)
        #expect(messages.contains("tls is incorrectly configured: No certificates found in \(garbage)"), "\(messages)")
        #expect(messages.contains("No certificates found in \(garbage)"), "\(messages)")
    }
}
