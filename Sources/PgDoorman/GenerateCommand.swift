import ArgumentParser
import ConfigKit
import Foundation
import Generate

/// `pg_doorman generate`: write a configuration from a live PostgreSQL, or the reference configuration.
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate configuration for pg_doorman by connecting to PostgreSQL and auto-detecting databases and users",
        usage: "pg_doorman generate [<options>]",
        discussion: """
            Connection settings not given as flags come from the standard libpq environment \
            (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE, ~/.pgpass ...).
            """)

    @Option(name: .customLong("host"), help: "PostgreSQL host to connect to (uses localhost if not specified) [env: PGHOST=]")
    var host: String?

    @Option(name: [.short, .long], help: "PostgreSQL port to connect to (default: 5432) [env: PGPORT=]")
    var port: Int?

    @Option(name: [.short, .long], help: "PostgreSQL user to connect as (requires superuser privileges to read pg_shadow) [env: PGUSER=]")
    var user: String?

    @Option(name: .long, help: "PostgreSQL password to connect with [env: PGPASSWORD=]")
    var password: String?

    @Option(name: [.short, .long], help: "PostgreSQL database to connect to (uses same name as user if not specified) [env: PGDATABASE=]")
    var database: String?

    @Flag(name: .long, help: "PostgreSQL connection to server via SSL/TLS")
    var ssl = false

    @Option(name: .long, help: "Pool size for the generated configuration")
    var poolSize: Int = 40

    @Flag(name: [.short, .long], help: "Session pool mode for the generated configuration")
    var sessionPoolMode = false

    @Option(name: [.short, .long], help: "Output file for the generated configuration (uses stdout if not specified)")
    var output: String?

    @Option(name: .long, help: "Override server_host in config (uses the host parameter if not specified)")
    var serverHost: String?

    @Option(name: .long, help: ArgumentHelp(
        "Instead of listing every role with its password hash, give each pool an auth_query block run as this role",
        discussion: "The query calls doorman.get_auth($1), the SECURITY DEFINER function shown in the README; set auth_query.password.",
        valueName: "role"))
    var authQueryUser: String?

    @Flag(name: .long, help: "Disable inline comments in generated config (by default, comments are included)")
    var noComments = false

    @Flag(name: .long, help: "Generate a complete reference config with example values, no PG connection needed")
    var reference = false

    @Flag(name: [.customLong("russian-comments"), .customLong("ru")], help: "Generate comments in Russian for quick start guide")
    var russianComments = false

    @Option(name: [.short, .long], help: "Output format: yaml (default) or toml. If --output is specified, format is auto-detected from file extension. This flag overrides auto-detection")
    var format: String?

    func validate() throws {
        if let format, AnnotatedFormat.resolve(explicit: format, outputPath: nil) == nil {
            throw ValidationError("invalid format '\(format)': use yaml or toml")
        }
        if poolSize < 1 { throw ValidationError("--pool-size must be at least 1") }
        if let authQueryUser, authQueryUser.isEmpty { throw ValidationError("--auth-query-user needs a role name") }
        if let port, !(1...65535).contains(port) { throw ValidationError("--port must be between 1 and 65535") }
    }

    func run() throws {
        do {
            try generate()
        } catch let error as GenerateError {
            FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }

    func generate() throws {
        let fmt = AnnotatedFormat.resolve(explicit: format, outputPath: output) ?? .yaml
        let language: CatalogueLanguage = russianComments ? .russian : .english
        let text: String
        if reference {
            let config = AnnotatedReference.config()
            text = noComments
                ? AnnotatedEmitter.plain(config, format: fmt)
                : AnnotatedEmitter.render(config, format: fmt, language: language, notes: AnnotatedReference.notes)
        } else {
            if let output { try checkWritable(output) }
            let conn = ConnectionOptions(host: host, port: port, user: user, password: password,
                                         database: database, ssl: ssl)
            let inventory = try ConfigGenerator.readInventory(conn)
            let options = GenerateOptions(
                poolSize: poolSize, sessionMode: sessionPoolMode,
                serverHost: serverHost ?? host ?? Self.firstHost(ProcessInfo.processInfo.environment["PGHOST"])
                    ?? "127.0.0.1",
                serverPort: port ?? inventory.connectedPort ?? 5432, ssl: ssl, authQueryUser: authQueryUser)
            let config = ConfigGenerator.build(inventory, options: options)
            text = noComments
                ? AnnotatedEmitter.plain(config, format: fmt)
                : AnnotatedEmitter.render(config, format: fmt, language: language,
                                          notes: [.placeholderAdmin, .generatedHba])
        }
        if let output {
            try AtomicFileWriter.write(text, to: output)
        } else {
            FileHandle.standardOutput.write(Data(text.utf8))
        }
    }

    /// Fail before connecting when the output cannot be created (the write itself is still atomic).
    func checkWritable(_ path: String) throws {
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw GenerateError.output("cannot write \(path): directory \(dir) does not exist")
        }
        if access(dir, W_OK) != 0 {
            throw GenerateError.output("cannot write \(path): \(String(cString: strerror(errno)))")
        }
        var isDirTarget: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirTarget), isDirTarget.boolValue {
            throw GenerateError.output("cannot write \(path): it is a directory")
        }
    }

    /// PGHOST may list several hosts; the first one is where pools should point.
    static func firstHost(_ env: String?) -> String? {
        guard let env, !env.isEmpty else { return nil }
        return env.split(separator: ",").first.map(String.init)
    }
}
