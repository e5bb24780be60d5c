// Light PEM sanity check for certificate and key files named in the config (`pg_doorman -t`).
// ConfigKit has no TLS library: this checks the PEM framing and base64 only; the pooler builds the real
// TLS contexts at start and stops with a clear error if a file still does not load.

import Foundation

public enum PEMCheck {
    public enum Kind: Sendable {
        /// One or more `CERTIFICATE` blocks (certificate chains, CA bundles).
        case certificates
        /// A `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` block.
        case privateKey
    }

    /// nil when `path` looks like a usable PEM file of that kind, else the problem.
    /// Unreadable files are reported by the caller's readability check, so they return nil here.
    public static func problem(path: String, kind: Kind) -> String? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        guard let text = String(data: data, encoding: .utf8) else {
            return "Certificate file \(path) is not valid UTF-8"
        }
        var blocks: [(label: String, body: String)] = []
        var current: (label: String, lines: [String])?
        for raw in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if let label = marker(line, "BEGIN") {
                if current != nil { return "Unterminated PEM block in \(path): found BEGIN without END" }
                current = (label, [])
            } else if let label = marker(line, "END") {
                guard let c = current, c.label == label else {
                    return "Malformed PEM in \(path): END \(label) without a matching BEGIN"
                }
                blocks.append((c.label, c.lines.joined()))
                current = nil
            } else if current != nil, !line.isEmpty, !line.contains(":") {
                current!.lines.append(line)
            }
        }
        if current != nil { return "Unterminated PEM block in \(path): found BEGIN without END" }
        switch kind {
        case .certificates:
            let certs = blocks.filter { $0.label == "CERTIFICATE" || $0.label == "TRUSTED CERTIFICATE" }
            if certs.isEmpty { return "No certificates found in \(path)" }
            for (i, c) in certs.enumerated() where !validDER(c.body) {
                return "Failed to parse certificate #\(i + 1) in \(path): invalid base64 or DER"
            }
        case .privateKey:
            guard let key = blocks.first(where: { $0.label.hasSuffix("PRIVATE KEY") }) else {
                return "No private key found in \(path)"
            }
            if key.label == "ENCRYPTED PRIVATE KEY" { return "Private key in \(path) is encrypted (not supported)" }
            if !validDER(key.body) { return "Failed to parse private key in \(path): invalid base64 or DER" }
        }
        return nil
    }

    /// `-----BEGIN X-----` → X.
    private static func marker(_ line: String, _ word: String) -> String? {
        let prefix = "-----\(word) ", suffix = "-----"
        guard line.hasPrefix(prefix), line.hasSuffix(suffix), line.count >= prefix.count + suffix.count else {
            return nil
        }
        return String(line.dropFirst(prefix.count).dropLast(suffix.count))
    }

    /// Base64 that decodes to something starting like a DER SEQUENCE.
    private static func validDER(_ body: String) -> Bool {
        guard let d = Data(base64Encoded: body), d.count > 2 else { return false }
        return d.first == 0x30
    }
}
