import Testing
@testable import Pooler

@Suite struct PrometheusTextTests {
    @Test func familiesAreDeclaredOnceAndSamplesCarryTheirLabels() {
        var p = PrometheusText()
        p.family("pg_doorman_pools_clients", help: "Clients by status.")
        p.sample("pg_doorman_pools_clients", ["status": "idle", "user": "app", "database": "db"], 3)
        p.family("pg_doorman_pools_clients", help: "ignored the second time")
        p.sample("pg_doorman_pools_clients", ["status": "active", "user": "app", "database": "db"], 0)
        p.family("pg_doorman_total_memory", help: "Resident memory.")
        p.sample("pg_doorman_total_memory", [:], 1_048_576)
        #expect(p.text == """
        # HELP pg_doorman_pools_clients Clients by status.
        # TYPE pg_doorman_pools_clients gauge
        pg_doorman_pools_clients{status="idle",user="app",database="db"} 3
        pg_doorman_pools_clients{status="active",user="app",database="db"} 0
        # HELP pg_doorman_total_memory Resident memory.
        # TYPE pg_doorman_total_memory gauge
        pg_doorman_total_memory 1048576

        """)
    }

    @Test func samplesAreGroupedUnderTheirFamilyWhateverTheOrderTheyCameIn() {
        var p = PrometheusText()
        p.family("a", help: "A.")
        p.family("b", help: "B.")
        p.sample("a", ["pool": "1"], 1)
        p.sample("b", ["pool": "1"], 2)
        p.sample("a", ["pool": "2"], 3)
        #expect(p.text == """
        # HELP a A.
        # TYPE a gauge
        a{pool="1"} 1
        a{pool="2"} 3
        # HELP b B.
        # TYPE b gauge
        b{pool="1"} 2

        """)
    }

    @Test func labelValuesAndHelpAreEscaped() {
        #expect(PrometheusText.escapeLabel(#"a"b\c"# + "\nd") == #"a\"b\\c\nd"#)
        #expect(PrometheusText.escapeHelp("x\\y\nz") == #"x\\y\nz"#)
        var p = PrometheusText()
        p.sample("m", ["database": "we\"ird"], 1)
        #expect(p.text == "m{database=\"we\\\"ird\"} 1\n")
    }

    @Test func numbersAreIntegersWhenWholeAndShortestOtherwise() {
        #expect(PrometheusText.format(42) == "42")
        #expect(PrometheusText.format(0) == "0")
        #expect(PrometheusText.format(0.125) == "0.125")
        #expect(PrometheusText.format(1.5e20) == "1.5e+20")
        #expect(PrometheusText.format(.nan) == "NaN")
        #expect(PrometheusText.format(.infinity) == "+Inf")
    }
}
