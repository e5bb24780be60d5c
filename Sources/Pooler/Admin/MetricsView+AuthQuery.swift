/// auth_query on `/metrics`: the SHOW AUTH_QUERY figures, one label set per database.
extension MetricsView {
    func authQuery(_ out: inout PrometheusText) {
        let services = runtime.authQueries
        guard !services.isEmpty else { return }
        out.family("pg_doorman_auth_query_cache",
                   help: "auth_query cache by type: entries (now), hits, misses, refetches, rate_limited (since start).")
        out.family("pg_doorman_auth_query_auth", help: "Logins checked against auth_query passwords, by result (success, failure).")
        out.family("pg_doorman_auth_query_executor", help: "auth_query lookups run against PostgreSQL (queries) and those that failed (errors).")
        out.family("pg_doorman_auth_query_dynamic_pools",
                   help: "Dynamic auth_query pools: current, created and destroyed (since start).")
        for service in services {
            let x = service.snapshot()
            let db = service.database
            for (type, n) in [("entries", x.cacheEntries), ("hits", x.cache.hits), ("misses", x.cache.misses),
                              ("refetches", x.cache.refetches), ("rate_limited", x.cache.rateLimited)] {
                out.sample("pg_doorman_auth_query_cache", ["type": type, "database": db], n)
            }
            out.sample("pg_doorman_auth_query_auth", ["result": "success", "database": db], x.counters.authSuccess)
            out.sample("pg_doorman_auth_query_auth", ["result": "failure", "database": db], x.counters.authFailure)
            out.sample("pg_doorman_auth_query_executor", ["type": "queries", "database": db], x.counters.executorQueries)
            out.sample("pg_doorman_auth_query_executor", ["type": "errors", "database": db], x.counters.executorErrors)
            for (type, n) in [("current", x.dynamicPools), ("created", x.counters.poolsCreated),
                              ("destroyed", x.counters.poolsDestroyed)] {
                out.sample("pg_doorman_auth_query_dynamic_pools", ["type": type, "database": db], n)
            }
        }
    }
}
