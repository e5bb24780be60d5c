import NIOCore
import Testing
@testable import Pooler

/// Fuzz targets for the typed-message parsers of `Protocol/`: `MessageScanner` (the relay's
/// boundary finder, both directions), `MessageFramer` (logins, admin, cleanup) and
/// `ServerError(body:)`. Inputs: random messages, mutated streams (bit flips, truncation, lying
/// length fields), and every stream split at random offsets. See `Fuzz` for seeds.
struct MessageScannerFuzzTests {
    struct Event: Equatable {
        var type: UInt8
        var bodyLength: Int
        var prefix: [UInt8]
        var start: Int
    }

    /// What the scanner must report for `stream` scanned whole, written the simple way: one event
    /// per message whose header and wanted prefix are in the stream, an error at the first bad length.
    static func model(_ stream: [UInt8], maxLength: Int, want: (UInt8) -> Int)
        -> (events: [Event], error: MessageScanner.ScanError?) {
        var events: [Event] = []
        var i = 0
        while stream.count - i >= 5 {
            let type = stream[i]
            let length = Int(stream[i + 1]) << 24 | Int(stream[i + 2]) << 16 | Int(stream[i + 3]) << 8 | Int(stream[i + 4])
            if length < 4 || length > maxLength { return (events, .badLength(type: type, length: length)) }
            let body = length - 4
            let w = min(want(type), body)
            guard i + 5 + w <= stream.count else { break }
            events.append(Event(type: type, bodyLength: body, prefix: Array(stream[(i + 5)..<(i + 5 + w)]), start: i))
            i += 5 + body
        }
        return (events, nil)
    }

    /// Scans `pieces` one read after another; event starts are made absolute.
    static func scan(_ pieces: [[UInt8]], maxLength: Int, want: (UInt8) -> Int)
        -> (events: [Event], error: MessageScanner.ScanError?, atBoundary: Bool) {
        var scanner = MessageScanner(maxMessageLength: maxLength)
        var events: [Event] = []
        var offset = 0
        for piece in pieces {
            do {
                try scanner.scan(piece.buffer, wantPrefix: want) { type, body, prefix, start in
                    events.append(Event(type: type, bodyLength: body, prefix: Array(prefix), start: offset + start))
                }
            } catch let error as MessageScanner.ScanError {
                return (events, error, false)
            } catch {
                Issue.record("untyped error \(error)")
                return (events, nil, false)
            }
            offset += piece.count
        }
        return (events, nil, scanner.atBoundary)
    }

    @Test(arguments: Fuzz.seeds)
    func scannerSplitAnywhereEqualsModel(seed: UInt64) {
        var rng = Fuzz.announce("MessageScanner", seed: seed)
        for iteration in 0..<Fuzz.iterations(6_000) {
            let stream = rng.chance(8) ? rng.bytes(rng.int(0..<64)) : Wire.randomStream(&rng, mutate: true)
            let maxLength = rng.chance(4) ? rng.int(4...64) : 256 * 1024 * 1024
            let wants: [UInt8: Int] = [UInt8(ascii: "Z"): 1, UInt8(ascii: "C"): rng.int(0...20),
                                       UInt8(ascii: "P"): rng.int(0...300), UInt8(ascii: "Q"): rng.int(0...8),
                                       UInt8(ascii: "S"): rng.int(0...40)]
            let want = { (t: UInt8) in wants[t] ?? 0 }
            let expected = Self.model(stream, maxLength: maxLength, want: want)
            let cuts = rng.chance(3) ? rng.cuts(stream.count) : []
            let got = Self.scan(stream.pieces(at: cuts), maxLength: maxLength, want: want)
            check(got.events == expected.events, "seed \(seed) iteration \(iteration) cuts \(cuts)")
            check(got.error == expected.error, "seed \(seed) iteration \(iteration) cuts \(cuts)")
            for e in got.events {
                // Never past the input: every reported message starts inside it, its prefix too.
                check(e.start >= 0 && e.start + 5 + e.prefix.count <= stream.count, "seed \(seed) iteration \(iteration)")
            }
        }
    }

    @Test(arguments: Fuzz.seeds)
    func scannerSplitAtEveryOffsetOfValidStreams(seed: UInt64) {
        var rng = Fuzz.announce("MessageScanner split", seed: seed)
        let want = { (t: UInt8) in t == UInt8(ascii: "Z") ? 1 : t == UInt8(ascii: "C") ? 6 : 0 }
        for iteration in 0..<Fuzz.iterations(120) {
            let stream = Wire.randomStream(&rng, mutate: false)
            let whole = Self.scan([stream], maxLength: 1 << 20, want: want)
            check(whole.error == nil && whole.atBoundary, "seed \(seed) iteration \(iteration)")
            for cut in 0...stream.count {
                let split = Self.scan(stream.pieces(at: [cut]), maxLength: 1 << 20, want: want)
                check(split.events == whole.events && split.error == nil && split.atBoundary,
                        "seed \(seed) iteration \(iteration) cut \(cut)")
            }
        }
    }

    /// Messages `MessageFramer.next` yields from `pieces` appended to one buffer as they come;
    /// each checked against the bytes it came from.
    static func frames(_ pieces: [[UInt8]], maxLength: Int) -> (messages: [[UInt8]], error: Bool, consumed: Int) {
        var acc = ByteBufferAllocator().buffer(capacity: 0)
        var messages: [[UInt8]] = []
        var consumed = 0
        for piece in pieces {
            acc.writeBytes(piece)
            while true {
                let before = acc.readableBytes
                do {
                    guard let (type, body) = try MessageFramer.next(&acc, maxLength: maxLength) else {
                        check(acc.readableBytes == before)
                        break
                    }
                    check(before - acc.readableBytes == 5 + body.readableBytes)
                    consumed += before - acc.readableBytes
                    messages.append([type] + Array(body.readableBytesView))
                } catch is MessageScanner.ScanError {
                    return (messages, true, consumed)
                } catch {
                    Issue.record("untyped error \(error)")
                    return (messages, true, consumed)
                }
            }
        }
        return (messages, false, consumed)
    }

    @Test(arguments: Fuzz.seeds)
    func framerSplitAnywhereEqualsWhole(seed: UInt64) {
        var rng = Fuzz.announce("MessageFramer", seed: seed)
        for iteration in 0..<Fuzz.iterations(4_000) {
            let stream = rng.chance(8) ? rng.bytes(rng.int(0..<64)) : Wire.randomStream(&rng, mutate: true)
            let maxLength = rng.chance(4) ? rng.int(4...64) : 10_000
            let whole = Self.frames([stream], maxLength: maxLength)
            let split = Self.frames(stream.pieces(at: rng.cuts(stream.count)), maxLength: maxLength)
            check(whole.consumed <= stream.count, "seed \(seed) iteration \(iteration)")
            check(split.messages == whole.messages && split.error == whole.error,
                    "seed \(seed) iteration \(iteration)")
            // What was framed is the input's own bytes, in order.
            var offset = 0
            for m in whole.messages {
                check(stream[offset] == m[0] && Array(stream[(offset + 5)..<(offset + 4 + m.count)]) == Array(m[1...]),
                        "seed \(seed) iteration \(iteration)")
                offset += 4 + m.count
            }
        }
    }

    @Test(arguments: Fuzz.seeds)
    func serverErrorDecodesAnyBody(seed: UInt64) {
        var rng = Fuzz.announce("ServerError", seed: seed)
        let alphabet: [UInt8] = [0, 0, UInt8(ascii: "S"), UInt8(ascii: "V"), UInt8(ascii: "C"), UInt8(ascii: "M"),
                                 UInt8(ascii: "D"), UInt8(ascii: "x"), 0xC3, 0xFF]
        for iteration in 0..<Fuzz.iterations(4_000) {
            let message = "m\(iteration)"
            var valid = ByteBufferAllocator().buffer(capacity: 64)
            ServerError(severity: "ERROR", code: .protocolViolation, message: message, detail: "d").write(into: &valid)
            let validBody = Array(valid.readableBytesView.dropFirst(5))
            // Valid bodies round-trip.
            let decoded = ServerError(body: validBody.buffer)
            check(decoded == ServerError(severity: "ERROR", code: .protocolViolation, message: message, detail: "d"))
            let input = rng.chance(2) ? rng.mutate(validBody) : rng.bytes(rng.int(0..<40), from: alphabet)
            let e = ServerError(body: input.buffer)
            check(!e.description.isEmpty, "seed \(seed) iteration \(iteration)")
        }
    }
}
