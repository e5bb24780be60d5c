// The rest is in include/CRelay.h (inline); accept4 needs _GNU_SOURCE, which the header cannot set
// for the modules that include it.
#define _GNU_SOURCE
#include <sys/socket.h>
#include "CRelay.h"

int c_relay_accept(int fd, void *address, unsigned int *length) {
    return accept4(fd, (struct sockaddr *)address, length, SOCK_NONBLOCK | SOCK_CLOEXEC);
}
