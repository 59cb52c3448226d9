/* The request server: one loop that owns the process, streams over the
 * connection (conn.c), and the hooks that give it its work (ops.c):
 * requests, HELLO, and what the commands need from each round.
 *
 * Objects found by poll() callbacks are never freed during a round: a
 * stream or process is marked dead and freed once the round is over. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

#define MAX_STREAMS 1024
#define CREDIT_MAX (1ull << 40)
#define EXIT_FLUSH_MS 2000

static struct {
	const struct server_hooks *hooks;
	struct stream *streams;
	size_t nstreams;
	bool exit;
	uint64_t exit_deadline;
} srv;

void server_request_exit(void)
{
	srv.exit = true;
	srv.exit_deadline = omr_now_ms() + EXIT_FLUSH_MS;
}

/* ---- streams ---- */

struct stream *stream_new(uint32_t id, size_t size, const struct stream_ops *ops)
{
	struct stream *s;

	if (srv.nstreams >= MAX_STREAMS) {
		send_error(id, EBUSY, NULL, "too many open streams");
		return NULL;
	}
	s = omr_xcalloc(1, size);
	s->id = id;
	s->ops = ops;
	s->credit = OMR_WINDOW_INIT;
	s->next = srv.streams;
	srv.streams = s;
	srv.nstreams++;
	return s;
}

struct stream *stream_find(uint32_t id)
{
	for (struct stream *s = srv.streams; s; s = s->next)
		if (s->id == id && !s->dead)
			return s;
	return NULL;
}

void stream_teardown(struct stream *s)
{
	if (!s->dead)
		s->torn = true;
	s->dead = true;
}

void stream_end(struct stream *s, json_t *o)
{
	if (s->dead)
		return;
	send_json(OMR_F_END, s->id, o);
	s->dead = true;
}

/* Frees dead streams (all: every stream); torn down ones and those still
 * open get destroy(conn_lost = true). */
static void streams_collect(bool all)
{
	struct stream **pp = &srv.streams;

	while (*pp) {
		struct stream *s = *pp;
		if (!s->dead && !all) {
			pp = &s->next;
			continue;
		}
		*pp = s->next;
		srv.nstreams--;
		if (s->ops->destroy)
			s->ops->destroy(s, s->torn || !s->dead);
		free(s);
	}
}

/* ---- the connection's hooks ---- */

static void on_up(void)
{
	send_json(OMR_F_HELLO, 0, srv.hooks->hello());
}

static void on_lost(void)
{
	/* Foreground commands die with the connection (doc/protocol.md).
	 * Torn down, not freed: poll entries of this round still point at
	 * the streams; they are freed at its end. */
	for (struct stream *s = srv.streams; s; s = s->next)
		stream_teardown(s);
}

static void handle_req(const struct omr_frame_hdr *h, const uint8_t *p)
{
	struct stream *s = stream_find(h->stream);
	json_error_t jerr;
	json_t *req;

	if (h->stream == 0) {
		send_error(0, EINVAL, NULL, "REQ on stream 0");
		return;
	}
	if (s) {
		/* The host lost track of this stream: both ends drop it. */
		send_error(h->stream, EINVAL, NULL, "stream %u is already open",
			   h->stream);
		stream_teardown(s);
		return;
	}
	req = json_loadb((const char *)p, h->len, JSON_REJECT_DUPLICATES, &jerr);
	if (!req || !json_is_object(req)) {
		send_error(h->stream, EINVAL, NULL, "bad JSON in request: %s",
			   req ? "not an object" : jerr.text);
		json_decref(req);
		return;
	}
	srv.hooks->request(h->stream, req);
	json_decref(req);
}

/* A SIGNAL payload: 1..64 a signal, 0 a cancel (an object without
 * "signal"), -1 malformed. */
static int signal_parse(const uint8_t *p, size_t n)
{
	json_t *o = json_loadb((const char *)p, n, 0, NULL), *sig;
	int r = -1;

	if (json_is_object(o)) {
		sig = json_object_get(o, "signal");
		if (!sig)
			r = 0;
		else if (json_is_integer(sig) && json_integer_value(sig) > 0 &&
			 json_integer_value(sig) <= 64)
			r = (int)json_integer_value(sig);
	}
	json_decref(o);
	return r;
}

/* A stream with no process to signal (a file transfer, a listing) has
 * only one thing to do with a signal: stop.  An interrupted client sends
 * the signal it got ({"signal": 2}), and means it. */
static void handle_signal(struct stream *s, const struct omr_frame_hdr *h, const uint8_t *p)
{
	int sig = signal_parse(p, h->len);

	if (sig < 0)
		omr_log(OMR_LOG_INFO, "stream %u: bad SIGNAL payload ignored", s->id);
	else if (s->ops->signal)
		s->ops->signal(s, sig);
	else
		stream_end(s, error_json(ECANCELED, NULL, "cancelled"));
}

static void on_frame(const struct omr_frame_hdr *h, const uint8_t *p)
{
	struct stream *s;

	switch (h->type) {
	case OMR_F_REQ:
		handle_req(h, p);
		return;
	case OMR_F_WINDOW:
		s = stream_find(h->stream);
		if (s) {
			s->credit += omr_window_unpack(p, h->len);
			if (s->credit > CREDIT_MAX)
				s->credit = CREDIT_MAX;
		}
		return;
	case OMR_F_DATA:
	case OMR_F_EOF:
	case OMR_F_SIGNAL:
	case OMR_F_RESIZE:
		/* Frames for a stream that has just ended are expected: the
		 * host may not have seen our END yet. */
		s = stream_find(h->stream);
		if (s && h->type == OMR_F_SIGNAL)
			handle_signal(s, h, p);
		else if (s && s->ops->frame)
			s->ops->frame(s, h, p);
		return;
	case OMR_F_HELLO:
	case OMR_F_REPLY:
	case OMR_F_END:
		return; /* only the agent sends these; harmless */
	default:
		s = stream_find(h->stream);
		send_error(h->stream, EINVAL, NULL, "unknown frame type %u", h->type);
		if (s)
			stream_teardown(s); /* END is out: the stream is over */
		return;
	}
}

static const struct conn_hooks conn_hooks = {
	.frame = on_frame,
	.up = on_up,
	.lost = on_lost,
};

/* ---- the loop ---- */

int server_run(const struct server_hooks *hooks, enum conn_kind kind, int fd, const char *path)
{
	struct pollctx pc = { 0 };
	int rc;

	srv.hooks = hooks;
	signal(SIGPIPE, SIG_IGN);
	hooks->start();
	rc = conn_start(kind, fd, path, &conn_hooks);
	if (rc < 0) {
		omr_log(OMR_LOG_ERR, "cannot start serving: %s", strerror(-rc));
		return 1;
	}
	while (!conn_done()) {
		if (srv.exit && (conn_flushed() || !conn_up() || omr_now_ms() >= srv.exit_deadline))
			break;
		poll_reset(&pc);
		conn_poll(&pc);
		if (srv.exit)
			poll_wake_at(&pc, srv.exit_deadline);
		hooks->poll(&pc);
		for (struct stream *s = srv.streams; s; s = s->next)
			if (!s->dead && s->ops->poll)
				s->ops->poll(s, &pc);
		rc = poll_wait(&pc);
		if (rc < 0 && rc != -EINTR) {
			omr_log(OMR_LOG_ERR, "poll: %s", strerror(-rc));
			usleep(100 * 1000);
			continue;
		}
		conn_after_poll();
		hooks->tick();
		for (struct stream *s = srv.streams; s; s = s->next)
			if (!s->dead && s->ops->tick)
				s->ops->tick(s);
		conn_flush();
		streams_collect(false);
		hooks->collect();
	}
	streams_collect(true);
	hooks->stop();
	poll_free(&pc);
	/* A bad frame on a connection of its own (--serve-fd) is an error. */
	return kind == CONN_FD && conn_failed() ? 1 : 0;
}
