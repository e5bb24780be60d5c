#if canImport(Glibc)
import Glibc
#endif
import CRelay
import Atomics
import Dispatch
import Foundation
import NIOConcurrencyHelpers
import NIOCore

/// An event loop of our own for relayed plain sockets: one thread, one level-triggered epoll set.
///
/// It is an `EventLoop` (tasks, scheduled tasks, promises), so whatever a session does with its loop
/// — timers, hand-offs from the pool, futures — works unchanged when the session lives here. The
/// sockets it watches are `RelaySocket`s, which read and write with plain system calls: no channel,
/// no pipeline, no per-read boxing (see `bench/relay-floor.sh` for what that costs at the floor), and
/// the TCP listener, through a `RelayAcceptor` (clients are accepted and log in here).
///
/// Tasks from other threads go through a locked queue and wake the thread with an eventfd (one
/// write per batch); scheduled tasks wait in a deadline heap whose head sets epoll_wait's timeout.
final class RelayLoop: EventLoop, @unchecked Sendable {
    let name: String
    /// The NIO loop this one is paired with: server connections for it log in there (set once, at start).
    var companion: EventLoop?
    private let epollFD: CInt
    private let wakeFD: CInt
    /// Set by the loop's thread before `init` returns.
    private var threadID = pthread_t()
    private var thread: Thread?

    private let lock = NIOLock()
    private var queued: [() -> Void] = []  // guarded by lock
    private var wakePending = false  // guarded by lock: an eventfd write not yet consumed
    private var stopRequested = false  // guarded by lock
    private var shutdownCallbacks: [(DispatchQueue, (Error?) -> Void)] = []  // guarded by lock
    private var stopped = false  // guarded by lock
    /// Set (under the lock) with anything queued or a stop request; lets a loop turn with nothing
    /// queued skip the lock.
    private let hasQueued = ManagedAtomic<Bool>(false)

    // Loop thread only.
    private var running: [() -> Void] = []
    private var timers = DeadlineHeap()
    private var due: [DeadlineHeap.Timer] = []
    private var sockets: [RelaySocket?] = []
    private var generations: [UInt32] = []
    private var freeSlots: [Int] = []
    /// Listening sockets watched here (few: the TCP listener); their epoll tokens are
    /// `acceptorBase + index`, above every socket's (a slot would need 2^32 - 2 as its generation).
    private var acceptors: [RelayAcceptor?] = []
    /// One receive buffer for every socket of the loop: a read takes it, lends it to the socket's
    /// delegate as a local value (no retain per read) and puts it back; a delegate that keeps it
    /// makes the next read allocate a fresh one (copy on write).
    private var readBuffer: ByteBuffer?
    static let readBufferSize = 65_536
    private static let wakeToken = UInt64.max
    private static let acceptorBase = UInt64.max - 64

    /// The loop's receive buffer, taken for one read (a fresh one if it is out already).
    @inline(__always)
    func takeReadBuffer() -> ByteBuffer {
        readBuffer.take() ?? ByteBufferAllocator().buffer(capacity: Self.readBufferSize)
    }

    /// Puts the receive buffer back for the next read.
    @inline(__always)
    func returnReadBuffer(_ buffer: consuming ByteBuffer) {
        readBuffer = buffer
    }

    init(name: String) throws {
        self.name = name
        epollFD = epoll_create1(CInt(EPOLL_CLOEXEC))
        guard epollFD >= 0 else { throw IOError(errnoCode: errno, reason: "epoll_create1") }
        wakeFD = eventfd(0, CInt(EFD_CLOEXEC | EFD_NONBLOCK))
        guard wakeFD >= 0 else {
            let e = errno
            Glibc.close(epollFD)
            throw IOError(errnoCode: e, reason: "eventfd")
        }
        readBuffer = ByteBufferAllocator().buffer(capacity: Self.readBufferSize)
        var ev = epoll_event()
        ev.events = EPOLLIN.rawValue
        ev.data.u64 = Self.wakeToken
        guard epoll_ctl(epollFD, EPOLL_CTL_ADD, wakeFD, &ev) == 0 else {
            let e = errno
            Glibc.close(wakeFD)
            Glibc.close(epollFD)
            throw IOError(errnoCode: e, reason: "epoll_ctl(eventfd)")
        }
        let started = DispatchSemaphore(value: 0)
        let thread = Thread { [self] in
            threadID = pthread_self()
            // The thread's name in /proc and top (at most 15 bytes).
            _ = c_relay_name_thread(name)
            started.signal()
            run()
        }
        thread.stackSize = 1 << 20
        self.thread = thread
        thread.start()
        started.wait()
    }

    // MARK: - EventLoop

    var inEventLoop: Bool { pthread_equal(pthread_self(), threadID) != 0 }

    func execute(_ task: @escaping @Sendable () -> Void) {
        enqueue(task)
    }

    /// `execute` without the Sendable requirement (the loop's own code and sessions confined to it).
    func enqueue(_ task: @escaping () -> Void) {
        let wake: Bool = lock.withLock {
            queued.append(task)
            hasQueued.store(true, ordering: .releasing)
            if wakePending { return false }
            wakePending = true
            return true
        }
        if wake && !inEventLoop { signalWake() }
    }

    private func signalWake() {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { Glibc.write(wakeFD, $0.baseAddress, 8) }
    }

    func scheduleTask<T>(deadline: NIODeadline, _ task: @escaping @Sendable () throws -> T) -> Scheduled<T> {
        let promise = makePromise(of: T.self)
        let timer = DeadlineHeap.Timer(deadline: deadline) {
            do { promise.succeed(try task()) } catch { promise.fail(error) }
        }
        if inEventLoop { timers.insert(timer) } else { enqueue { [self] in timers.insert(timer) } }
        return Scheduled(promise: promise) { [self] in
            let cancel = { [self] in
                if timers.cancel(timer) { promise.fail(EventLoopError.cancelled) }
            }
            if inEventLoop { cancel() } else { enqueue(cancel) }
        }
    }

    func scheduleTask<T>(in delay: TimeAmount, _ task: @escaping @Sendable () throws -> T) -> Scheduled<T> {
        scheduleTask(deadline: .now() + delay, task)
    }

    func preconditionInEventLoop(file: StaticString, line: UInt) {
        precondition(inEventLoop, "not on \(name)", file: file, line: line)
    }

    func preconditionNotInEventLoop(file: StaticString, line: UInt) {
        precondition(!inEventLoop, "on \(name)", file: file, line: line)
    }

    func shutdownGracefully(queue: DispatchQueue, _ callback: @escaping @Sendable (Error?) -> Void) {
        let already: Bool = lock.withLock {
            if stopped { return true }
            shutdownCallbacks.append((queue, callback))
            stopRequested = true
            hasQueued.store(true, ordering: .releasing)
            return false
        }
        if already { return queue.async { callback(nil) } }
        signalWake()
    }

    /// Blocks until the loop's thread has ended (call off the loop).
    func syncShutdown() {
        let done = DispatchSemaphore(value: 0)
        shutdownGracefully(queue: .global()) { _ in done.signal() }
        done.wait()
    }

    // MARK: - Descriptors

    /// Watches `socket`'s descriptor (call on the loop); returns the slot to pass back.
    func register(_ socket: RelaySocket, events: UInt32) -> Int? {
        let slot: Int
        if let free = freeSlots.popLast() {
            slot = free
        } else {
            slot = sockets.count
            sockets.append(nil)
            generations.append(0)
        }
        generations[slot] &+= 1
        var ev = epoll_event()
        ev.events = events
        ev.data.u64 = UInt64(slot) | (UInt64(generations[slot]) << 32)
        guard epoll_ctl(epollFD, EPOLL_CTL_ADD, socket.fd, &ev) == 0 else {
            freeSlots.append(slot)
            return nil
        }
        sockets[slot] = socket
        return slot
    }

    /// Changes what the descriptor in `slot` is watched for.
    func modify(slot: Int, fd: CInt, events: UInt32) {
        var ev = epoll_event()
        ev.events = events
        ev.data.u64 = UInt64(slot) | (UInt64(generations[slot]) << 32)
        _ = epoll_ctl(epollFD, EPOLL_CTL_MOD, fd, &ev)
    }

    /// Stops watching (before the descriptor is closed); events already returned for the slot are dropped.
    func deregister(slot: Int, fd: CInt) {
        var ev = epoll_event()
        _ = epoll_ctl(epollFD, EPOLL_CTL_DEL, fd, &ev)
        sockets[slot] = nil
        generations[slot] &+= 1
        freeSlots.append(slot)
    }

    /// Watches a listening socket for `acceptor` (call on the loop). EPOLLEXCLUSIVE: when several
    /// loops watch one listener, a connection wakes one of them, not all. False when it cannot.
    func register(acceptor: RelayAcceptor) -> Bool {
        let index = acceptors.firstIndex { $0 == nil } ?? acceptors.count
        guard index < 64 else { return false }
        var ev = epoll_event()
        ev.events = EPOLLIN.rawValue | EPOLLEXCLUSIVE.rawValue
        ev.data.u64 = Self.acceptorBase + UInt64(index)
        guard epoll_ctl(epollFD, EPOLL_CTL_ADD, acceptor.fd, &ev) == 0 else { return false }
        if index == acceptors.count { acceptors.append(acceptor) } else { acceptors[index] = acceptor }
        return true
    }

    /// Stops watching `acceptor`'s listening socket (the socket itself stays open).
    func deregister(acceptor: RelayAcceptor) {
        guard let index = acceptors.firstIndex(where: { $0 === acceptor }) else { return }
        var ev = epoll_event()
        _ = epoll_ctl(epollFD, EPOLL_CTL_DEL, acceptor.fd, &ev)
        acceptors[index] = nil
    }

    /// Descriptors watched now (tests, SHOW).
    var watchedCount: Int { sockets.count - freeSlots.count }

    // MARK: - The loop

    private func run() {
        let capacity = 256
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: capacity)
        defer { events.deallocate() }
        while true {
            let timeout: CInt
            if hasQueued.load(ordering: .acquiring) {
                timeout = 0
            } else {
                timeout = timers.timeoutMilliseconds(now: .now())
            }
            let n = epoll_wait(epollFD, events, CInt(capacity), timeout)
            if n > 0 {
                for i in 0..<Int(n) {
                    let ev = events[i]
                    let data = ev.data.u64
                    if data >= Self.acceptorBase {
                        if data == Self.wakeToken {
                            var value: UInt64 = 0
                            _ = withUnsafeMutableBytes(of: &value) { Glibc.read(wakeFD, $0.baseAddress, 8) }
                        } else {
                            let index = Int(data - Self.acceptorBase)
                            if index < acceptors.count, let acceptor = acceptors[index] { acceptor.acceptReady() }
                        }
                        continue
                    }
                    let slot = Int(truncatingIfNeeded: data & 0xffff_ffff)
                    guard slot < sockets.count, generations[slot] == UInt32(truncatingIfNeeded: data >> 32),
                          let socket = sockets[slot]
                    else { continue }
                    socket.handle(events: ev.events)
                }
            }
            timers.takeDue(now: .now(), into: &due)
            if !due.isEmpty {
                for t in due { DeadlineHeap.run(t) }
                due.removeAll(keepingCapacity: true)
            }
            if runTasks() { break }
        }
        finish()
    }

    /// Runs the queued tasks (one batch: tasks they queue run next turn); true when the loop must stop.
    private func runTasks() -> Bool {
        guard hasQueued.load(ordering: .acquiring) else { return false }
        let stop: Bool = lock.withLock {
            swap(&running, &queued)
            wakePending = false
            hasQueued.store(stopRequested, ordering: .relaxed)
            return stopRequested
        }
        for task in running { task() }
        running.removeAll(keepingCapacity: true)
        return stop && lock.withLock { queued.isEmpty }
    }

    private func finish() {
        for case let socket? in sockets { socket.close() }
        Glibc.close(wakeFD)
        Glibc.close(epollFD)
        let callbacks: [(DispatchQueue, (Error?) -> Void)] = lock.withLock {
            stopped = true
            defer { shutdownCallbacks = [] }
            return shutdownCallbacks
        }
        for (queue, callback) in callbacks { queue.async { callback(nil) } }
    }
}

/// Scheduled tasks by deadline (ties in the order they were scheduled). Cancelled ones stay in the
/// heap without their task until they reach the top or the heap is mostly cancelled.
struct DeadlineHeap {
    final class Timer {
        let deadline: NIODeadline
        var seq: UInt64 = 0
        var task: (() -> Void)?
        var inHeap = false
        init(deadline: NIODeadline, task: @escaping () -> Void) {
            self.deadline = deadline
            self.task = task
        }
    }

    private var heap: [Timer] = []
    private var nextSeq: UInt64 = 0
    private(set) var cancelled = 0

    var count: Int { heap.count - cancelled }

    mutating func insert(_ t: Timer) {
        guard t.task != nil else { return }
        t.seq = nextSeq
        nextSeq &+= 1
        t.inHeap = true
        heap.append(t)
        siftUp(heap.count - 1)
    }

    /// True when `t` was still waiting (it will not run).
    mutating func cancel(_ t: Timer) -> Bool {
        guard t.task != nil else { return false }
        t.task = nil
        guard t.inHeap else { return true }  // taken out as due, not run yet
        cancelled += 1
        if cancelled > 64 && cancelled * 2 > heap.count { purge() }
        return true
    }

    /// epoll_wait's timeout for the earliest live deadline (-1: none), rounded up to a millisecond.
    mutating func timeoutMilliseconds(now: NIODeadline) -> CInt {
        dropCancelledTop()
        guard let first = heap.first else { return -1 }
        let ns = first.deadline.uptimeNanoseconds > now.uptimeNanoseconds
            ? first.deadline.uptimeNanoseconds - now.uptimeNanoseconds : 0
        return CInt(clamping: (ns + 999_999) / 1_000_000)
    }

    /// Moves every timer due by `now` to `due`, in deadline order (run them with `run(_:)`, outside
    /// any access to the heap: a task may schedule or cancel others).
    mutating func takeDue(now: NIODeadline, into due: inout [Timer]) {
        while let first = heap.first, first.deadline <= now {
            removeTop()
            first.inHeap = false
            if first.task != nil { due.append(first) } else { cancelled -= 1 }
        }
    }

    /// Runs a due timer's task unless it was cancelled after it was taken.
    static func run(_ t: Timer) {
        guard let task = t.task else { return }
        t.task = nil
        task()
    }

    /// Takes and runs every task due by `now` (tests).
    mutating func fire(now: NIODeadline) {
        var due: [Timer] = []
        takeDue(now: now, into: &due)
        for t in due { Self.run(t) }
    }

    private mutating func dropCancelledTop() {
        while let first = heap.first, first.task == nil {
            removeTop()
            first.inHeap = false
            cancelled -= 1
        }
    }

    private mutating func purge() {
        for t in heap where t.task == nil { t.inHeap = false }
        heap.removeAll { $0.task == nil }
        cancelled = 0
        heap.sort { Self.before($0, $1) }  // a sorted array is a heap
    }

    private static func before(_ a: Timer, _ b: Timer) -> Bool {
        a.deadline < b.deadline || (a.deadline == b.deadline && a.seq < b.seq)
    }

    private mutating func removeTop() {
        let last = heap.removeLast()
        guard !heap.isEmpty else { return }
        heap[0] = last
        siftDown(0)
    }

    private mutating func siftUp(_ i: Int) {
        var i = i
        while i > 0 {
            let parent = (i - 1) / 2
            guard Self.before(heap[i], heap[parent]) else { return }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    private mutating func siftDown(_ i: Int) {
        var i = i
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < heap.count && Self.before(heap[l], heap[m]) { m = l }
            if r < heap.count && Self.before(heap[r], heap[m]) { m = r }
            if m == i { return }
            heap.swapAt(i, m)
            i = m
        }
    }
}
