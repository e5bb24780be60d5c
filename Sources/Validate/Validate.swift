import ConfigKit
