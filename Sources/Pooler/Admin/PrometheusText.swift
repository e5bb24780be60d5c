/// Prometheus text exposition format (version 0.0.4): per metric family `# HELP` and `# TYPE`, then
/// its samples (`name{label="value",...} number`) as one group, families in declaration order —
/// samples may be added in any order. Pure: the caller supplies the values.
struct PrometheusText {
    private var order: [String] = []
    private var groups: [String: String] = [:]

    /// The content type scrapers expect for this format.
    static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    var text: String { order.map { groups[$0]! }.joined() }

    /// Declares a family (once; later calls with the same name are ignored).
    mutating func family(_ name: String, help: String, type: String = "gauge") {
        guard groups[name] == nil else { return }
        order.append(name)
        groups[name] = "# HELP \(name) \(Self.escapeHelp(help))\n# TYPE \(name) \(type)\n"
    }

    /// A sample of a declared family (an undeclared one gets a group of its own, without HELP/TYPE).
    mutating func sample(_ name: String, _ labels: KeyValuePairs<String, String> = [:], _ value: Double) {
        var line = name
        if !labels.isEmpty {
            line += "{" + labels.map { "\($0.key)=\"\(Self.escapeLabel($0.value))\"" }.joined(separator: ",") + "}"
        }
        line += " " + Self.format(value) + "\n"
        if groups[name] == nil { order.append(name) }
        groups[name, default: ""] += line
    }

    mutating func sample(_ name: String, _ labels: KeyValuePairs<String, String> = [:], _ value: Int) {
        sample(name, labels, Double(value))
    }

    /// Integers without a fraction, everything else in Swift's shortest round-trip form.
    static func format(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return String(v)
    }

    /// Label values escape backslash, double quote and line feed.
    static func escapeLabel(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(c)
            }
        }
        return out
    }

    /// HELP text escapes backslash and line feed.
    static func escapeHelp(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
    }
}
