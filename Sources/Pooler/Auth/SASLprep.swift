import Foundation

/// SASLprep (RFC 4013) the way PostgreSQL applies it to SCRAM passwords (src/common/saslprep.c):
///
/// - pure ASCII is used exactly as given (PostgreSQL does not even reject control characters);
/// - otherwise: map non-ASCII spaces (RFC 3454 C.1.2) to U+0020, drop the "commonly mapped to
///   nothing" characters (B.1), normalise to NFKC, then reject prohibited output (C.1.2–C.9);
/// - when the input is not valid UTF-8 or the result is prohibited, PostgreSQL falls back to the
///   raw password bytes, and so do we.
///
/// Known differences: the unassigned-code-point check (A.1, Unicode 3.2) and the bidirectional
/// check (RFC 3454 §6) are not implemented, and NFKC uses the platform's current Unicode tables.
/// Passwords hitting those corners are rare; the ASCII path, by far the common one, is exact.
public enum SASLprep {
    /// The bytes to feed into PBKDF2 for `password`.
    public static func prepare(_ password: String) -> [UInt8] {
        prepare(bytes: Array(password.utf8))
    }

    public static func prepare(bytes: [UInt8]) -> [UInt8] {
        if bytes.allSatisfy({ $0 < 0x80 }) { return bytes }
        guard let text = String(validating: bytes, as: UTF8.self) else { return bytes }

        var mapped = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            if contains(nonASCIISpaces, scalar.value) {
                mapped.append(" ")
            } else if contains(mappedToNothing, scalar.value) {
                continue
            } else {
                mapped.append(scalar)
            }
        }
        let normalised = String(mapped).precomposedStringWithCompatibilityMapping
        for scalar in normalised.unicodeScalars where isProhibited(scalar.value) {
            return bytes
        }
        return Array(normalised.utf8)
    }

    private typealias Ranges = [ClosedRange<UInt32>]

    private static func contains(_ ranges: Ranges, _ value: UInt32) -> Bool {
        ranges.contains { $0.contains(value) }
    }

    /// RFC 3454 C.1.2.
    private static let nonASCIISpaces: Ranges = [
        0x00A0...0x00A0, 0x1680...0x1680, 0x2000...0x200B, 0x202F...0x202F, 0x205F...0x205F, 0x3000...0x3000,
    ]

    /// RFC 3454 B.1.
    private static let mappedToNothing: Ranges = [
        0x00AD...0x00AD, 0x034F...0x034F, 0x1806...0x1806, 0x180B...0x180D, 0x200B...0x200D,
        0x2060...0x2060, 0xFE00...0xFE0F, 0xFEFF...0xFEFF,
    ]

    /// RFC 3454 C.1.2, C.2.1, C.2.2, C.3, C.4, C.5, C.6, C.7, C.8, C.9.
    private static let prohibited: Ranges = nonASCIISpaces + [
        0x0000...0x001F, 0x007F...0x009F, // C.2.1, C.2.2
        0x06DD...0x06DD, 0x070F...0x070F, 0x180E...0x180E, 0x200C...0x200D, 0x2028...0x2029,
        0x2060...0x2063, 0x206A...0x206F, 0xFEFF...0xFEFF, 0xFFF9...0xFFFC, 0x1D173...0x1D17A,
        0xE000...0xF8FF, 0xF0000...0xFFFFD, 0x100000...0x10FFFD, // C.3
        0xFDD0...0xFDEF, // C.4 (plus every plane's xFFFE-xFFFF, checked below)
        0xD800...0xDFFF, // C.5
        0xFFF9...0xFFFD, // C.6
        0x2FF0...0x2FFB, // C.7
        0x0340...0x0341, 0x200E...0x200F, 0x202A...0x202E, // C.8
        0xE0001...0xE0001, 0xE0020...0xE007F, // C.9
    ]

    private static func isProhibited(_ value: UInt32) -> Bool {
        value & 0xFFFE == 0xFFFE || contains(prohibited, value)
    }
}
