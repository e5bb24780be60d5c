import Testing
@testable import Pooler

/// Secrets read from `pg_authid.rolpassword` of a throwaway PostgreSQL 15 cluster
/// (`SET password_encryption = ...; CREATE ROLE <r> LOGIN PASSWORD '<p>'`); our derivation must
/// reproduce them byte for byte from the password and PostgreSQL's random salt.
@Suite struct PostgreSQLVectorsTests {
    @Test(arguments: [
        ("P", "SCRAM-SHA-256$4096:8FvqrNim4yysipagtLvUnQ==$ZnWELApBr58yUaM/67+cnANYdVUCffpbrh3GdqUlS0I=:fc6k5m9ADdHJOThS9pu8F4IQMhgIxtOJZxka52X/aPA="),
        ("correct horse battery staple", "SCRAM-SHA-256$4096:bzWHtd5Z1W8o9lo1g5oLlQ==$RlDIyz2nxtMNiAJ2uJ624Py9AJqMsc4UqHw2F2rg7BE=:2vANkHhtdxMerJ65vVs8nAnqzXSkr2eIoKUhUr+Zrsg="),
        ("pässwörd", "SCRAM-SHA-256$4096:czwCmk+k2L5smMXdFolvwQ==$b0jruPk2Qw8L4ZmE1XS4tVInhwvmgDMo5Pwrsnhtw4E=:Ll7PhcNf59VZtdCCqi+JWHXMWi4TAf8LlVnfmnBR9RQ="),
        // NBSP -> space, U+2168 ROMAN NUMERAL NINE -> "IX" (NFKC), soft hyphen dropped: "a IXb".
        ("a\u{00A0}\u{2168}\u{00AD}b", "SCRAM-SHA-256$4096:bQOarZRcOurEYOVrmG8PZg==$WtC1eSnxNkpURq95mFeaRsnbcwR2r9/cUD4tv5VrWFE=:Qj2lruGOkU7oHiDtmCil6XiLdD78k1KSjoQcaNCb8Ww="),
    ])
    func scramVerifierMatchesPostgreSQL(password: String, stored: String) throws {
        let parsed = try ScramVerifier(parsing: stored)
        let derived = ScramVerifier.derive(password: password, salt: parsed.salt, iterations: parsed.iterations)
        #expect(derived.formatted == stored)
    }

    @Test func md5HashMatchesPostgreSQL() {
        #expect(MD5Password.hash(password: "test", user: "m") == "md52e3fac58cc0f67f561b5f04a552e0240")
    }
}
