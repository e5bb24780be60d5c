// reference/CONFIG.md: every configuration key, generated from the catalogue.

public enum CatalogueMarkdown {
    static let sectionTitles: [(CatalogueSection, String, String)] = [
        (.general, "`general`", "Process-wide settings. `admin_username` and `admin_password` are required."),
        (.include, "`include`", "Further files merged into the configuration."),
        (.web, "`web` (alias `prometheus`)", "Metrics endpoint and web UI."),
        (.talos, "`talos`", "Optional top-level section; when present both keys are required."),
        (.pool, "`pools.<name>`", "One table per pool; the name is the database clients connect to."),
        (.user, "`pools.<name>.users[]`", "Users of a pool. `username`, `password` and `pool_size` are required."),
        (.authQuery, "`pools.<name>.auth_query`", "Optional password lookup for users not listed in the pool."),
    ]

    public static func render() -> String {
        var out: [String] = [
            "# pg_doorman configuration reference",
            "",
            "<!-- Generated from i18n/fields.yaml; do not edit. Regenerate with",
            "     PGDM_UPDATE_REFERENCE=1 swift test --filter ReferenceGoldenTests -->",
            "",
            "A configuration file is YAML (`.yaml`/`.yml`) or TOML (any other name). `pg_doorman generate --reference`",
            "writes a complete annotated example; `pg_doorman -t FILE` checks a file without starting the pooler.",
            "",
            "Durations typed *duration* accept milliseconds or a string with a unit (`ms`, `s`, `m`, `h`, `d`);",
            "sizes accept bytes or a string with a binary unit (`B`, `K`/`KB`, `M`/`MB`, `G`/`GB`).",
            "*Reload: no* means the change takes effect only after a restart.",
            "",
        ]
        for (section, title, intro) in sectionTitles {
            out += ["## \(title)", "", intro, ""]
            out += ["| key | type | default | reload |", "|---|---|---|---|"]
            let fields = Catalogue.fields(in: section)
            for f in fields {
                out.append("| [`\(f.key)`](#\(anchor(section, f.key))) | \(f.type.displayName) | "
                    + "`\(cell(f.defaultText))` | \(f.reloadable ? "yes" : "no") |")
            }
            out.append("")
            for f in fields {
                out += ["<a id=\"\(anchor(section, f.key))\"></a>", "### \(section.path).\(f.key)", "", f.doc, ""]
                out.append("- Type: \(f.type.displayName)")
                out.append("- Default: `\(f.defaultText)`")
                out.append("- Reload: \(f.reloadable ? "yes" : "no (restart required)")")
                if let ex = f.example { out.append("- Example: `\(ex)`") }
                out.append("")
            }
        }
        return out.joined(separator: "\n")
    }

    static func anchor(_ section: CatalogueSection, _ key: String) -> String {
        section.rawValue.replacing("_", with: "-") + "-" + key.replacing("_", with: "-")
    }

    static func cell(_ s: String) -> String { s.replacing("|", with: "\\|") }
}
