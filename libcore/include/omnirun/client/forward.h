/* Port forwards: a byte stream to 127.0.0.1:PORT inside a sandbox,
 * carried by the agent channel (doc/protocol.md, op "forward"), so it
 * needs no network route into the guest and works for air-gapped
 * sandboxes.  What exposures and the shim's preview URLs ride on. */
#ifndef OMNIRUN_CLIENT_FORWARD_H
#define OMNIRUN_CLIENT_FORWARD_H

#include "omnirun/base/err.h"
#include "omnirun/state/config.h"

/* How long omr_forward_open waits for the guest's port to accept. */
#define OMR_FORWARD_OPEN_TIMEOUT_MS 30000

/* Connects to port (1..65535) on the guest's loopback.  Returns a
 * blocking, O_CLOEXEC stream socket whose bytes are the guest
 * connection's: shutdown(SHUT_WR) is the guest side's EOF, and EOF on it
 * is the guest side's; close it to end the forward.  Errors: not_found
 * (no such sandbox), state (not running), connection_refused (nothing
 * listens on the port: kind fail, errno ECONNREFUSED), timeout.
 * Returns the fd or < 0. */
int omr_forward_open(const struct omr_config *c, const char *id, unsigned port,
		     struct omr_err **err);

/* Copies in -> fd and fd -> out until both directions have ended (EOF on
 * in is shutdown(fd, SHUT_WR); EOF on fd ends the copy to out) or one of
 * them fails.  With a timeout_ms > 0, fails when nothing moves that
 * long.  Uses poll() and no threads.  Returns 0 or < 0. */
int omr_forward_splice(int fd, int in, int out, int timeout_ms, struct omr_err **err);

#endif
