import Foundation
import Testing
@testable import ConfigKit

/// PEM sanity checks behind `pg_doorman -t` for tls_* and server_tls_* files.
@Suite struct PEMCheckTests {
    static let cert = """
-----BEGIN CERTIFICATE-----
MIIBmjCCAUGgAwIBAgIUPeQ0EU/qaq3Znk+BT6wthvWif4UwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTEyNDIzMTAwN1oYDzIxMjYxMDMx
MjMxMDA3WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAS2XAO88Z2Aa725h1a55XcNFIS6PMWVHB94k3Ix7+5PBhXb6OsDwxcq
IHcA4OrGk8ZiU5NZ7ei5fav27Yyh94mvo28wbTAdBgNVHQ4EFgQUNOYJvndkl5mA
LTSp6/d/KKCO7cEwHwYDVR0jBBgwFoAUNOYJvndkl5mALTSp6/d/KKCO7cEwGgYD
VR0RBBMwEYIJbG9jYWxob3N0hwR/AAABMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZI
zj0EAwIDRwAwRAIgBpp5MoFb6nDci0Ng6Q0pNpM55FMqKfrcF9xn8/EY9d0CIHMG
dILOCpjWr1Zdf78ICV/JfDIONy9hOQNT2D1AwP0Y
-----END CERTIFICATE-----
"""
    static let key = """
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgBEbClTB1NGA4mEFB
yM91TZUfRO+6qUW+tINtl7LW6uqhRANCAAS2XAO88Z2Aa725h1a55XcNFIS6PMWV
HB94k3Ix7+5PBhXb6OsDwxcqIHcA4OrGk8ZiU5NZ7ei5fav27Yyh94mv
-----END PRIVATE KEY-----
"""

    private func file(_ dir: URL, _ name: String, _ text: String) -> String {
        let url = dir.appendingPathComponent(name)
        try! text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    @Test func goodFilesPass() {
        let dir = makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(PEMCheck.problem(path: file(dir, "a.crt", Self.cert), kind: .certificates) == nil)
        #expect(PEMCheck.problem(path: file(dir, "bundle.crt", Self.cert + "\n" + Self.cert), kind: .certificates) == nil)
        #expect(PEMCheck.problem(path: file(dir, "a.key", Self.key), kind: .privateKey) == nil)
    }

    @Test func badFilesAreNamed() {
        let dir = makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let garbage = file(dir, "g.crt", "hello\n")
        #expect(PEMCheck.problem(path: garbage, kind: .certificates) == "No certificates found in \(garbage)")
        let cut = file(dir, "cut.crt", String(Self.cert.prefix(100)))
        #expect(PEMCheck.problem(path: cut, kind: .certificates)?.contains("Unterminated PEM block") == true)
        let keyAsCert = file(dir, "k.crt", Self.key)
        #expect(PEMCheck.problem(path: keyAsCert, kind: .certificates)?.contains("No certificates found") == true)
        let certAsKey = file(dir, "c.key", Self.cert)
        #expect(PEMCheck.problem(path: certAsKey, kind: .privateKey)?.contains("No private key found") == true)
        let badBase64 = file(dir, "b.crt", "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n")
        #expect(PEMCheck.problem(path: badBase64, kind: .certificates)?.contains("Failed to parse certificate #1") == true)
    }

    @Test func validatorReportsGarbageCertificates() {
        let dir = makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let garbage = file(dir, "g.crt", "hello\n"), key = file(dir, "a.key", Self.key)
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
