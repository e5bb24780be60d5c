import ConfigKit
import NIOCore
import NIOPosix
import NIOSSL

extension PoolerRuntime {
    /// TLS contexts of this process (client-facing, and server-facing per pool settings).
    var tls: TLSContexts { connector.tls }

    /// Builds the client-facing context (once, not reloadable) and the server-facing ones.
    /// A bad certificate or key stops the start (exit 78) with a clear message.
    func loadTLSContexts() throws {
        let config = self.config
        try tls.loadClientFacing(config.general)
        try tls.reloadServerFacing(config)
        if tls.clientContext != nil {
            logger.info("TLS for clients enabled (tls_mode=\(tls.clientMode.rawValue))")
        }
    }

    /// Re-reads the server-facing certificates for a new config; an error diagnostic rejects the RELOAD.
    func reloadServerTLS(_ config: Config) -> Diagnostic? {
        do {
            try tls.reloadServerFacing(config)
            return nil
        } catch {
            logger.error("RELOAD rejected: \(error)")
            return .error("general.server_tls_mode", "\(error)")
        }
    }
}
