// Headers only (include/CRelay.h); SwiftPM wants one source file per C target.
#include "CRelay.h"
