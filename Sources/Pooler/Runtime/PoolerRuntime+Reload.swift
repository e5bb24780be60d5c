import ConfigKit

extension PoolerRuntime {
    /// Re-reads the config file (RELOAD, SIGHUP). On any error the running config stays and the
    /// diagnostics are returned. The registry swaps the pools; what the catalogue marks not
    /// reloadable is reported as waiting for a restart or binary upgrade.
    public func reload() -> (changed: Bool, diagnostics: [Diagnostic]) {
        let result = ConfigLoader.load(path: configPath)
        for d in result.diagnostics where d.severity == .warning { logger.warning("\(d.description)") }
        guard let newConfig = result.config, !result.hasErrors else {
            for d in result.diagnostics where d.severity == .error { logger.error("RELOAD rejected: \(d.description)") }
            return (false, result.diagnostics)
        }
        // Server-facing certificates are re-read on every RELOAD (new connections use them).
        if let problem = reloadServerTLS(newConfig) { return (false, result.diagnostics + [problem]) }
        guard let replacement = registry.apply(newConfig, whileLocked: { applySettings(newConfig) }) else {
            logger.info("config unchanged")
            return (false, result.diagnostics)
        }
        memory.setLimit(Int(clamping: newConfig.general.maxMemoryUsage))
        registry.settle(replacement, general: newConfig.general)
        listener?.applyTCPOptions(newConfig.general)
        for d in InertSettings.warnings(newConfig) { logger.warning("\(d.description)") }
        for key in ConfigDiff.restartOnly(old: replacement.before, new: newConfig) {
            logger.warning("\(key) applies at start: restart or UPGRADE to change it")
        }
        let changes = ConfigDiff.lines(old: replacement.before, new: newConfig)
        if changes.isEmpty {
            logger.info("config unchanged")
        } else {
            for c in changes { logger.info("config changed: \(c)") }
            if !replacement.replaced.isEmpty {
                logger.info("RELOAD: \(replacement.replaced.count) pool(s) replaced; new connections use the new settings")
            }
        }
        return (!changes.isEmpty, result.diagnostics)
    }
}
