/* One request/response stream to a sandbox, with data both ways under the
 * protocol's flow control: what exec, file transfer, watch and attach are
 * built on. */
#ifndef OMNIRUN_STREAM_H
#define OMNIRUN_STREAM_H

#include <jansson.h>
#include <stdint.h>

#include "omnirun/base/err.h"

struct omr_stream {
	int fd;                 /* connection to the monitor */
	uint32_t sid;           /* stream id to use (non-zero) */
	int in_fd;              /* data to send on in_channel, -1 for none */
	uint8_t in_channel;     /* OMR_CH_STDIN or OMR_CH_FILE */
	int out_fd[4];          /* where DATA of each channel goes; -1 drops */
	int sig_fd;             /* signalfd: SIGINT/TERM/HUP/QUIT are forwarded
				   as SIGNAL, SIGWINCH as RESIZE; -1 for none.
				   A second SIGINT within 2 s, or a signal while
				   an earlier one got nothing back, ends the
				   stream with -EINTR instead */
	int tty_fd;             /* terminal whose size RESIZE sends, or -1 */
	int timeout_ms;         /* overall limit, 0 for none */
	int idle_timeout_ms;    /* fails when no frame arrives and no input
				   moves for this long; <= 0 for none */
	uint64_t max_in;        /* DATA bytes accepted in all (past it the
				   stream fails: too_large); UINT64_MAX, the
				   initial value, for no bound */
	/* Called before each DATA chunk is written out (may be NULL): return
	 * < 0 with *err set to stop the stream. */
	int (*on_data)(void *user, uint8_t channel, size_t n, struct omr_err **err);
	/* Called for each REPLY (may be NULL).  Return < 0 to abort. */
	int (*on_reply)(void *user, json_t *reply);
	void *user;
	/* Results */
	json_t *end;            /* the END object (owned; release with
				   omr_stream_free) */
	uint64_t bytes_in, bytes_out;
};

/* Initialises s with no input, all output dropped, no signals. */
void omr_stream_init(struct omr_stream *s, int fd, uint32_t sid);

/* Sends req, pumps data until END.  An END with "error" becomes *err with
 * the errno its code maps to.  Returns 0 or < 0. */
int omr_stream_run(struct omr_stream *s, json_t *req, struct omr_err **err);

void omr_stream_free(struct omr_stream *s);

#endif
