/* Talking to a sandbox's monitor over monitor.sock (what sbx-exec,
 * sbx-files, sbx-kill and the shim use). */
#ifndef OMNIRUN_CLIENT_H
#define OMNIRUN_CLIENT_H

#include <jansson.h>
#include <stdint.h>

#include "omnirun/state/config.h"
#include "omnirun/base/err.h"

/* Connects to the monitor of sandbox id.  Errors: -ENOENT "no such sandbox",
 * -ENOTCONN "sandbox ID is not running (stopped: REASON)". Returns the fd. */
int omr_client_connect(const struct omr_config *c, const char *id, struct omr_err **err);

/* Sends REQ `req` on stream `sid` and waits (at most timeout_ms, 0 = no
 * limit) for its END, ignoring REPLY frames.  *out gets the END object.  An
 * END carrying "error" becomes an error (errno from "code").  Returns 0 or
 * < 0.  Steals no reference: req stays the caller's. */
int omr_client_call(int fd, uint32_t sid, json_t *req, int timeout_ms, json_t **out,
		    struct omr_err **err);

/* Sends a JSON control frame (REQ, SIGNAL, RESIZE...). Returns 0 or < 0. */
int omr_client_send_json(int fd, uint8_t type, uint32_t sid, json_t *j, struct omr_err **err);

/* Parses an END payload: *out gets the object, or, when it carries
 * "error", *err gets its message with the errno its code maps to.
 * Returns 0 or < 0. */
int omr_client_end_parse(const uint8_t *p, size_t len, json_t **out, struct omr_err **err);


#endif
