/* Whole reads and writes (libc only: the guest agent links io.c too). */
#ifndef OMNIRUN_IO_H
#define OMNIRUN_IO_H

#include <stddef.h>
#include <sys/types.h>

/* Writes all n bytes, retrying on EINTR and short writes.  On a socket it
 * uses send(MSG_NOSIGNAL), so a vanished peer is -EPIPE, not a SIGPIPE
 * that kills the caller.  Returns 0 or -errno. */
int omr_write_all(int fd, const void *buf, size_t n);

/* Reads up to n bytes, stopping early only at EOF.  Returns the count or
 * -errno. */
ssize_t omr_read_full(int fd, void *buf, size_t n);

#endif
