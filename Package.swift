// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "pg_doorman",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "pg_doorman", targets: ["PgDoorman"]),
        .library(name: "ConfigKit", targets: ["ConfigKit"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.3.0"),
    ],
    targets: [
        // Pure configuration model, codecs, validator, field catalogue and emitters. No I/O beyond reading files.
        .target(
            name: "ConfigKit",
            dependencies: [
                .product(name: "Yams", package: "Yams"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ]
        ),
        // `pg_doorman -t`: load + validate + report.
        .target(name: "Validate", dependencies: ["ConfigKit"]),
        // libpq reached through a system library module map.
        .systemLibrary(name: "CLibPQ", path: "Sources/Generate/CLibPQ", pkgConfig: "libpq",
                       providers: [.apt(["libpq-dev"])]),
        .target(name: "Generate", dependencies: ["ConfigKit", "CLibPQ"], exclude: ["CLibPQ"]),
        // epoll and eventfd for the relay's own event loop (not in Swift's Glibc module).
        .target(name: "CRelay"),
        // The pooler: protocol codecs, state machines, pools, auth, NIO glue, admin, runtime.
        .target(
            name: "Pooler",
            dependencies: [
                "ConfigKit", "Validate", "CRelay",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Atomics", package: "swift-atomics"),
            ],
            swiftSettings: [
                // The relay is single-threaded per connection; dynamic exclusivity checks cost ~2% of
                // the pooler's CPU on the hot path (measured with perf) and buy nothing there.
                .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
            ]
        ),
        // The `pg_doorman` binary: CLI root only.
        .executableTarget(
            name: "PgDoorman",
            dependencies: [
                "Pooler", "Generate", "Validate", "ConfigKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Fixtures shared by the test targets.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "ConfigKitTests", dependencies: ["ConfigKit", "TestSupport"]),
        .testTarget(name: "ValidateTests", dependencies: ["Validate", "ConfigKit"]),
        .testTarget(name: "GenerateTests", dependencies: ["Generate", "ConfigKit"]),
        .testTarget(name: "PoolerTests", dependencies: ["Pooler", "ConfigKit", "TestSupport",
                                                     .product(name: "NIOEmbedded", package: "swift-nio")]),
    ],
    swiftLanguageModes: [.v5]
)
