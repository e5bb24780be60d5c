// `pg_doorman -t`: load + validate + report, nginx-style.

import ConfigKit
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum ConfigCheck {
    /// EX_CONFIG from sysexits.h.
    public static let exitConfigError: Int32 = 78

    /// Full load + validation of `path`.
    public static func run(path: String) -> LoadResult { ConfigLoader.load(path: path) }

    /// Lines for stdout and stderr, and the exit code, without printing (testable).
    public static func render(path: String, result: LoadResult) -> (stdout: [String], stderr: [String], exitCode: Int32) {
        if result.hasErrors {
            let errors = result.errors.count
            var err = result.diagnostics.map(\.description)
            err.append("pg_doorman: configuration file \(path) test failed (\(errors) error\(errors == 1 ? "" : "s"))")
            return ([], err, exitConfigError)
        }
        return (["pg_doorman: the configuration file \(path) syntax is ok",
                 "pg_doorman: configuration file \(path) test is successful"],
                (result.warnings + (result.config.map(InertSettings.warnings) ?? [])).map(\.description), 0)
    }

    /// Prints the report (warnings/errors to stderr, success lines to stdout) and returns the exit code.
    public static func testConfigMain(path: String) -> Int32 {
        let r = render(path: path, result: run(path: path))
        for line in r.stderr { fputs(line + "\n", stderr) }
        for line in r.stdout { print(line) }
        fflush(stdout)
        return r.exitCode
    }
}
