import ConfigKit

/// What a reload changed, as one human line per setting (`pools.db.users[u].pool_size: 3 -> 9`).
/// Secrets are never printed: their lines say only that they changed.
public enum ConfigDiff {
    public static func lines(old: Config, new: Config) -> [String] {
        let a = flatten(old), b = flatten(new)
        var out: [String] = []
        for key in Set(a.keys).union(b.keys).sorted() {
            let x = a[key], y = b[key]
            if x == y { continue }
            let secret = isSecret(key)
            switch (x, y) {
            case (nil, let v?): out.append("\(key) added" + (secret ? "" : ": \(v)"))
            case (let v?, nil): out.append("\(key) removed" + (secret ? "" : " (was \(v))"))
            case (let v?, let w?): out.append(secret ? "\(key) changed" : "\(key): \(v) -> \(w)")
            default: break
            }
        }
        return out
    }

    /// The changed settings that RELOAD cannot apply (the catalogue's `reloadable: false`): they
    /// take effect at the next start or binary upgrade, which the operator is told.
    public static func restartOnly(old: Config, new: Config) -> [String] {
        let a = flatten(old), b = flatten(new)
        return Set(a.keys).union(b.keys).sorted().filter { key in
            guard a[key] != b[key], let (section, name) = catalogueKey(key) else { return false }
            return Catalogue.field(section, name)?.reloadable == false
        }
    }

    /// The catalogue's section and key of a dotted path from `flatten`.
    static func catalogueKey(_ path: String) -> (CatalogueSection, String)? {
        let parts = path.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard let last = parts.last, parts.count >= 2 else { return nil }
        switch parts[0] {
        case "general": return (.general, last)
        case "web": return (.web, last)
        case "talos": return (.talos, last)
        case "pools":
            if parts.count >= 4, parts[parts.count - 2] == "auth_query" { return (.authQuery, last) }
            if parts.count >= 4, parts[parts.count - 2].hasPrefix("users[") { return (.user, last) }
            return (.pool, last)
        default: return nil
        }
    }

    static func isSecret(_ key: String) -> Bool {
        let last = key.split(separator: ".").last.map(String.init) ?? key
        return last.contains("password") || last.contains("secret") || last.hasSuffix("private_key")
            || last == "keys"
    }

    /// Dotted path -> printable value.
    static func flatten(_ c: Config) -> [String: String] {
        var out: [String: String] = [:]
        func add(_ prefix: String, _ fields: [(String, EmitValue)]) {
            for (k, v) in fields { out[prefix + k] = render(v) }
        }
        add("general.", ConfigFields.general(c.general))
        add("web.", ConfigFields.web(c.web))
        if let t = c.talos {
            out["talos.keys"] = t.keys.joined(separator: ",")
            out["talos.databases"] = t.databases.joined(separator: ",")
        }
        for (name, p) in c.pools {
            add("pools.\(name).", ConfigFields.pool(p))
            if let q = p.authQuery { add("pools.\(name).auth_query.", ConfigFields.authQuery(q)) }
            for u in p.users {
                add("pools.\(name).users[\(u.username)].", ConfigFields.user(u).filter { $0.0 != "username" })
            }
        }
        return out
    }

    static func render(_ v: EmitValue) -> String {
        switch v {
        case .string(let s): return s
        case .integer(let s): return s
        case .bool(let b): return b ? "true" : "false"
        case .stringArray(let a): return "[" + a.joined(separator: ", ") + "]"
        case .stringMap(let m): return "{" + m.map { "\($0.0)=\($0.1)" }.joined(separator: ", ") + "}"
        case .table(let t): return "{" + t.map { "\($0.0)=\(render($0.1))" }.joined(separator: ", ") + "}"
        }
    }
}
