import NIOCore

/// Output for a buffer of whole protocol messages of which most pass unchanged.
///
/// Messages that are kept stay runs of the input, so when nothing is edited the result is the input
/// itself (no copy). A copy is only built from the first edit on: the kept run before the edited
/// message, then what replaces or follows it.
struct ForwardRuns {
    /// The input with its reader index at the first message (`get` only reads readable bytes).
    private let whole: ByteBuffer
    private var runStart: Int
    /// The copy being built (before the first edit: the buffer to reuse, if any).
    private var out: ByteBuffer?

    /// The copy, when one is needed, is built in `reuse` (cleared) if given: a caller that keeps
    /// the buffer it got from `finish` and hands it back here saves an allocation per edited input
    /// (when nobody else holds it by then; otherwise writing to it copies, as any shared buffer).
    init(_ input: ByteBuffer, reuse: ByteBuffer? = nil) {
        whole = input
        runStart = input.readerIndex
        out = reuse
    }

    /// Whether anything was dropped, replaced or inserted (`finish` then returns a built copy).
    private(set) var edited = false

    /// The buffer given to `init` as `reuse` when no copy was needed.
    mutating func takeSpare() -> ByteBuffer? { edited ? nil : out.take() }

    /// The message at `start..<end` is kept (`keep`) or dropped, and `extra` (a replacement,
    /// synthetic messages; may be empty) follows its place. `extra` is consumed. A kept message with
    /// nothing after it just extends the current run.
    @inline(__always)
    mutating func message(at start: Int, end: Int, keep: Bool, then extra: inout ByteBuffer) {
        if keep && extra.readableBytes == 0 { return }
        splice(&extra, at: keep ? end : start, resumeAt: end)
    }

    /// The message at `start..<end` is kept (`keep`) or dropped, and `extra` (injected messages, a
    /// replacement; may be empty) goes before its place. `extra` is consumed.
    @inline(__always)
    mutating func message(at start: Int, end: Int, keep: Bool, precededBy extra: inout ByteBuffer) {
        if keep && extra.readableBytes == 0 { return }
        splice(&extra, at: start, resumeAt: keep ? start : end)
    }

    /// Ends the current run at `runEnd`, appends `extra`, and starts the next run at `resumeAt`.
    @inline(__always)
    private mutating func splice(_ extra: inout ByteBuffer, at runEnd: Int, resumeAt: Int) {
        if !edited {
            edited = true
            let capacity = whole.readableBytes + extra.readableBytes
            if out == nil { out = ByteBufferAllocator().buffer(capacity: capacity) } else { out!.clear(minimumCapacity: capacity) }
        }
        if runEnd > runStart, var run = whole.getSlice(at: runStart, length: runEnd - runStart) {
            out!.writeBuffer(&run)
        }
        out!.writeBuffer(&extra)
        runStart = resumeAt
    }

    /// What to forward for the messages up to `end` (the rest of the input is not included).
    /// (Takes the built buffer out, so that appending the last run does not copy it.)
    mutating func finish(at end: Int) -> ByteBuffer {
        guard edited, var built = out.take() else {
            return whole.getSlice(at: whole.readerIndex, length: end - whole.readerIndex) ?? ByteBuffer()
        }
        if end > runStart, var run = whole.getSlice(at: runStart, length: end - runStart) { built.writeBuffer(&run) }
        return built
    }
}
