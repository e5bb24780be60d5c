import Atomics
import ConfigKit
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `server_tls_mode`: how the pooler talks to PostgreSQL (libpq sslmode semantics).
public enum ServerTLSMode: String, Sendable, Hashable {
    /// Plain only.
    case disable
    /// Plain first; if PostgreSQL rejects the startup, once more over TLS.
    case allow
    /// SSLRequest; plain when the server answers `N`.
    case prefer
    /// SSLRequest; `N` is an error. The server certificate is not checked.
    case require
    /// As require, and the certificate must chain to `server_tls_ca_cert`.
    case verifyCA = "verify-ca"
    /// As verify-ca, and the certificate must match the server host name (or IP).
    case verifyFull = "verify-full"

    /// Parses a config value (case-insensitive); nil when unknown.
    public init?(config value: String) {
        self.init(rawValue: value.lowercased())
    }

    /// Whether the first attempt starts with an SSLRequest.
    var requestsTLSFirst: Bool {
        switch self {
        case .disable, .allow: return false
        case .prefer, .require, .verifyCA, .verifyFull: return true
        }
    }

    /// Whether an `N` answer to the SSLRequest ends the attempt.
    var requiresTLS: Bool {
        switch self {
        case .require, .verifyCA, .verifyFull: return true
        case .disable, .allow, .prefer: return false
        }
    }
}

/// Server-facing TLS settings of one pool (effective values: pool override ?? general).
public struct ServerTLSSettings: Equatable, Hashable, Sendable {
    public var mode: ServerTLSMode
    public var caCert: String?
    public var certificate: String?
    public var privateKey: String?

    public init(mode: ServerTLSMode = .disable, caCert: String? = nil, certificate: String? = nil,
                privateKey: String? = nil) {
        self.mode = mode
        self.caCert = caCert
        self.certificate = certificate
        self.privateKey = privateKey
    }

    public static func resolve(pool: Pool, general: General) -> ServerTLSSettings {
        ServerTLSSettings(
            mode: ServerTLSMode(config: pool.effectiveServerTlsMode(general)) ?? .allow,
            caCert: pool.effectiveServerTlsCaCert(general),
            certificate: pool.effectiveServerTlsCertificate(general),
            privateKey: pool.effectiveServerTlsPrivateKey(general))
    }
}

/// Client-facing `tls_mode`.
public enum ClientTLSMode: String, Sendable {
    case disable, allow, require
    case verifyFull = "verify-full"

    /// Plain StartupMessages over TCP are refused.
    var requiresTLS: Bool { self == .require || self == .verifyFull }
}

public struct TLSConfigError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Builds NIOSSL contexts from config paths, and keeps the ones in use.
///
/// The client-facing context is built once at start (not reloadable). Server-facing contexts are
/// rebuilt (files re-read) at start and on every RELOAD; connections opened afterwards use the new
/// ones, existing connections keep theirs.
public final class TLSContexts {
    private let lock = NIOLock()
    private var _clientContext: NIOSSLContext?
    private var _clientMode: ClientTLSMode = .allow
    private var serverContexts: [ServerTLSSettings: NIOSSLContext] = [:]
    /// Client connections that switched to TLS (SHOW CONNECTIONS `tls`).
    public let clientTLSConnections = ManagedAtomic<Int>(0)

    public init() {}

    /// TLS context for clients, or nil when the pooler answers `N` to SSLRequest.
    public var clientContext: NIOSSLContext? { lock.withLock { _clientContext } }
    public var clientMode: ClientTLSMode { lock.withLock { _clientMode } }

    /// Loads the client-facing certificate/key (and CA for verify-full). Call once at start.
    public func loadClientFacing(_ general: General) throws {
        let (context, mode) = try Self.makeClientFacing(general)
        lock.withLock {
            _clientContext = context
            _clientMode = mode
        }
    }

    /// Rebuilds every server-facing context the config needs (re-reading the files).
    /// On error nothing changes.
    public func reloadServerFacing(_ config: Config) throws {
        var fresh: [ServerTLSSettings: NIOSSLContext] = [:]
        for name in config.pools.keys.sorted() {
            let settings = ServerTLSSettings.resolve(pool: config.pools[name]!, general: config.general)
            guard settings.mode != .disable, fresh[settings] == nil else { continue }
            do {
                fresh[settings] = try Self.makeServerFacing(settings)
            } catch {
                throw TLSConfigError("pool '\(name)': \(error)")
            }
        }
        lock.withLock { serverContexts = fresh }
    }

    /// The context for a server connection with these settings (built now if not cached).
    func serverContext(for settings: ServerTLSSettings) throws -> NIOSSLContext {
        if let c = lock.withLock({ serverContexts[settings] }) { return c }
        let c = try Self.makeServerFacing(settings)
        lock.withLock { serverContexts[settings] = c }
        return c
    }

    // MARK: - Construction

    /// Client-facing context per `tls_certificate`/`tls_private_key`/`tls_ca_cert`/`tls_mode`.
    /// Returns a nil context when no certificate is configured or the mode is `disable`.
    public static func makeClientFacing(_ general: General) throws -> (NIOSSLContext?, ClientTLSMode) {
        let modeText = general.tlsMode ?? "allow"
        guard let mode = ClientTLSMode(rawValue: modeText) else {
            throw TLSConfigError("Invalid tls_mode: \(modeText)")
        }
        guard mode != .disable, let certPath = general.tlsCertificate, let keyPath = general.tlsPrivateKey else {
            if mode.requiresTLS {
                throw TLSConfigError("tls_mode is \(mode.rawValue) but tls_certificate or tls_private_key is not")
            }
            return (nil, mode)
        }
        do {
            let chain = try loadCertificates(certPath, what: "tls_certificate")
            let key = try loadPrivateKey(keyPath, what: "tls_private_key")
            var config = TLSConfiguration.makeServerConfiguration(
                certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
            config.minimumTLSVersion = .tlsv12
            if mode == .verifyFull {
                guard let caPath = general.tlsCaCert else {
                    throw TLSConfigError("tls_mode is verify-full but tls_ca_cert is not set")
                }
                let roots = try loadCertificates(caPath, what: "tls_ca_cert")
                config.trustRoots = .certificates(roots)
                // Verification without a host name: a client certificate is required and must chain to the CA.
                config.certificateVerification = .noHostnameVerification
                config.sendCANameList = true
            }
            return (try NIOSSLContext(configuration: config), mode)
        } catch let e as TLSConfigError {
            throw TLSConfigError("tls is incorrectly configured: \(e.message)")
        } catch {
            throw TLSConfigError("tls is incorrectly configured: \(error)")
        }
    }

    /// Server-facing (pooler as TLS client) context for one pool's settings.
    public static func makeServerFacing(_ settings: ServerTLSSettings) throws -> NIOSSLContext {
        var config = TLSConfiguration.makeClientConfiguration()
        config.minimumTLSVersion = .tlsv12
        switch settings.mode {
        case .verifyCA, .verifyFull:
            guard let caPath = settings.caCert else {
                throw TLSConfigError("server_tls_mode is '\(settings.mode.rawValue)' but server_tls_ca_cert is not set")
            }
            config.trustRoots = .certificates(try loadCertificates(caPath, what: "server_tls_ca_cert"))
            config.certificateVerification = settings.mode == .verifyFull ? .fullVerification : .noHostnameVerification
        case .disable, .allow, .prefer, .require:
            config.certificateVerification = .none
        }
        switch (settings.certificate, settings.privateKey) {
        case let (cert?, key?):
            let chain = try loadCertificates(cert, what: "server_tls_certificate")
            let pkey = try loadPrivateKey(key, what: "server_tls_private_key")
            config.certificateChain = chain.map { .certificate($0) }
            config.privateKey = .privateKey(pkey)
        case (.some, nil):
            throw TLSConfigError("server_tls_certificate is set but server_tls_private_key is not")
        case (nil, .some):
            throw TLSConfigError("server_tls_private_key is set but server_tls_certificate is not")
        case (nil, nil):
            break
        }
        do {
            return try NIOSSLContext(configuration: config)
        } catch {
            if settings.certificate != nil {
                throw TLSConfigError("Failed to load server TLS client identity from \(settings.certificate!) and "
                                     + "\(settings.privateKey!): \(error)")
            }
            throw TLSConfigError("cannot build server TLS context: \(error)")
        }
    }

    /// PEM certificates (at least one) from a file.
    static func loadCertificates(_ path: String, what: String) throws -> [NIOSSLCertificate] {
        let bytes = try readFile(path, what: what)
        let certs: [NIOSSLCertificate]
        do {
            certs = try NIOSSLCertificate.fromPEMBytes(bytes)
        } catch {
            throw TLSConfigError("Failed to parse certificate file \(path) (\(what)): \(error)")
        }
        guard !certs.isEmpty else { throw TLSConfigError("No certificates found in \(path) (\(what))") }
        return certs
    }

    /// A PEM private key (PKCS#8, PKCS#1 or EC) from a file.
    static func loadPrivateKey(_ path: String, what: String) throws -> NIOSSLPrivateKey {
        let bytes = try readFile(path, what: what)
        do {
            return try NIOSSLPrivateKey(bytes: bytes, format: .pem)
        } catch {
            throw TLSConfigError("Failed to parse private key file \(path) (\(what)): \(error)")
        }
    }

    private static func readFile(_ path: String, what: String) throws -> [UInt8] {
        guard let data = FileContents.read(path) else {
            throw TLSConfigError("Failed to read certificate file \(path) (\(what)): no such file or not readable")
        }
        return data
    }
}

/// Tiny file reader (no Foundation in the hot module paths).
enum FileContents {
    static func read(_ path: String) -> [UInt8]? {
        guard let f = fopen(path, "rb") else { return nil }
        defer { fclose(f) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while true {
            let n = fread(&chunk, 1, chunk.count, f)
            if n > 0 { out.append(contentsOf: chunk[0..<n]) }
            if n < chunk.count {
                if ferror(f) != 0 { return nil }
                break
            }
        }
        return out
    }
}
