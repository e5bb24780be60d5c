/// Byte comparison whose running time depends only on the lengths of its inputs, never on where
/// they first differ. Used for every secret comparison in authentication (MD5 responses, SCRAM
/// StoredKey and ServerSignature) so a peer cannot learn a prefix of the expected value by timing.
public enum ConstantTime {
    /// `true` when both sequences have the same length and the same bytes. Lengths are not secret
    /// (they are fixed by the protocol), so a length mismatch returns early.
    public static func equals<A: Collection, B: Collection>(_ lhs: A, _ rhs: B) -> Bool
    where A.Element == UInt8, B.Element == UInt8 {
        guard lhs.count == rhs.count else { return false }
        var difference: UInt8 = 0
        for (left, right) in zip(lhs, rhs) {
            difference |= left ^ right
        }
        return difference == 0
    }
}
