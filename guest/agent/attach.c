/* The attach op: replay a background command's ring from its oldest
 * byte, then follow its live output, under the host's credit; END carries
 * the exit status once the command is gone and everything was sent. */
#include <errno.h>

#include "agent.h"

static uint8_t iobuf[OMR_DATA_CHUNK];

struct attach_stream {
	struct stream s;
	struct proc *p;
	struct ring_cursor cur;
};

static void attach_tick(struct stream *s)
{
	struct attach_stream *as = container_of(s, struct attach_stream, s);
	struct proc *p = as->p;
	uint64_t lost;
	uint8_t ch;
	size_t k;

	while (s->credit > 0 && conn_can_produce()) {
		size_t max = s->credit < OMR_DATA_CHUNK ? (size_t)s->credit : OMR_DATA_CHUNK;
		k = ring_read(p->ring, &as->cur, iobuf, max, &ch, &lost);
		if (lost)
			send_json(OMR_F_REPLY, s->id, json_pack("{s:I}", "dropped", (json_int_t)lost));
		if (!k)
			break;
		send_frame(OMR_F_DATA, ch, s->id, iobuf, k);
		s->credit -= k;
	}
	if (!p->running && p->fd_out < 0 && p->fd_err < 0 && ring_at_end(p->ring, &as->cur)) {
		json_t *o = proc_status_json(p);
		json_object_set_new(o, "pid", json_integer(p->pid));
		send_frame(OMR_F_EOF, OMR_CH_STDOUT, s->id, NULL, 0);
		send_frame(OMR_F_EOF, OMR_CH_STDERR, s->id, NULL, 0);
		stream_end(s, o);
	}
}

static void attach_signal(struct stream *s, int sig)
{
	struct attach_stream *as = container_of(s, struct attach_stream, s);

	if (sig > 0)
		proc_signal(as->p, sig);
	else
		stream_end(s, json_pack("{s:b}", "detached", 1)); /* the command lives on */
}

static void attach_destroy(struct stream *s, bool conn_lost)
{
	struct attach_stream *as = container_of(s, struct attach_stream, s);

	(void)conn_lost;
	as->p->attached--;
}

static const struct stream_ops attach_ops = {
	.signal = attach_signal,
	.tick = attach_tick,
	.destroy = attach_destroy,
};

void op_attach(uint32_t id, json_t *req)
{
	struct attach_stream *as;
	struct proc *p;

	if (proc_lookup(id, req, &p) < 0)
		return;
	if (!p->background) {
		send_error(id, EINVAL, NULL, "command %d is not a background command",
			   p->pid);
		return;
	}
	as = (struct attach_stream *)stream_new(id, sizeof(*as), &attach_ops);
	if (!as)
		return;
	as->p = p;
	p->attached++;
	ring_cursor_start(p->ring, &as->cur);
	if (ring_dropped(p->ring))
		send_json(OMR_F_REPLY, id,
			  json_pack("{s:I}", "dropped", (json_int_t)ring_dropped(p->ring)));
}
