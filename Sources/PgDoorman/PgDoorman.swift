import ArgumentParser
import ConfigKit
import Foundation
import Logging
import Pooler
import Validate

@main
struct PgDoorman: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pg_doorman",
        abstract: "PgDoorman: Nextgen PostgreSQL Pooler (based on PgCat)",
        subcommands: [GenerateCommand.self]
    )

    @Argument(help: ArgumentHelp("Configuration file (YAML if it ends in .yaml/.yml, else TOML) [env: CONFIG_FILE=]"))
    var configFile: String?

    @Option(name: [.short, .long], help: "Log level: error, warn, info, debug, trace [env: LOG_LEVEL=] [default: INFO]")
    var logLevel: String?

    @Option(name: [.customShort("F"), .long], help: "Log format [env: LOG_FORMAT=] [default: text] [possible values: text, structured, debug]")
    var logFormat: String?

    @Flag(name: [.short, .long], help: "disable colors in the log output [env: NO_COLOR=]")
    var noColor = false

    @Flag(name: [.short, .long], help: "run as daemon [env: DAEMON=]")
    var daemon = false

    @Flag(name: [.short, .long], help: "Test the configuration file and exit (nginx-style)")
    var testConfig = false

    @Flag(name: [.customShort("V"), .long], help: "Print version")
    var version = false

    @Option(name: .long, help: ArgumentHelp("Listening socket inherited from the previous process during a binary upgrade [env: INHERIT_FD=]", visibility: .hidden))
    var inheritFd: Int32?

    /// The optional CONFIG_FILE positional would swallow the word `generate`, so the subcommand is dispatched
    /// before the root command is parsed.
    static func main() {
        let args = Array(CommandLine.arguments.dropFirst())
        if args.contains("-V") || args.contains("--version") {
            print("pg_doorman \(PoolerVersion.semver)")
            return
        }
        if args.first == "generate" {
            GenerateCommand.main(Array(args.dropFirst()))
        } else {
            Self.main(args)
        }
    }

    mutating func run() throws {
        let env = ProcessInfo.processInfo.environment
        let path = configFile ?? env["CONFIG_FILE"] ?? "pg_doorman.toml"
        if testConfig {
            throw ExitCode(ConfigCheck.testConfigMain(path: path))
        }
        let levelText = logLevel ?? env["LOG_LEVEL"] ?? "info"
        guard let level = LogLevels.parseLevel(levelText) else {
            throw ValidationError("invalid log level '\(levelText)' (error, warn, info, debug, trace)")
        }
        let formatText = (logFormat ?? env["LOG_FORMAT"] ?? "text").lowercased()
        guard let format = LogFormat(rawValue: formatText) else {
            throw ValidationError("invalid log format '\(formatText)' (text, structured, debug)")
        }
        let noColorEnv = !(env["NO_COLOR"] ?? "").isEmpty
        let daemonize = daemon || Self.truthy(env["DAEMON"])
        let options = ProcessOptions(
            configPath: path, logLevel: level, logFormat: format,
            color: !noColor && !noColorEnv && isatty(STDERR_FILENO) == 1,
            daemon: daemonize, inheritFd: inheritFd ?? env["INHERIT_FD"].flatMap { Int32($0) })
        throw ExitCode(ProcessRunner.main(options))
    }

    static func truthy(_ s: String?) -> Bool {
        guard let s = s?.lowercased() else { return false }
        return ["1", "true", "yes", "on"].contains(s)
    }
}
