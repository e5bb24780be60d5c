/// A first-in first-out queue for the rewriter's awaited replies: most sessions append a few
/// entries per transaction and take them all back before the next, so the queue is an array and
/// the index of its first live entry. Taking the last entry empties the array (its storage kept);
/// a queue that never empties (a client pipelining without pause) drops its taken entries once
/// they are the larger part, so its storage stays within twice what is live (plus a few slots).
/// It counts its live entries that are not plain, so `allPlain` needs no walk.
struct ReplyQueue<Element: ReplyQueueEntry> {
    private var items: ContiguousArray<Element> = []
    /// The first live entry's index in `items`.
    private var head = 0
    /// Live entries whose `isPlain` is false.
    private var notPlain = 0

    init() {}

    var isEmpty: Bool { head == items.count }
    var count: Int { items.count - head }
    var first: Element? { head < items.count ? items[head] : nil }

    /// Every live entry is plain (true when empty).
    var allPlain: Bool { notPlain == 0 }

    mutating func append(_ element: Element) {
        if !element.isPlain { notPlain += 1 }
        items.append(element)
    }

    /// The first entry, taken out; the queue must not be empty.
    @discardableResult
    mutating func removeFirst() -> Element {
        let element = items[head]
        if !element.isPlain { notPlain -= 1 }
        head += 1
        if head == items.count {
            items.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 16 && head * 2 >= items.count {
            items.removeFirst(head)
            head = 0
        }
        return element
    }

    mutating func popFirst() -> Element? { isEmpty ? nil : removeFirst() }

    func contains(where predicate: (Element) -> Bool) -> Bool {
        var i = head
        while i < items.count {
            if predicate(items[i]) { return true }
            i += 1
        }
        return false
    }

    func first(where predicate: (Element) -> Bool) -> Element? {
        var i = head
        while i < items.count {
            if predicate(items[i]) { return items[i] }
            i += 1
        }
        return nil
    }

    /// Removes the entries after the first that match; returns how many.
    mutating func removeAllAfterFirst(where predicate: (Element) -> Bool) -> Int {
        guard count > 1 else { return 0 }
        let before = count
        var kept = ContiguousArray<Element>()
        kept.reserveCapacity(count)
        kept.append(items[head])
        for i in (head + 1)..<items.count {
            if !predicate(items[i]) {
                kept.append(items[i])
            } else if !items[i].isPlain {
                notPlain -= 1
            }
        }
        items = kept
        head = 0
        return before - items.count
    }

    mutating func removeAll() {
        items.removeAll(keepingCapacity: true)
        head = 0
        notPlain = 0
    }
}

/// What a `ReplyQueue` counts of its entries.
protocol ReplyQueueEntry {
    var isPlain: Bool { get }
}
