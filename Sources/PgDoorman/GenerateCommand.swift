import ArgumentParser

/// `pg_doorman generate`: placeholder until the Generate module lands.
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate configuration for pg_doorman by connecting to PostgreSQL and auto-detecting databases and users")

    func run() throws {
        throw ValidationError("generate is not implemented yet")
    }
}
