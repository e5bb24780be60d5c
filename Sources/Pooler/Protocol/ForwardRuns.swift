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
    private var out: ByteBuffer?

    init(_ input: ByteBuffer) {
        whole = input
        runStart = input.readerIndex
    }

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
        if out == nil { out = ByteBufferAllocator().buffer(capacity: whole.readableBytes + extra.readableBytes) }
        if runEnd > runStart, var run = whole.getSlice(at: runStart, length: runEnd - runStart) {
            out!.writeBuffer(&run)
        }
        out!.writeBuffer(&extra)
        runStart = resumeAt
    }

    /// What to forward for the messages up to `end` (the rest of the input is not included).
    /// (Takes the built buffer out, so that appending the last run does not copy it.)
    mutating func finish(at end: Int) -> ByteBuffer {
        guard var built = out.take() else {
            return whole.getSlice(at: whole.readerIndex, length: end - whole.readerIndex) ?? ByteBuffer()
        }
        if end > runStart, var run = whole.getSlice(at: runStart, length: end - runStart) { built.writeBuffer(&run) }
        return built
    }
}
