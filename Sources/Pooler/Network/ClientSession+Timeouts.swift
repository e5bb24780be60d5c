import NIOCore

/// The pooler's own timeouts on a logged-in client: its loop's sweep (`ClientGovernor`) asks, the
/// pure `SessionTimeouts.check` decides, this runs the action.
extension ClientSession {
    /// What the client is doing, for `SessionTimeouts`.
    var timeoutActivity: SessionTimeouts.Activity {
        if waitingForServer { return .waitingForServer }
        if server != nil && (busySince != nil || relay.statementMayBeRunning) {
            return .running(since: busySince ?? quietSince)
        }
        if server != nil && relay.transactionStatus != .idle { return .idleInTransaction(since: quietSince) }
        return .idle(since: quietSince)
    }

    /// Runs at each sweep of this client's loop while timeouts are configured for its pool.
    func checkTimeouts(now: NIODeadline, limits: SessionTimeouts.Limits) {
        guard case .ready = phase else { return }
        guard let action = SessionTimeouts.check(now: now, activity: timeoutActivity, transactionSince: transactionSince,
                                                 cancelSent: timeoutCancelSent,
                                                 copyDataAt: relay.serverInCopy ? copyDataAt : nil, limits: limits)
        else { return }
        pool?.stats.recordTimeout(action)
        switch action {
        case .cancelStatement:
            timeoutCancelSent = true
            queryTimeouts += 1
            runtime.logger.info("client \(peer) \(user)@\(database): statement running longer than query_timeout (\(limits.queryMs) ms): cancel sent")
            if let s = server { cancel(s) }
        case .closeIdleInTransaction, .closeTransaction, .closeIdleClient, .closeStalledCopy:
            guard let (code, message) = action.fatal else { return }
            runtime.logger.info("client \(peer) \(user)@\(database): disconnected by \(action.setting)")
            if server == nil || streams().serverAtBoundary {
                fatal(code: code, message)
            } else {
                // The client is mid-message of a server reply: an ErrorResponse there would be read
                // as part of it. Just close.
                close()
            }
        }
    }
}
