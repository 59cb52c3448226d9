/* Output queues of the monitor: frames waiting for a peer that is slow to
 * read, each tagged with the budget it counts against until written. */
#ifndef OMNIRUN_MONITOR_QUEUE_INTERNAL_H
#define OMNIRUN_MONITOR_QUEUE_INTERNAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "omnirun/base/proto.h"

/* What a queued frame counts against until it is written. */
enum outq_acct {
	ACCT_NONE,   /* frames toward the agent */
	ACCT_DATA,   /* a route's DATA: its data_mem */
	ACCT_ROUTE,  /* a route's control frame: its ctl_queued */
	ACCT_OWN,    /* the monitor's own answer: the client's own_queued */
};

struct outq_buf {
	struct outq_buf *next;
	size_t len, off;
	uint32_t gsid;        /* route of an ACCT_DATA or ACCT_ROUTE frame */
	enum outq_acct acct;
	uint8_t data[];
};

struct outq {
	struct outq_buf *head, *tail;
	size_t bytes;         /* still to write */
	size_t mem;           /* what the queued frames cost in memory */
};

/* What a frame of len payload bytes costs while queued: its buffer and
 * header too, so that frames with little or nothing in them are not free. */
#define OUTQ_COST(len) (sizeof(struct outq_buf) + OMR_FRAME_HDR + (len))

/* Writes up to len bytes to a peer; returns how many (>= 0), or -errno
 * (-EAGAIN: nothing now). */
typedef ssize_t (*mon_write_fn)(void *ctx, const void *buf, size_t len);
/* Told of each frame once it is written whole. */
typedef void (*outq_written_fn)(void *user, const struct outq_buf *b);

/* Queues one frame (counted as ACCT_NONE; the caller may change that).
 * Returns it, or NULL when the payload is over the protocol's limit. */
struct outq_buf *mon_outq_push(struct outq *q, uint8_t type, uint8_t flags, uint32_t sid,
			       const void *payload, size_t len);
/* Queues j (released) as one frame; an END too large to send becomes an
 * error END, so that the stream still ends. */
struct outq_buf *mon_outq_push_json(struct outq *q, uint8_t type, uint32_t sid, json_t *j);
/* Writes what w takes now, telling written() of each whole frame.
 * Returns 0 or the -errno of w (never -EAGAIN). */
int mon_outq_flush(struct outq *q, mon_write_fn w, void *ctx, outq_written_fn written,
		   void *user);
/* Drops every frame not yet begun; one partly written stays, so that the
 * byte stream stays framed. */
void mon_outq_drop_unsent(struct outq *q);
void mon_outq_clear(struct outq *q);

#endif
