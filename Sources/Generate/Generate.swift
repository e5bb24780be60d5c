import ConfigKit
import CLibPQ
