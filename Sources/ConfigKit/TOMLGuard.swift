// A lexical pre-check of TOML text for the one input shape found (by the loader fuzz test) to abort the process
// inside toml++ (vendored by TOMLKit 0.6): a table header whose first key character is neither a bare-key
// character nor a quote — `[[[x]]]`, `[[ [x]]]`, `[.a]`, `[=]`, `[` at the end of a line. toml++ checks that
// character with an assertion (compiled in, debug and release alike) instead of reporting a parse error.

enum TOMLGuard {
    /// The first table header toml++ would abort on: its 1-based line and the byte offset where that line starts.
    /// Strings, comments and multi-line arrays/inline tables are skipped, so only real headers are looked at.
    static func firstUnsafeHeader(_ b: UnsafeBufferPointer<UInt8>) -> (line: Int, lineStart: Int)? {
        let n = b.count
        var i = 0, line = 1, lineStart = 0, depth = 0
        var atLineStart = true
        func at(_ k: Int) -> UInt8 { k < n ? b[k] : 0 }
        func isTriple(_ k: Int, _ q: UInt8) -> Bool { at(k) == q && at(k + 1) == q && at(k + 2) == q }

        while i < n {
            let c = b[i]
            switch c {
            case 0x0A:  // \n
                i += 1
                line += 1
                lineStart = i
                atLineStart = true
            case 0x20, 0x09, 0x0D:
                i += 1
            case UInt8(ascii: "#"):
                while i < n, b[i] != 0x0A { i += 1 }
            case UInt8(ascii: "\""), UInt8(ascii: "'"):
                atLineStart = false
                let escapes = c == UInt8(ascii: "\"")
                if isTriple(i, c) {
                    i += 3
                    while i < n {
                        if escapes, b[i] == UInt8(ascii: "\\") {
                            i += 1
                            if at(i) == 0x0A { line += 1; lineStart = i + 1 }
                            i += 1
                        } else if isTriple(i, c) {
                            i += 3
                            // Up to two more quotes belong to the content (`"""a""""`).
                            var extra = 0
                            while extra < 2, at(i) == c { i += 1; extra += 1 }
                            break
                        } else {
                            if b[i] == 0x0A { line += 1; lineStart = i + 1 }
                            i += 1
                        }
                    }
                } else {
                    i += 1
                    while i < n, b[i] != c, b[i] != 0x0A {
                        i += escapes && b[i] == UInt8(ascii: "\\") && at(i + 1) != 0x0A ? 2 : 1
                    }
                    if i < n, b[i] == c { i += 1 }
                }
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                if c == UInt8(ascii: "["), atLineStart, depth == 0, !headerIsSafe(b, open: i) {
                    return (line, lineStart)
                }
                atLineStart = false
                depth += 1
                i += 1
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                atLineStart = false
                depth = max(0, depth - 1)
                i += 1
            default:
                atLineStart = false
                i += 1
            }
        }
        return nil
    }

    /// Mirrors toml++'s table-header prologue: `[`, spaces, an optional second `[` (only directly after the first),
    /// spaces; then toml++ reports an error itself for end of input or `]`, and asserts a bare-key character or
    /// quote for anything else.
    private static func headerIsSafe(_ b: UnsafeBufferPointer<UInt8>, open: Int) -> Bool {
        let n = b.count
        var j = open + 1
        func skipSpaces() -> Bool {
            let start = j
            while j < n, b[j] == 0x20 || b[j] == 0x09 { j += 1 }
            return j > start
        }
        let hadSpace = skipSpaces()
        guard j < n else { return true }
        if b[j] == UInt8(ascii: "[") {
            if hadSpace { return true }  // "brackets must be contiguous" error
            j += 1
            _ = skipSpaces()
            guard j < n else { return true }
        }
        let d = b[j]
        return d == UInt8(ascii: "]") || d == UInt8(ascii: "\"") || d == UInt8(ascii: "'") || isBareKeyByte(d)
    }

    private static func isBareKeyByte(_ d: UInt8) -> Bool {
        (d >= UInt8(ascii: "a") && d <= UInt8(ascii: "z")) || (d >= UInt8(ascii: "A") && d <= UInt8(ascii: "Z"))
            || (d >= UInt8(ascii: "0") && d <= UInt8(ascii: "9")) || d == UInt8(ascii: "_") || d == UInt8(ascii: "-")
    }
}
