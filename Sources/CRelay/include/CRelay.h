// epoll and eventfd are not part of Swift's Glibc module: bridged for RelayLoop.
#ifndef C_RELAY_H
#define C_RELAY_H
#include <sys/epoll.h>
#include <sys/eventfd.h>
#endif
