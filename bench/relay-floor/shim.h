// sys/epoll.h is not part of Swift's Glibc module: bridged for main.swift.
#include <sys/epoll.h>
#include <netinet/tcp.h>
