import NIOCore
import NIOPosix
import Testing
@testable import Pooler

@Suite struct ConnectRetryTests {
    /// A clock the tests move by hand.
    struct FakeClock {
        var now = NIODeadline.uptimeNanoseconds(1_000_000_000)
        mutating func advance(_ t: TimeAmount) { now = now + t }
    }

    let refused = ConnectRetry.Failure.transient(reason: "connection refused")

    @Test func backoffDoublesFrom50msUpTo1s() {
        let ms = (1...8).map {
            ConnectRetry.delay(failures: $0, initial: .milliseconds(50), max: .seconds(1), jitter: 0.5).nanoseconds / 1_000_000
        }
        #expect(ms == [50, 100, 200, 400, 800, 1000, 1000, 1000])
    }

    @Test func jitterStaysWithin25Percent() {
        let low = ConnectRetry.delay(failures: 3, initial: .milliseconds(50), max: .seconds(1), jitter: 0)
        let high = ConnectRetry.delay(failures: 3, initial: .milliseconds(50), max: .seconds(1), jitter: 0.999)
        #expect(low == .milliseconds(150))
        #expect(high.nanoseconds > 249_000_000 && high.nanoseconds < 250_000_000)
        // Absurd failure counts do not overflow.
        #expect(ConnectRetry.delay(failures: 10_000, initial: .milliseconds(50), max: .seconds(1), jitter: 0.5) == .seconds(1))
    }

    @Test func transientFailuresRetryUntilTheWaiterDeadline() {
        var clock = FakeClock()
        var retry = ConnectRetry()
        let deadline = clock.now + .seconds(1)
        #expect(retry.mayAttempt(now: clock.now, opening: 3))
        var attempts = 0
        var verdict = ConnectRetry.Verdict.fail
        repeat {
            #expect(retry.mayAttempt(now: clock.now, opening: 0))
            attempts += 1
            verdict = retry.attemptFailed(refused, startedAt: clock.now, now: clock.now, waiterDeadline: deadline, jitter: 0.5)
            guard case .retry(let at) = verdict else { break }
            #expect(!retry.mayAttempt(now: clock.now, opening: 0))
            // One probe at a time while failing, even after the backoff.
            clock.now = at
            #expect(!retry.mayAttempt(now: clock.now, opening: 1))
        } while true
        // At 0, 50, 150, 350, 750 ms (before the deadline) and 1550 ms (after it: fail).
        #expect(attempts == 6)
        #expect(verdict == .fail)
        #expect(retry.lastReason == "connection refused")
    }

    @Test func successEndsTheBackoff() {
        var clock = FakeClock()
        var retry = ConnectRetry()
        _ = retry.attemptFailed(refused, startedAt: clock.now, now: clock.now, waiterDeadline: clock.now + .seconds(5), jitter: 0.5)
        _ = retry.attemptFailed(refused, startedAt: clock.now, now: clock.now + .milliseconds(60), waiterDeadline: clock.now + .seconds(5), jitter: 0.5)
        #expect(retry.consecutiveFailures == 2)
        clock.advance(.milliseconds(200))
        retry.attemptSucceeded()
        #expect(!retry.isFailing)
        #expect(retry.lastReason == nil)
        #expect(retry.mayAttempt(now: clock.now, opening: 5))
        // The next outage starts over at 50 ms.
        let v = retry.attemptFailed(refused, startedAt: clock.now, now: clock.now, waiterDeadline: clock.now + .seconds(5), jitter: 0.5)
        #expect(v == .retry(at: clock.now + .milliseconds(50)))
    }

    @Test func concurrentFailuresDoNotLengthenTheBackoff() {
        let clock = FakeClock()
        var retry = ConnectRetry()
        let started = clock.now
        let deadline = clock.now + .seconds(5)
        let first = retry.attemptFailed(refused, startedAt: started, now: started + .milliseconds(1), waiterDeadline: deadline, jitter: 0.5)
        // Three more attempts that were under way at the same time fail a moment later.
        for i in 2...4 {
            let v = retry.attemptFailed(refused, startedAt: started, now: started + .milliseconds(Int64(i)), waiterDeadline: deadline, jitter: 0.5)
            #expect(v == first)
        }
        #expect(retry.consecutiveFailures == 1)
    }

    @Test func permanentFailuresFailAtOnce() {
        let clock = FakeClock()
        var retry = ConnectRetry()
        _ = retry.attemptFailed(refused, startedAt: clock.now, now: clock.now, waiterDeadline: clock.now + .seconds(5), jitter: 0.5)
        let v = retry.attemptFailed(.permanent, startedAt: clock.now, now: clock.now, waiterDeadline: clock.now + .seconds(5), jitter: 0.5)
        #expect(v == .fail)
        #expect(!retry.isFailing)
    }

    @Test func classification() {
        func kind(_ code: SQLState) -> ConnectRetry.Failure {
            ConnectRetry.classify(ServerError(code: code, message: "m"))
        }
        #expect(kind(.invalidPassword) == .permanent)
        #expect(kind(.invalidAuthorizationSpecification) == .permanent)
        #expect(kind(.invalidCatalogName) == .permanent)
        #expect(kind(.protocolViolation) == .permanent)
        #expect(kind("42704") == .permanent)
        #expect(kind(.cannotConnectNow) == .transient(reason: "m"))  // starting up / shutting down
        #expect(kind(.adminShutdown) == .transient(reason: "m"))
        #expect(kind(.tooManyConnections) == .transient(reason: "m"))
        #expect(kind(.connectionFailure) == .transient(reason: "m"))
        #expect(ConnectRetry.classify(ServerTLSError(message: "x")) == .permanent)
        #expect(ConnectRetry.classify(PoolError.connectFailed("h:1: connection refused"))
                == .transient(reason: "h:1: connection refused"))
    }

    @Test func networkErrorsBecomeOneShortLine() throws {
        let refusedIO = IOError(errnoCode: ECONNREFUSED, reason: "connect")
        #expect(ConnectRetry.reason(refusedIO) == "connection refused")
        #expect(ConnectRetry.reason(ChannelError.connectTimeout(.seconds(2))) == "connection timed out")
        #expect(ConnectRetry.reason(ChannelError.eof) == "connection closed by the server")
        struct Odd: Error {}
        #expect(ConnectRetry.reason(Odd()) == "connection failed")
        #expect(ConnectRetry.errnoText(ENOENT) == "no such socket file")
    }

    /// A real refused connect through NIO (nobody listens on the port) maps to the short reason.
    @Test func realRefusedConnect() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let s = try ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
        let port = s.localAddress?.port ?? 1
        try s.close().wait()
        do {
            _ = try ClientBootstrap(group: group).connect(host: "127.0.0.1", port: port).wait()
            Issue.record("connected to a closed port")
        } catch {
            #expect(ConnectRetry.reason(error) == "connection refused")
            #expect(!"\(ConnectRetry.reason(error))".contains("NIO"))
        }
    }
}
