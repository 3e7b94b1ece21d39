/* One non-blocking send(2) on a connected TCP socket, for output that the event loop's
 * transport would otherwise take through its own write path (connection.pyx,
 * WebSocket.write_now). Returns the bytes sent (possibly fewer than n), or -1 with errno
 * set (EAGAIN when the socket buffer is full): the caller then hands what is left to the
 * transport, which deals with partial writes and errors as it always does.
 * Without POSIX sockets (Windows) it always returns -1. */
#ifndef XYRA_SENDNOW_H
#define XYRA_SENDNOW_H

#include <stddef.h>

#ifdef _WIN32
static inline long xyra_send_now(int fd, const char *data, size_t n)
{
    (void)fd; (void)data; (void)n;
    return -1;
}
#else
#include <errno.h>
#include <sys/types.h>
#include <sys/socket.h>
#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0  /* macOS: Python ignores SIGPIPE anyway */
#endif
static inline long xyra_send_now(int fd, const char *data, size_t n)
{
    ssize_t k;
    do {
        k = send(fd, data, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (k < 0 && errno == EINTR);
    return (long)k;
}
#endif

#endif
