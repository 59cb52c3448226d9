/* The monitor's output queues; see queue-internal.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "omnirun/base/log.h"
#include "omnirun/base/proto.h"
#include "omnirun/base/util.h"
#include "queue-internal.h"

#define TOO_LARGE_END "{\"error\":\"the answer is too large\",\"code\":\"too_large\"}"

static void buf_free(struct outq *q, struct outq_buf *b)
{
	q->mem -= OUTQ_COST(b->len - OMR_FRAME_HDR);
	free(b);
}

void mon_outq_clear(struct outq *q)
{
	while (q->head) {
		struct outq_buf *b = q->head;
		q->head = b->next;
		buf_free(q, b);
	}
	q->tail = NULL;
	q->bytes = 0;
}

void mon_outq_drop_unsent(struct outq *q)
{
	struct outq_buf *keep = q->head && q->head->off ? q->head : NULL;

	if (keep)
		q->head = keep->next;
	mon_outq_clear(q);
	if (keep) {
		keep->next = NULL;
		q->head = q->tail = keep;
		q->bytes = keep->len - keep->off;
		q->mem = OUTQ_COST(keep->len - OMR_FRAME_HDR);
	}
}

int mon_outq_flush(struct outq *q, mon_write_fn w, void *ctx, outq_written_fn written,
		   void *user)
{
	while (q->head) {
		struct outq_buf *b = q->head;
		ssize_t n = w(ctx, b->data + b->off, b->len - b->off);

		if (n < 0)
			return n == -EAGAIN || n == -EINTR ? 0 : (int)n;
		if (n == 0)
			return 0;
		b->off += (size_t)n;
		q->bytes -= (size_t)n;
		if (b->off < b->len)
			return 0;
		q->head = b->next;
		if (!q->head)
			q->tail = NULL;
		if (written)
			written(user, b);
		buf_free(q, b);
	}
	return 0;
}

struct outq_buf *mon_outq_push(struct outq *q, uint8_t type, uint8_t flags, uint32_t sid,
			       const void *payload, size_t len)
{
	struct omr_frame_hdr h = { .len = (uint32_t)len, .type = type, .flags = flags,
				   .stream = sid };
	struct outq_buf *b;

	if (len > OMR_FRAME_MAX) {
		omr_log(OMR_LOG_WARN, "dropped a %s frame of %zu bytes on stream %u: over the "
			"frame limit", omr_frame_type_name(type), len, sid);
		return NULL;
	}
	b = omr_xmalloc(sizeof(*b) + OMR_FRAME_HDR + len);
	omr_frame_hdr_pack(&h, b->data);
	b->next = NULL;
	b->len = OMR_FRAME_HDR + len;
	b->off = 0;
	b->gsid = 0;
	b->acct = ACCT_NONE;
	if (len)
		memcpy(b->data + OMR_FRAME_HDR, payload, len);
	if (q->tail)
		q->tail->next = b;
	else
		q->head = b;
	q->tail = b;
	q->bytes += b->len;
	q->mem += OUTQ_COST(len);
	return b;
}

struct outq_buf *mon_outq_push_json(struct outq *q, uint8_t type, uint32_t sid, json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);
	struct outq_buf *b;

	json_decref(j);
	if (!s)
		abort();
	b = mon_outq_push(q, type, 0, sid, s, strlen(s));
	free(s);
	if (!b && type == OMR_F_END)
		b = mon_outq_push(q, type, 0, sid, TOO_LARGE_END, strlen(TOO_LARGE_END));
	return b;
}
