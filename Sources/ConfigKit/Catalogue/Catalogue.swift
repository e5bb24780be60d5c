// The field catalogue: for every configuration key its type, default, reload behaviour and the comments the
// annotated emitters write. The data lives in i18n/fields.yaml and is compiled in through the generated
// CatalogueData.swift, so the binary never looks for the YAML at run time.

/// Language of emitted comments.
public enum CatalogueLanguage: String, Sendable, CaseIterable {
    case english = "en"
    case russian = "ru"
}

/// Where a key lives in the configuration tree.
public enum CatalogueSection: String, Sendable, CaseIterable {
    case general, include, web, talos, pool, user
    case authQuery = "auth_query"

    /// Dotted prefix used in documentation (`pools.<name>.users[]`...).
    public var path: String {
        switch self {
        case .general: return "general"
        case .include: return "include"
        case .web: return "web"
        case .talos: return "talos"
        case .pool: return "pools.<name>"
        case .user: return "pools.<name>.users[]"
        case .authQuery: return "pools.<name>.auth_query"
        }
    }
}

/// How a key's value is written and read.
public enum CatalogueValueType: String, Sendable {
    /// `string`: quoted text; `integer`/`bool`: plain; `duration`: ms or "5s"; `millis`: integer ms only;
    /// `seconds`: integer seconds; `bytes`: bytes or "1MB"; `octal`: quoted octal text; `poolMode`: session or
    /// transaction; `list`: list of strings; `map`: string map; `hba`: pg_hba rules; `users`, `table`: sub-sections.
    case string, integer, bool, duration, millis, seconds, bytes, octal, poolMode, list, map, hba, users, table

    /// Human-readable type name for the markdown reference.
    public var displayName: String {
        switch self {
        case .string: return "string"
        case .integer: return "integer"
        case .bool: return "boolean"
        case .duration: return "duration (ms or \"5s\")"
        case .millis: return "milliseconds (integer)"
        case .seconds: return "seconds (integer)"
        case .bytes: return "size (bytes or \"1MB\")"
        case .octal: return "octal string"
        case .poolMode: return "transaction | session"
        case .list: return "list of strings"
        case .map: return "map of strings"
        case .hba: return "pg_hba rules"
        case .users: return "list of users"
        case .table: return "table"
        }
    }
}

/// A text in both languages.
public struct CatalogueText: Sendable, Equatable {
    public let en: String
    public let ru: String

    public init(en: String, ru: String) {
        self.en = en
        self.ru = ru
    }

    public func text(_ language: CatalogueLanguage) -> String {
        switch language {
        case .english: return en
        case .russian: return ru
        }
    }
}

/// A titled group of keys (one separator in the annotated output).
public struct CatalogueGroup: Sendable, Equatable {
    public let id: String
    public let section: CatalogueSection
    public let title: CatalogueText
}

/// One configuration key.
public struct CatalogueField: Sendable, Equatable {
    public let section: CatalogueSection
    public let key: String
    public let type: CatalogueValueType
    public let group: String
    /// Default as the reader should see it ("3s", "unset", "required").
    public let defaultText: String
    /// True when RELOAD / SIGHUP applies a change without a restart.
    public let reloadable: Bool
    /// Short comment written above the key.
    public let comment: CatalogueText
    /// Longer English documentation (markdown).
    public let doc: String
    /// Example value for a commented-out optional key (one list element for lists, `k=v` for maps).
    public let example: String?
}

public enum Catalogue {
    public static var groups: [CatalogueGroup] { generatedGroups }
    public static var fields: [CatalogueField] { generatedFields }

    /// Fields of one section in catalogue order.
    public static func fields(in section: CatalogueSection) -> [CatalogueField] {
        generatedFields.filter { $0.section == section }
    }

    /// Fields of one group in catalogue order.
    public static func fields(inGroup id: String) -> [CatalogueField] {
        generatedFields.filter { $0.group == id }
    }

    public static func groups(in section: CatalogueSection) -> [CatalogueGroup] {
        generatedGroups.filter { $0.section == section }
    }

    public static func field(_ section: CatalogueSection, _ key: String) -> CatalogueField? {
        generatedFields.first { $0.section == section && $0.key == key }
    }

    public static func group(_ id: String) -> CatalogueGroup? { generatedGroups.first { $0.id == id } }

    /// A boilerplate text; a missing key is a programming error caught by the unit tests.
    public static func text(_ key: String, _ language: CatalogueLanguage) -> String {
        guard let t = generatedTexts[key] else { preconditionFailure("catalogue text '\(key)' is missing") }
        return t.text(language)
    }

    public static var textKeys: [String] { generatedTexts.keys.sorted() }
}
