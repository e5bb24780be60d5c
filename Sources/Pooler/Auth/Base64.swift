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
        if let out = input.withContiguousStorageIfAvailable({ encode(bytes: $0) }) { return out }
        return Array(input).withUnsafeBufferPointer { encode(bytes: $0) }
    }

    /// Into an uninitialized array of the exact size, through raw pointers (a login encodes ~100
    /// characters; `append` with its capacity checks cost ~18 instructions a character).
    private static func encode(bytes: UnsafeBufferPointer<UInt8>) -> [UInt8] {
        let count = (bytes.count + 2) / 3 * 4
        return alphabet.withUnsafeBufferPointer { table in
            [UInt8](unsafeUninitializedCapacity: count) { out, initialized in
                var index = 0
                var o = 0
                while index + 3 <= bytes.count {
                    let value = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
                    out[o] = table[Int(value >> 18 & 0x3f)]
                    out[o + 1] = table[Int(value >> 12 & 0x3f)]
                    out[o + 2] = table[Int(value >> 6 & 0x3f)]
                    out[o + 3] = table[Int(value & 0x3f)]
                    index += 3
                    o += 4
                }
                let rest = bytes.count - index
                if rest > 0 {
                    let second = rest == 2 ? UInt32(bytes[index + 1]) << 8 : 0
                    let value = UInt32(bytes[index]) << 16 | second
                    out[o] = table[Int(value >> 18 & 0x3f)]
                    out[o + 1] = table[Int(value >> 12 & 0x3f)]
                    out[o + 2] = rest == 2 ? table[Int(value >> 6 & 0x3f)] : UInt8(ascii: "=")
                    out[o + 3] = UInt8(ascii: "=")
                    o += 4
                }
                initialized = o
            }
        }
    }

    static func encode<S: Collection>(_ input: S) -> String where S.Element == UInt8 {
        String(decoding: encodeBytes(input), as: UTF8.self)
    }

    /// `nil` when `input` is not canonical padded base64.
    static func decode<S: Collection>(_ input: S) -> [UInt8]? where S.Element == UInt8 {
        if let decoded = input.withContiguousStorageIfAvailable({ decode(chars: $0) }) { return decoded }
        return Array(input).withUnsafeBufferPointer { decode(chars: $0) }
    }

    /// The table is read through one pointer for the whole input: a lazy static read per character
    /// costs a `swift_once` check each time (~47 a SCRAM login).
    private static func decode(chars: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        decodeTable.withUnsafeBufferPointer { decode(chars: chars, table: $0) }
    }

    private static func decode(chars: UnsafeBufferPointer<UInt8>, table decodeTable: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
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
