import Testing
@testable import Pooler

@Suite struct WaiterAlarmTests {
    final class Counter { var starts = 0 }

    private func alarm() -> (WaiterAlarm, Counter) {
        let alarm = WaiterAlarm(), counter = Counter()
        alarm.onStart = { counter.starts += 1 }
        return (alarm, counter)
    }

    @Test func firstWaiterStartsTheChecksOnce() {
        let (alarm, counter) = alarm()
        #expect(!alarm.isArmed)
        alarm.waiterQueued()
        alarm.waiterQueued()
        alarm.waiterQueued()
        #expect(counter.starts == 1)
        #expect(alarm.isArmed)
    }

    @Test func checksStopWhenNobodyWaitsAndTheNextWaiterRestartsThem() {
        let (alarm, counter) = alarm()
        alarm.waiterQueued()
        #expect(alarm.checksFoundNobody(stillWaiting: { false }))
        #expect(!alarm.isArmed)
        alarm.waiterQueued()
        #expect(counter.starts == 2)
    }

    @Test func aWaiterQueuedWhileTheCheckWasStoppingKeepsTheChecksRunning() {
        // The waiter queued after the check looked but before it disarmed: it saw the alarm armed and
        // did not start anything, so the check must notice it on its second look and carry on.
        let (alarm, counter) = alarm()
        alarm.waiterQueued()
        #expect(!alarm.checksFoundNobody(stillWaiting: { true }))
        #expect(alarm.isArmed)
        #expect(counter.starts == 1)
    }

    @Test func aWaiterThatStartedTheChecksFirstIsNotStartedTwice() {
        // The waiter queued after the disarm and started the checks itself before the second look.
        let (alarm, counter) = alarm()
        alarm.waiterQueued()
        let stops = alarm.checksFoundNobody(stillWaiting: {
            alarm.waiterQueued()  // races in between: sees false, starts
            return true
        })
        #expect(stops)  // this check ends; the new one runs
        #expect(counter.starts == 2)
        #expect(alarm.isArmed)
    }
}
