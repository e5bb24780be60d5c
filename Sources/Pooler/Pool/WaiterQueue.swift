import NIOCore

/// Clients waiting for a server, oldest first.
///
/// Handing a server to a waiter on the server's own event loop avoids two thread hops per
/// transaction, so `pop(preferring:)` looks a short way down the queue for such a waiter — unless
/// the oldest waiter has already waited `fairnessLimit`, which keeps the queue first-come
/// first-served in effect. Expiry is swept from the head (every waiter has the same timeout), so
/// no timer is armed per waiter. Pure: no locks, no clocks; the pool guards it.
struct WaiterQueue<Element> {
    struct Entry {
        var loopKey: ObjectIdentifier
        var enqueuedAt: NIODeadline
        var element: Element
        /// The pool's mark for a waiter queued by its anticipation rather than by a limit (the queue
        /// only carries it: the pool's entries are its waiters, with no wrapper around them).
        var anticipating = false
    }

    private var slots: [Entry?] = []
    private var head = 0
    private(set) var count = 0
    /// How far past the head to look for a same-loop waiter.
    var window = 32
    /// An oldest waiter older than this is served next whatever its loop.
    var fairnessLimit = TimeAmount.milliseconds(5)

    var isEmpty: Bool { count == 0 }

    var oldest: Entry? {
        var i = head
        while i < slots.count {
            if let e = slots[i] { return e }
            i += 1
        }
        return nil
    }

    mutating func append(_ entry: Entry) {
        slots.append(entry)
        count += 1
    }

    /// Puts a waiter back at the head (one whose connect attempt failed and that waits on, so it
    /// keeps its place: the queue stays ordered by `enqueuedAt` for `expire`).
    mutating func prepend(_ entry: Entry) {
        skipHoles()
        if head > 0 {
            head -= 1
            slots[head] = entry
        } else {
            slots.insert(entry, at: 0)
        }
        count += 1
    }

    /// The oldest waiter.
    mutating func popOldest() -> Entry? {
        skipHoles()
        guard head < slots.count, let e = slots[head] else { return nil }
        slots[head] = nil
        head += 1
        count -= 1
        compact()
        return e
    }

    /// A waiter on `loopKey` within the window, else the oldest.
    mutating func pop(preferring loopKey: ObjectIdentifier, now: NIODeadline) -> Entry? {
        skipHoles()
        guard head < slots.count, let first = slots[head] else { return nil }
        if first.loopKey == loopKey || now - first.enqueuedAt >= fairnessLimit {
            return popOldest()
        }
        var i = head + 1
        let end = min(slots.count, head + window)
        while i < end {
            if let e = slots[i], e.loopKey == loopKey {
                slots[i] = nil
                count -= 1
                return e
            }
            i += 1
        }
        return popOldest()
    }

    /// Removes and returns every waiter enqueued at or before `deadline`.
    mutating func expire(enqueuedAtOrBefore deadline: NIODeadline) -> [Entry] {
        var out: [Entry] = []
        skipHoles()
        while head < slots.count {
            guard let e = slots[head] else {
                head += 1
                continue
            }
            guard e.enqueuedAt <= deadline else { break }
            out.append(e)
            slots[head] = nil
            head += 1
            count -= 1
        }
        compact()
        return out
    }

    mutating func removeAll() -> [Entry] {
        var out: [Entry] = []
        while let e = popOldest() { out.append(e) }
        return out
    }

    private mutating func skipHoles() {
        while head < slots.count && slots[head] == nil { head += 1 }
    }

    private mutating func compact() {
        if head == slots.count {
            slots.removeAll(keepingCapacity: true)
            head = 0
        } else if head > 256 && head * 2 > slots.count {
            slots.removeFirst(head)
            head = 0
        }
    }
}
