/// Standard base64 (RFC 4648 §4, with `=` padding), as used by SCRAM attributes and by the
/// `SCRAM-SHA-256$...` verifier format. Decoding is strict: only the standard alphabet, a length
/// that is a multiple of 4 and padding only at the end, so two spellings never name one value.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    private static let decodeTable: [UInt8] = {
        var table = [UInt8](repeating: 0xff, count: 256)
        for (index, char) in alphabet.enumerated() { table[Int(char)] = UInt8(index) }
        return table
    }()

    static func encodeBytes<S: Collection>(_ input: S) -> [UInt8] where S.Element == UInt8 {
        let bytes = Array(input)
        var out = [UInt8]()
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index + 3 <= bytes.count {
            let value = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
            out.append(alphabet[Int(value >> 18 & 0x3f)])
            out.append(alphabet[Int(value >> 12 & 0x3f)])
            out.append(alphabet[Int(value >> 6 & 0x3f)])
            out.append(alphabet[Int(value & 0x3f)])
            index += 3
        }
        let rest = bytes.count - index
        if rest == 1 {
            let value = UInt32(bytes[index]) << 16
            out.append(alphabet[Int(value >> 18 & 0x3f)])
            out.append(alphabet[Int(value >> 12 & 0x3f)])
            out.append(UInt8(ascii: "="))
            out.append(UInt8(ascii: "="))
        } else if rest == 2 {
            let value = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8
            out.append(alphabet[Int(value >> 18 & 0x3f)])
            out.append(alphabet[Int(value >> 12 & 0x3f)])
            out.append(alphabet[Int(value >> 6 & 0x3f)])
            out.append(UInt8(ascii: "="))
        }
        return out
    }

    static func encode<S: Collection>(_ input: S) -> String where S.Element == UInt8 {
        String(decoding: encodeBytes(input), as: UTF8.self)
    }

    /// `nil` when `input` is not canonical padded base64.
    static func decode<S: Collection>(_ input: S) -> [UInt8]? where S.Element == UInt8 {
        if let decoded = input.withContiguousStorageIfAvailable({ decode(chars: $0) }) { return decoded }
        return Array(input).withUnsafeBufferPointer { decode(chars: $0) }
    }

    private static func decode(chars: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        guard chars.count % 4 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(chars.count / 4 * 3)
        let equals = UInt8(ascii: "=")
        var index = 0
        while index < chars.count {
            let isLast = index + 4 == chars.count
            var group: UInt32 = 0
            var padding = 0
            for offset in 0..<4 {
                let char = chars[index + offset]
                group <<= 6
                if char == equals {
                    // Padding only in the last group, only in the last two positions, and only trailing.
                    guard isLast, offset >= 2 else { return nil }
                    padding += 1
                    continue
                }
                guard padding == 0 else { return nil }
                let value = decodeTable[Int(char)]
                guard value != 0xff else { return nil }
                group |= UInt32(value)
            }
            out.append(UInt8(truncatingIfNeeded: group >> 16))
            if padding < 2 { out.append(UInt8(truncatingIfNeeded: group >> 8)) }
            if padding < 1 { out.append(UInt8(truncatingIfNeeded: group)) }
            // Reject non-zero bits hidden in the padding (non-canonical encodings).
            if padding == 2, group & 0xffff != 0 { return nil }
            if padding == 1, group & 0xff != 0 { return nil }
            index += 4
        }
        return out
    }

    static func decode(_ text: String) -> [UInt8]? { decode(Array(text.utf8)) }
}
