// epoll, eventfd and prctl are not part of Swift's Glibc module: bridged for RelayLoop.
#ifndef C_RELAY_H
#define C_RELAY_H
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>

/// Names the calling thread (at most 15 bytes show) in /proc and top; prctl is variadic, which
/// Swift cannot call.
static inline int c_relay_name_thread(const char *name) {
    return prctl(PR_SET_NAME, (unsigned long)name, 0UL, 0UL, 0UL);
}

/// accept4(2) with SOCK_NONBLOCK | SOCK_CLOEXEC: the connection and its peer's address (a
/// sockaddr_storage) in one call. (sys/socket.h is not included here: this module would then own its
/// declarations, and Swift files that import only Glibc would lose them.)
int c_relay_accept(int fd, void *address, unsigned int *length);
#endif
