import Dispatch
import NIOConcurrencyHelpers
import NIOCore
import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import Pooler

@Suite struct RelayLoopTests {
    @Test func tasksRunInOrderOnTheLoopThread() throws {
        let loop = try RelayLoop(name: "test relay")
        defer { loop.syncShutdown() }
        #expect(!loop.inEventLoop)
        let seen = NIOLockedValueBox<[Int]>([])
        let done = DispatchSemaphore(value: 0)
        for i in 0..<1_000 {
            loop.execute {
                precondition(loop.inEventLoop)
                seen.withLockedValue { $0.append(i) }
                if i == 999 { done.signal() }
            }
        }
        done.wait()
        #expect(seen.withLockedValue { $0 } == Array(0..<1_000))
    }

    @Test func tasksQueuedFromTheLoopRunToo() throws {
        let loop = try RelayLoop(name: "test relay")
        defer { loop.syncShutdown() }
        let done = DispatchSemaphore(value: 0)
        loop.execute {
            loop.execute { loop.execute { done.signal() } }
        }
        #expect(done.wait(timeout: .now() + 5) == .success)
    }

    @Test func futuresAndSubmitWork() throws {
        let loop = try RelayLoop(name: "test relay")
        defer { loop.syncShutdown() }
        let value = try loop.submit { 6 * 7 }.wait()
        #expect(value == 42)
        let chained = try loop.submit { 1 }.flatMap { v in loop.makeSucceededFuture(v + 1) }.wait()
        #expect(chained == 2)
    }

    @Test func scheduledTasksFireByDeadlineAndCancelledOnesNever() throws {
        let loop = try RelayLoop(name: "test relay")
        defer { loop.syncShutdown() }
        let order = NIOLockedValueBox<[Int]>([])
        let a = loop.scheduleTask(in: .milliseconds(60)) { order.withLockedValue { $0.append(3) } }
        let b = loop.scheduleTask(in: .milliseconds(20)) { order.withLockedValue { $0.append(1) } }
        let c = loop.scheduleTask(in: .milliseconds(40)) { order.withLockedValue { $0.append(2) } }
        let cancelled = loop.scheduleTask(in: .milliseconds(30)) { order.withLockedValue { $0.append(99) } }
        cancelled.cancel()
        try a.futureResult.wait()
        try b.futureResult.wait()
        try c.futureResult.wait()
        #expect(throws: EventLoopError.self) { try cancelled.futureResult.wait() }
        #expect(order.withLockedValue { $0 } == [1, 2, 3])
    }

    /// A task may schedule and cancel others while the loop runs due tasks (repeated tasks do).
    @Test func timerTasksScheduleAndCancelOthers() throws {
        let loop = try RelayLoop(name: "test relay")
        defer { loop.syncShutdown() }
        let ticks = NIOLockedValueBox(0)
        let done = DispatchSemaphore(value: 0)
        let repeated = loop.scheduleRepeatedTask(initialDelay: .milliseconds(1), delay: .milliseconds(1)) { task in
            if ticks.withLockedValue({ $0 += 1; return $0 }) == 5 {
                task.cancel()
                done.signal()
            }
        }
        #expect(done.wait(timeout: .now() + 5) == .success)
        _ = repeated
        let victimRan = NIOLockedValueBox(false)
        let victim = loop.scheduleTask(in: .milliseconds(30)) { victimRan.withLockedValue { $0 = true } }
        // Due in the same turn as the victim's cancel: the cancel comes first and wins.
        let killer = loop.scheduleTask(in: .milliseconds(10)) { victim.cancel() }
        try killer.futureResult.wait()
        #expect(throws: EventLoopError.self) { try victim.futureResult.wait() }
        #expect(!victimRan.withLockedValue { $0 })
        #expect(ticks.withLockedValue { $0 } == 5)
    }

    @Test func aDeadlineInThePastFiresAtOnce() throws {
        let loop = try RelayLoop(name: "test relay")
        defer { loop.syncShutdown() }
        let started = NIODeadline.now()
        try loop.scheduleTask(deadline: .now() - .seconds(1)) {}.futureResult.wait()
        #expect(NIODeadline.now() - started < .seconds(1))
    }

    @Test func manyCancelledTimersDoNotPileUp() throws {
        var heap = DeadlineHeap()
        let far = NIODeadline.now() + .hours(1)
        var timers: [DeadlineHeap.Timer] = []
        for _ in 0..<10_000 {
            let t = DeadlineHeap.Timer(deadline: far) {}
            heap.insert(t)
            timers.append(t)
        }
        var allCancelled = true
        for t in timers.dropLast() where !heap.cancel(t) { allCancelled = false }
        #expect(allCancelled)
        #expect(heap.count == 1)
        #expect(heap.cancelled < 10_000 / 2 + 65)
        let again = heap.cancel(timers[0])
        #expect(!again)
    }

    @Test func heapOrdersRandomDeadlinesWithTiesInInsertionOrder() {
        var heap = DeadlineHeap()
        var fired: [Int] = []
        let base = NIODeadline.uptimeNanoseconds(1_000_000)
        var expected: [(Int64, Int)] = []
        for i in 0..<500 {
            let offset = Int64.random(in: 0..<50)
            expected.append((offset, i))
            heap.insert(DeadlineHeap.Timer(deadline: base + .nanoseconds(offset)) { fired.append(i) })
        }
        heap.fire(now: base + .nanoseconds(100))
        #expect(fired == expected.sorted { $0.0 < $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }.map { $0.1 })
        #expect(heap.timeoutMilliseconds(now: base) == -1)
    }
}

/// Collects what a RelaySocket reports.
private final class Recorder: RelaySocketDelegate {
    let received = NIOLockedValueBox<[UInt8]>([])
    let closed = DispatchSemaphore(value: 0)
    let writability = NIOLockedValueBox<[Bool]>([])
    var onRead: ((ByteBuffer) -> Void)?

    func relaySocketRead(_ buffer: ByteBuffer) {
        received.withLockedValue { $0 += Array(buffer.readableBytesView) }
        onRead?(buffer)
    }
    func relaySocketReadComplete() {}
    func relaySocketWritabilityChanged(_ writable: Bool) { writability.withLockedValue { $0.append(writable) } }
    func relaySocketClosed() { closed.signal() }
}

@Suite struct RelaySocketTests {
    private func pair() -> (CInt, CInt) {
        var fds: [CInt] = [0, 0]
        let r = socketpair(AF_UNIX, CInt(SOCK_STREAM.rawValue), 0, &fds)
        precondition(r == 0)
        return (fds[0], fds[1])
    }

    /// A socket pair with our end watched by `loop`: the RelaySocket, the peer's descriptor, and what
    /// the socket reports.
    private func watchedPair(on loop: RelayLoop) throws -> (RelaySocket?, CInt, Recorder) {
        let (ours, peer) = pair()
        let recorder = Recorder()
        let socket = try loop.submit { RelaySocket(fd: ours, loop: loop, delegate: recorder) }.wait()
        return (socket, peer, recorder)
    }

    @Test func echoesAndSeesTheEndOfStream() throws {
        let loop = try RelayLoop(name: "test relay")
        defer { loop.syncShutdown() }
        let (socket, peer, recorder) = try watchedPair(on: loop)
        #expect(socket != nil)
        recorder.onRead = { socket?.write($0) }  // echo (the loop's buffer, written at once)
        let message = Array("hello relay".utf8)
        #expect(Glibc.write(peer, message, message.count) == message.count)
        var back = [UInt8](repeating: 0, count: message.count)
        var got = 0
        while got < message.count {
            let r = back.withUnsafeMutableBytes { Glibc.read(peer, $0.baseAddress! + got, message.count - got) }
            #expect(r > 0)
            if r <= 0 { break }
            got += r
        }
        #expect(back == message)
        Glibc.close(peer)
        #expect(recorder.closed.wait(timeout: .now() + 5) == .success)
        #expect(try loop.submit { loop.watchedCount }.wait() == 0)
    }

    /// The peer does not read: writes queue in order above the kernel buffer, writability turns
    /// off above the high water mark and on again when the peer catches up; nothing is lost or reordered.
    @Test func queuesInOrderWithBackpressure() throws {
        let loop = try RelayLoop(name: "test relay")
        defer { loop.syncShutdown() }
        let (socket, peer, recorder) = try watchedPair(on: loop)
        let chunks = 400, size = 4_096
        try loop.submit {
            for i in 0..<chunks {
                var b = ByteBufferAllocator().buffer(capacity: size)
                b.writeRepeatingByte(UInt8(truncatingIfNeeded: i), count: size)
                socket?.write(b)
            }
        }.wait()
        #expect(try loop.submit { socket?.holdsQueuedBytes ?? false }.wait())
        #expect(recorder.writability.withLockedValue { $0 } == [false])
        var all: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while all.count < chunks * size {
            let r = chunk.withUnsafeMutableBytes { Glibc.read(peer, $0.baseAddress, $0.count) }
            if r <= 0 { break }
            all += chunk[0..<r]
        }
        #expect(all.count == chunks * size)
        var ok = true
        for i in 0..<chunks where ok {
            for j in [0, size / 2, size - 1] where all[i * size + j] != UInt8(truncatingIfNeeded: i) {
                ok = false
            }
        }
        #expect(ok)
        // The loop sends the last bytes before it reports writability (same drain): a task queued now
        // runs after that drain, so the report is in by then.
        try loop.submit {}.wait()
        #expect(recorder.writability.withLockedValue { $0 } == [false, true])
        try loop.submit { socket?.close() }.wait()
        #expect(recorder.closed.wait(timeout: .now() + 5) == .success)
        Glibc.close(peer)
    }

    /// A hang-up while reads are paused closes the socket (epoll reports it whatever the interest:
    /// ignored, it would wake the loop on every turn).
    @Test func aHangUpWhilePausedClosesTheSocket() throws {
        let loop = try RelayLoop(name: "test relay")
        defer { loop.syncShutdown() }
        let (ours, peer) = pair()
        let recorder = Recorder()
        _ = try loop.submit { () -> RelaySocket? in
            let s = RelaySocket(fd: ours, loop: loop, delegate: recorder)
            s?.setReading(false)
            return s
        }.wait()
        Glibc.close(peer)
        #expect(recorder.closed.wait(timeout: .now() + 5) == .success)
        #expect(try loop.submit { loop.watchedCount }.wait() == 0)
    }

    @Test func pausedReadsWaitInTheKernel() throws {
        let loop = try RelayLoop(name: "test relay")
        defer { loop.syncShutdown() }
        let (ours, peer) = pair()
        let recorder = Recorder()
        let socket = try loop.submit { () -> RelaySocket? in
            let s = RelaySocket(fd: ours, loop: loop, delegate: recorder)
            s?.setReading(false)
            return s
        }.wait()
        _ = Glibc.write(peer, "abc", 3)
        usleep(50_000)
        #expect(recorder.received.withLockedValue { $0 }.isEmpty)
        try loop.submit { socket?.setReading(true) }.wait()
        for _ in 0..<100 where recorder.received.withLockedValue({ $0 }).count < 3 { usleep(10_000) }
        #expect(recorder.received.withLockedValue { $0 } == Array("abc".utf8))
        try loop.submit { socket?.close() }.wait()
        Glibc.close(peer)
    }

    /// Reads what the peer has sent so far without blocking.
    private func available(_ fd: CInt) -> [UInt8] {
        var chunk = [UInt8](repeating: 0, count: 4_096)
        let r = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, CInt(MSG_DONTWAIT)) }
        return r > 0 ? Array(chunk[0..<r]) : []
    }

    /// Corked writes reach the peer together, in order, at `uncork()`; nothing before.
    @Test func corkedWritesGoOutTogether() throws {
        let loop = try RelayLoop(name: "test relay")
        defer { loop.syncShutdown() }
        let (socket, peer, _) = try watchedPair(on: loop)
        func bytes(_ s: String) -> ByteBuffer { ByteBuffer(string: s) }
        try loop.submit {
            socket?.cork()
            socket?.write(bytes("first,"))
            socket?.write(bytes("second"))
        }.wait()
        #expect(available(peer).isEmpty)
        try loop.submit { socket?.uncork() }.wait()
        #expect(available(peer) == Array("first,second".utf8))
        try loop.submit { socket?.write(bytes("after")) }.wait()
        #expect(available(peer) == Array("after".utf8))
        try loop.submit { socket?.close() }.wait()
        Glibc.close(peer)
    }

    /// Closing while corked sends what was held first (an error reply before the close).
    @Test func closingWhileCorkedSendsWhatIsHeld() throws {
        let loop = try RelayLoop(name: "test relay")
        defer { loop.syncShutdown() }
        let (socket, peer, recorder) = try watchedPair(on: loop)
        try loop.submit {
            socket?.cork()
            socket?.write(ByteBuffer(string: "goodbye"))
            socket?.close()
            socket?.uncork()  // after the close: nothing
        }.wait()
        #expect(recorder.closed.wait(timeout: .now() + 5) == .success)
        #expect(available(peer) == Array("goodbye".utf8))
        Glibc.close(peer)
    }

    /// `readNow()` delivers what arrived before the socket was watched, without waiting for the loop.
    @Test func readNowTakesWhatIsThere() throws {
        let loop = try RelayLoop(name: "test relay")
        defer { loop.syncShutdown() }
        let (ours, peer) = pair()
        let recorder = Recorder()
        _ = Glibc.write(peer, "early", 5)
        let seen = try loop.submit { () -> [UInt8] in
            let s = RelaySocket(fd: ours, loop: loop, delegate: recorder)
            s?.readNow()
            s?.readNow()  // nothing more: no read reported, nothing closed
            let got = recorder.received.withLockedValue { $0 }
            s?.close()
            return got
        }.wait()
        #expect(seen == Array("early".utf8))
        Glibc.close(peer)
    }
}
