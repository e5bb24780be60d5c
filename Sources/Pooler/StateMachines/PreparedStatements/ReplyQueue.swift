/// A first-in first-out queue for the rewriter's awaited replies: most sessions append a few
/// entries per transaction and take them all back before the next, so the queue is an array and
/// the index of its first live entry. Taking the last entry empties the array (its storage kept);
/// a queue that never empties (a client pipelining without pause) drops its taken entries once
/// they are the larger part, so its storage stays within twice what is live (plus a few slots).
struct ReplyQueue<Element> {
    private var items: ContiguousArray<Element> = []
    /// The first live entry's index in `items`.
    private var head = 0

    init() {}

    var isEmpty: Bool { head == items.count }
    var count: Int { items.count - head }
    var first: Element? { head < items.count ? items[head] : nil }

    mutating func append(_ element: Element) { items.append(element) }

    /// The first entry, taken out; the queue must not be empty.
    @discardableResult
    mutating func removeFirst() -> Element {
        let element = items[head]
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
        for i in (head + 1)..<items.count where !predicate(items[i]) { kept.append(items[i]) }
        items = kept
        head = 0
        return before - items.count
    }

    mutating func removeAll() {
        items.removeAll(keepingCapacity: true)
        head = 0
    }
}
