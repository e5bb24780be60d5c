// Fixed configurations used by the emitters: the `--reference` config and the commented example pools.

public enum AnnotatedReference {
    /// `md5` + md5("app_password" + "app_user"): the pg_shadow form of password `app_password` for `app_user`.
    public static let exampleHash = "md5e674212889c04c6faace937884abb736"

    /// Notes the reference output carries (the admin password is a placeholder).
    public static let notes: AnnotatedNotes = [.placeholderAdmin]

    /// The complete reference configuration written by `pg_doorman generate --reference`: defaults everywhere,
    /// port 6432, one transaction-mode pool `exampledb` at 127.0.0.1:5432 with user `app_user`.
    public static func config() -> Config {
        var c = Config()
        c.general.port = 6432
        c.general.adminUsername = "admin"
        c.general.adminPassword = "admin"
        var pool = Pool()
        pool.serverHost = "127.0.0.1"
        pool.serverPort = 5432
        pool.poolMode = .transaction
        pool.users = [User(username: "app_user", password: exampleHash, poolSize: 40)]
        c.pools = ["exampledb": pool]
        return c
    }
}

enum AnnotatedExamples {
    /// (catalogue text key of the description, pool name, pool) in output order.
    static let pools: [(String, String, Pool)] = {
        var multi = Pool()
        multi.users = [
            User(username: "reader", password: "md5a1b2c3d4e5f60718293a4b5c6d7e8f90", poolSize: 20),
            User(username: "writer",
                 password: "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0$c3RvcmVka2V5c3RvcmVka2V5c3RvcmVka2V5MDA=:c2VydmVya2V5c2VydmVya2V5c2VydmVya2V5MDA=",
                 poolSize: 10),
        ]

        var local = Pool()
        local.serverHost = "/var/run/postgresql"
        local.poolMode = .session
        local.users = [User(username: "batch", password: "md50f1e2d3c4b5a69788796a5b4c3d2e1f0", poolSize: 5)]

        var alias = Pool()
        alias.serverDatabase = "production"
        var reporter = User(username: "report_user", password: "md5112233445566778899aabbccddeeff00", poolSize: 10)
        reporter.serverUsername = "prod_reader"
        reporter.serverPassword = "prod_reader_password"
        alias.users = [reporter]

        var jwt = Pool()
        var jwtUser = User(username: "service", password: "jwt-pkey-fpath:/etc/pg_doorman/jwt-public.pem", poolSize: 10)
        jwtUser.serverUsername = "service_backend"
        jwtUser.serverPassword = "service_backend_password"
        jwt.users = [jwtUser]

        return [
            ("example_multi_user", "multi_user_db", multi),
            ("example_unix_socket", "local_db", local),
            ("example_alias", "reports", alias),
            ("example_jwt", "jwt_auth_db", jwt),
        ]
    }()
}
