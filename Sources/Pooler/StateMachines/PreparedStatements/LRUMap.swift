/// A bounded map that remembers use order: `set` and `touch` make a key the most recently used;
/// inserting beyond `capacity` evicts the least recently used key. O(1) per operation.
/// `capacity <= 0` means unbounded. Not thread-safe.
struct LRUMap<Key: Hashable, Value> {
    private struct Node {
        var key: Key
        var value: Value
        var newer: Int  // towards the most recently used end, -1 at the end
        var older: Int  // towards the least recently used end, -1 at the end
    }

    private var nodes: [Node?] = []
    private var freeSlots: [Int] = []
    private var index: [Key: Int] = [:]
    private var newest = -1
    private var oldest = -1
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
    }

    var count: Int { index.count }
    var isEmpty: Bool { index.isEmpty }

    func contains(_ key: Key) -> Bool { index[key] != nil }

    /// The value without changing the use order.
    func peek(_ key: Key) -> Value? {
        guard let i = index[key] else { return nil }
        return nodes[i]!.value
    }

    /// The value, making `key` the most recently used.
    mutating func get(_ key: Key) -> Value? {
        // The most recent key again (a client running one statement per transaction): no hashing.
        if newest >= 0, let node = nodes[newest], node.key == key { return node.value }
        guard let i = index[key] else { return nil }
        moveToNewest(i)
        return nodes[i]!.value
    }

    /// Inserts or replaces `key` as the most recently used; returns the evicted entry, if any.
    @discardableResult
    mutating func set(_ key: Key, _ value: Value) -> (key: Key, value: Value)? {
        if let i = index[key] {
            nodes[i]!.value = value
            moveToNewest(i)
            return nil
        }
        let node = Node(key: key, value: value, newer: -1, older: newest)
        let i: Int
        if let free = freeSlots.popLast() {
            i = free
            nodes[i] = node
        } else {
            i = nodes.count
            nodes.append(node)
        }
        if newest >= 0 { nodes[newest]!.newer = i }
        newest = i
        if oldest < 0 { oldest = i }
        index[key] = i
        if capacity > 0, index.count > capacity, oldest != i {
            let victim = nodes[oldest]!
            remove(victim.key)
            return (victim.key, victim.value)
        }
        return nil
    }

    @discardableResult
    mutating func remove(_ key: Key) -> Value? {
        guard let i = index.removeValue(forKey: key) else { return nil }
        let node = nodes[i]!
        unlink(i)
        nodes[i] = nil
        freeSlots.append(i)
        return node.value
    }

    mutating func removeAll() {
        nodes.removeAll()
        freeSlots.removeAll()
        index.removeAll()
        newest = -1
        oldest = -1
    }

    /// Entries from the most to the least recently used.
    var entriesNewestFirst: [(key: Key, value: Value)] {
        var out: [(key: Key, value: Value)] = []
        out.reserveCapacity(count)
        var i = newest
        while i >= 0 {
            out.append((nodes[i]!.key, nodes[i]!.value))
            i = nodes[i]!.older
        }
        return out
    }

    /// Values from the most to the least recently used.
    var valuesNewestFirst: [Value] { entriesNewestFirst.map(\.value) }

    private mutating func unlink(_ i: Int) {
        let n = nodes[i]!
        if n.newer >= 0 { nodes[n.newer]!.older = n.older } else { newest = n.older }
        if n.older >= 0 { nodes[n.older]!.newer = n.newer } else { oldest = n.newer }
    }

    private mutating func moveToNewest(_ i: Int) {
        guard newest != i else { return }
        unlink(i)
        nodes[i]!.older = newest
        nodes[i]!.newer = -1
        if newest >= 0 { nodes[newest]!.newer = i }
        newest = i
        if oldest < 0 { oldest = i }
    }
}
