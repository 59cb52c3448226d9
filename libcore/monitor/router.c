/* The router of router-internal.h: frames in, frames queued out. */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "omnirun/base/log.h"
#include "omnirun/base/util.h"
#include "router-internal.h"

#define HISTORY_KEYS_END { "exit_code", "signal", "timed_out", "error", "pid", "background" }
#define HISTORY_KEYS_REQ { "argv", "cmd", "cwd", "user", "background" }

/* A forward (op "forward") turns its connection into the guest
 * connection's bytes: REQ, the agent's REPLY as a frame, then raw bytes
 * both ways (doc/protocol.md, "Through the monitor"). */
enum raw_state { RAW_NONE, RAW_OPENING, RAW_ON };

struct client {
	uid_t uid;
	uint64_t serial;      /* tells it from a later client at its index */
	struct outq out;
	size_t own_queued;    /* ACCT_OWN bytes in out */
	unsigned nstreams;
	enum raw_state raw;
	uint32_t raw_gsid;    /* the forward's route */
	uint64_t raw_credit;  /* bytes the agent lets us send it */
	bool raw_in_eof;      /* the client half-closed; EOF 0 sent */
	bool raw_out_eof;     /* the agent's EOF 1 came: shut the client's
				 read side once the queue is written */
	bool raw_shut;        /* done */
	bool raw_end;         /* the route's END came: close once written */
};

struct route {
	uint32_t gsid;        /* id on the agent channel */
	int client;           /* index in clients[], -1 once the client left */
	uint32_t csid;        /* the client's id for it */
	json_t *hist;         /* exec record, written at END */
	uint64_t started_ms;
	uint64_t orphaned_ms; /* when its client left */
	uint64_t data_unacked;  /* DATA queued toward the client, not yet
				   credited back with WINDOW */
	size_t data_mem;      /* what its queued DATA frames cost */
	size_t ctl_queued;    /* ACCT_ROUTE bytes still queued */
};

struct mon_router {
	const struct mon_router_ops *ops;
	void *user;
	json_t *hello;            /* the agent's last HELLO */
	struct outq agent_out;
	struct client *clients[MON_MAX_CLIENTS];
	unsigned nclients;
	struct route *routes;
	size_t nroutes, routes_cap;
	uint32_t next_gsid;
	uint64_t last_activity;
	uint64_t next_serial;
	int destroy_client;       /* client that asked for destroy, or -1 */
	uint32_t destroy_csid;
};

struct mon_router *mon_router_new(const struct mon_router_ops *ops, void *user, uint64_t now)
{
	struct mon_router *rt = omr_xcalloc(1, sizeof(*rt));

	rt->ops = ops;
	rt->user = user;
	rt->last_activity = now;
	rt->destroy_client = -1;
	return rt;
}

/* --- routes --- */

static struct route *route_by_gsid(struct mon_router *rt, uint32_t gsid)
{
	for (size_t i = 0; i < rt->nroutes; i++)
		if (rt->routes[i].gsid == gsid)
			return &rt->routes[i];
	return NULL;
}

static struct route *route_by_client(struct mon_router *rt, int ci, uint32_t csid)
{
	for (size_t i = 0; i < rt->nroutes; i++)
		if (rt->routes[i].client == ci && rt->routes[i].csid == csid)
			return &rt->routes[i];
	return NULL;
}

/* Forgets r.  The end of a client's stream is activity: a sandbox whose
 * long command just ended is not idle. */
static void route_remove(struct mon_router *rt, struct route *r, uint64_t now)
{
	size_t i = (size_t)(r - rt->routes);

	if (r->client >= 0) {
		if (rt->clients[r->client])
			rt->clients[r->client]->nstreams--;
		if (now > rt->last_activity)
			rt->last_activity = now;
	}
	json_decref(r->hist);
	rt->routes[i] = rt->routes[--rt->nroutes];
}

static uint32_t new_gsid(struct mon_router *rt)
{
	do {
		if (++rt->next_gsid >= MON_OWN_GSID_MIN)
			rt->next_gsid = 1;
	} while (route_by_gsid(rt, rt->next_gsid));
	return rt->next_gsid;
}

static void history_write(struct mon_router *rt, struct route *r, json_t *end, uint64_t now)
{
	static const char *const keys[] = HISTORY_KEYS_END;
	json_t *v;
	char *line;

	if (!r->hist || !rt->ops->history)
		return;
	json_object_set_new(r->hist, "duration_ms", json_integer((json_int_t)(now - r->started_ms)));
	json_object_set_new(r->hist, "ended_at", json_integer((json_int_t)omr_wall_ms()));
	for (size_t i = 0; i < OMR_ARRAY_SIZE(keys); i++)
		if ((v = json_object_get(end, keys[i])))
			json_object_set(r->hist, keys[i], v);
	line = json_dumps(r->hist, JSON_COMPACT);
	if (line)
		rt->ops->history(rt->user, line, strlen(line));
	free(line);
}

/* The monitor's own answer to a client (j is released). */
static void client_answer(struct mon_router *rt, int ci, uint32_t csid, json_t *j)
{
	struct client *cl = rt->clients[ci];
	struct outq_buf *b;

	if (cl->raw == RAW_ON) {
		/* No frame fits in a raw byte stream: the connection closes. */
		json_decref(j);
		cl->raw_end = true;
		return;
	}
	b = mon_outq_push_json(&cl->out, OMR_F_END, csid, j);
	if (b) {
		b->acct = ACCT_OWN;
		cl->own_queued += b->len;
	}
}

static void client_error(struct mon_router *rt, int ci, uint32_t csid, const char *code,
			 const char *msg)
{
	client_answer(rt, ci, csid, json_pack("{s:s, s:s}", "error", msg, "code", code));
}

/* Cancels a live route: the agent is told (SIGNAL {}), the client gets
 * END with the error and the route is forgotten, so that client, monitor
 * and agent all agree that the stream is over. */
static void route_cancel(struct mon_router *rt, struct route *r, const char *code,
			 const char *msg, uint64_t now)
{
	json_t *end = json_pack("{s:s, s:s}", "error", msg, "code", code);

	mon_outq_push(&rt->agent_out, OMR_F_SIGNAL, 0, r->gsid, "{}", 2);
	history_write(rt, r, end, now);
	if (r->client >= 0)
		client_answer(rt, r->client, r->csid, end);
	else
		json_decref(end);
	route_remove(rt, r, now);
}

/* --- agent side --- */

static void agent_restarted(struct mon_router *rt, uint64_t now)
{
	/* Streams open on the old agent process are lost: tell their clients,
	 * and hand none of their queued frames to the new agent. */
	mon_outq_drop_unsent(&rt->agent_out);
	while (rt->nroutes) {
		struct route *r = &rt->routes[rt->nroutes - 1];
		if (r->client >= 0)
			client_error(rt, r->client, r->csid, "agent_restarted",
				     "the guest agent restarted; the request was lost");
		route_remove(rt, r, now);
	}
}

static void agent_hello(struct mon_router *rt, const uint8_t *p, size_t len, uint64_t now)
{
	json_t *j = json_loadb((const char *)p, len, 0, NULL);
	json_t *v;

	if (rt->hello)
		agent_restarted(rt, now);
	json_decref(rt->hello);
	if (json_is_object(j) && len <= MON_HELLO_MAX) {
		rt->hello = j;
		return;
	}
	v = json_object_get(j, "version");
	rt->hello = json_pack("{s:O?}", "version", json_is_integer(v) ? v : NULL);
	json_decref(j);
}

/* Forwards DATA of route r to its client, within the route's window and
 * memory.  An empty DATA carries nothing: it is dropped, never queued.
 * Returns the queued frame, or NULL (dropped, or r cancelled). */
static struct outq_buf *route_forward_data(struct mon_router *rt, struct route *r,
			       const struct omr_frame_hdr *h, const uint8_t *p, uint64_t now)
{
	struct client *cl = rt->clients[r->client];
	struct outq_buf *b;

	if (h->len == 0)
		return NULL;
	r->data_unacked += h->len;
	if (r->data_unacked > MON_ROUTE_DATA_MAX) {
		route_cancel(rt, r, "too_large", "the stream overran its flow-control window", now);
		return NULL;
	}
	if (r->data_mem + OUTQ_COST(h->len) > MON_ROUTE_DATA_MEM_MAX) {
		route_cancel(rt, r, "too_large", "the stream's output came in too many small frames",
			     now);
		return NULL;
	}
	b = mon_outq_push(&cl->out, h->type, h->flags, r->csid, p, h->len);
	if (b) {
		b->acct = ACCT_DATA;
		b->gsid = r->gsid;
		r->data_mem += OUTQ_COST(h->len);
	}
	return b;
}

/* Forwards another frame of route r to its client, within its bounds. */
static void route_forward(struct mon_router *rt, struct route *r, const struct omr_frame_hdr *h,
			  const uint8_t *p, uint64_t now)
{
	struct client *cl = rt->clients[r->client];
	struct outq_buf *b;

	if (h->type == OMR_F_DATA) {
		route_forward_data(rt, r, h, p, now);
		return;
	}
	/* The END always goes: it closes the route and is one frame. */
	if (h->type != OMR_F_END &&
	    r->ctl_queued + OMR_FRAME_HDR + h->len > MON_ROUTE_CTL_MAX) {
		route_cancel(rt, r, "too_large", "the client does not read the stream's replies", now);
		return;
	}
	b = mon_outq_push(&cl->out, h->type, h->flags, r->csid, p, h->len);
	if (b) {
		b->acct = ACCT_ROUTE;
		b->gsid = r->gsid;
		r->ctl_queued += b->len;
	}
}

/* A frame of a forward's route, for a client in raw mode (or about to
 * be): DATA goes out without its header, WINDOW is credit for the
 * client's bytes, EOF and END are acted on by the connection. */
static void raw_from_agent(struct mon_router *rt, struct route *r, const struct omr_frame_hdr *h,
			   const uint8_t *p, uint64_t now)
{
	struct client *cl = rt->clients[r->client];
	struct outq_buf *b;

	switch (h->type) {
	case OMR_F_WINDOW:
		cl->raw_credit += omr_window_unpack(p, h->len);
		if (cl->raw_credit > MON_RAW_CREDIT_MAX)
			cl->raw_credit = MON_RAW_CREDIT_MAX;
		return;
	case OMR_F_REPLY:
		if (cl->raw == RAW_OPENING) {
			route_forward(rt, r, h, p, now);
			cl->raw = RAW_ON;
		}
		return;
	case OMR_F_END:
		if (cl->raw == RAW_OPENING) {
			/* It never connected: the error END ends a framed
			 * connection as any request's does. */
			route_forward(rt, r, h, p, now);
			cl->raw = RAW_NONE;
		}
		cl->raw_end = true;
		return;
	case OMR_F_EOF:
		if (h->flags == OMR_CH_STDOUT)
			cl->raw_out_eof = true;
		return;
	case OMR_F_DATA:
		if (cl->raw != RAW_ON || h->flags != OMR_CH_STDOUT)
			return;
		/* Queued as a frame for the accounting; only its payload
		 * is written. */
		b = route_forward_data(rt, r, h, p, now);
		if (b) {
			b->off = OMR_FRAME_HDR;
			cl->out.bytes -= OMR_FRAME_HDR;
		}
		return;
	default:
		return;
	}
}

void mon_router_on_agent_frame(struct mon_router *rt, const struct omr_frame_hdr *h,
			       const uint8_t *p, uint64_t now)
{
	struct route *r;

	if (h->type == OMR_F_HELLO) {
		agent_hello(rt, p, h->len, now);
		return;
	}
	if (h->stream >= MON_OWN_GSID_MIN) {
		if (h->type == OMR_F_END && rt->ops->own_end)
			rt->ops->own_end(rt->user, h->stream, p, h->len);
		return;
	}
	r = route_by_gsid(rt, h->stream);
	if (!r)
		return; /* a stream we already gave up on */
	if (h->type == OMR_F_END) {
		json_t *j = json_loadb((const char *)p, h->len, 0, NULL);
		if (j)
			history_write(rt, r, j, now);
		json_decref(j);
	}
	if (r->client >= 0 && rt->clients[r->client]->raw != RAW_NONE &&
	    rt->clients[r->client]->raw_gsid == r->gsid)
		raw_from_agent(rt, r, h, p, now);
	else if (r->client >= 0)
		route_forward(rt, r, h, p, now); /* may cancel r, never on END */
	if (h->type == OMR_F_END)
		route_remove(rt, r, now);
}

/* --- client side --- */

static json_t *status_json(struct mon_router *rt, uint64_t now)
{
	json_t *j = rt->ops->status ? rt->ops->status(rt->user) : json_object();

	json_object_set_new(j, "idle_ms",
			    json_integer((json_int_t)(now - mon_router_last_activity(rt, now))));
	if (rt->hello)
		json_object_set(j, "agent", rt->hello);
	return j;
}

static struct route *route_open(struct mon_router *rt, int ci, uint32_t csid, uint64_t now)
{
	struct route *r;

	if (rt->nroutes == rt->routes_cap) {
		rt->routes_cap = rt->routes_cap ? rt->routes_cap * 2 : 64;
		rt->routes = omr_xrealloc(rt->routes, rt->routes_cap * sizeof(*rt->routes));
	}
	r = &rt->routes[rt->nroutes++];
	*r = (struct route){ .gsid = new_gsid(rt), .client = ci, .csid = csid, .started_ms = now };
	rt->clients[ci]->nstreams++;
	return r;
}

static void client_req(struct mon_router *rt, int ci, uint32_t csid, const uint8_t *p, size_t len,
		       uint64_t now)
{
	static const char *const keys[] = HISTORY_KEYS_REQ;
	json_t *req = json_loadb((const char *)p, len, 0, NULL);
	const char *op = json_string_value(json_object_get(req, "op"));
	struct route *r;

	if (csid == 0) {
		client_error(rt, ci, csid, "bad_request", "stream id 0 is the connection's");
		goto out;
	}
	if ((r = route_by_client(rt, ci, csid))) {
		/* The client lost track of its stream: both ends drop it. */
		route_cancel(rt, r, "bad_request", "stream id already in use", now);
		goto out;
	}
	if (!op) {
		client_error(rt, ci, csid, "bad_request", "a request needs a JSON object with \"op\"");
		goto out;
	}
	rt->last_activity = now;
	if (!strcmp(op, "status")) {
		client_answer(rt, ci, csid, status_json(rt, now));
		goto out;
	}
	if (!strcmp(op, "destroy")) {
		rt->destroy_client = ci;
		rt->destroy_csid = csid;
		if (rt->ops->destroy)
			rt->ops->destroy(rt->user);
		goto out;
	}
	if (!strcmp(op, "hello")) {
		client_error(rt, ci, csid, "bad_request", "op 'hello' is the monitor's own");
		goto out;
	}
	if (rt->clients[ci]->raw != RAW_NONE) {
		client_error(rt, ci, csid, "bad_request", "a forward needs a connection of its own");
		goto out;
	}
	if (rt->ops->request) {
		struct mon_ticket t = { ci, csid, rt->clients[ci]->serial };
		json_t *answer = rt->ops->request(rt->user, op, req, &t);
		if (json_is_null(answer))
			goto out; /* answered later (mon_router_answer) */
		if (answer) {
			client_answer(rt, ci, csid, answer);
			goto out;
		}
	}
	if (rt->clients[ci]->nstreams >= MON_MAX_STREAMS_PER_CLIENT) {
		client_error(rt, ci, csid, "limit_reached", "too many open streams on this connection");
		goto out;
	}
	if (!strcmp(op, "forward")) {
		struct client *cl = rt->clients[ci];
		if (cl->nstreams || cl->raw != RAW_NONE) {
			client_error(rt, ci, csid, "bad_request",
				     "a forward needs a connection of its own");
			goto out;
		}
		r = route_open(rt, ci, csid, now);
		cl->raw = RAW_OPENING;
		cl->raw_gsid = r->gsid;
		cl->raw_credit = OMR_WINDOW_INIT;
		mon_outq_push(&rt->agent_out, OMR_F_REQ, 0, r->gsid, p, len);
		goto out;
	}
	r = route_open(rt, ci, csid, now);
	if (!strcmp(op, "exec")) {
		/* History keeps what ran, never the environment (secrets). */
		r->hist = json_pack("{s:I}", "started_at", (json_int_t)omr_wall_ms());
		for (size_t i = 0; i < OMR_ARRAY_SIZE(keys); i++) {
			json_t *v = json_object_get(req, keys[i]);
			if (v)
				json_object_set(r->hist, keys[i], v);
		}
	}
	mon_outq_push(&rt->agent_out, OMR_F_REQ, 0, r->gsid, p, len);
out:
	json_decref(req);
}

void mon_router_on_client_frame(struct mon_router *rt, int ci, const struct omr_frame_hdr *h,
				const uint8_t *p, uint64_t now)
{
	struct route *r;

	if (ci < 0 || ci >= MON_MAX_CLIENTS || !rt->clients[ci] || rt->clients[ci]->raw == RAW_ON)
		return;
	r = route_by_client(rt, ci, h->stream);
	switch (h->type) {
	case OMR_F_REQ:
		client_req(rt, ci, h->stream, p, h->len, now);
		return;
	case OMR_F_WINDOW:
		if (r) {
			uint64_t n = omr_window_unpack(p, h->len);
			/* Credit beyond what was sent does not count. */
			r->data_unacked -= n < r->data_unacked ? n : r->data_unacked;
		}
		/* fall through */
	case OMR_F_DATA:
	case OMR_F_EOF:
	case OMR_F_SIGNAL:
	case OMR_F_RESIZE:
		if (!r)
			return; /* raced with END: nothing to do */
		if (h->type == OMR_F_DATA) {
			if (h->len == 0)
				return; /* carries nothing, is no activity */
			rt->last_activity = now;
		}
		mon_outq_push(&rt->agent_out, h->type, h->flags, r->gsid, p, h->len);
		return;
	default:
		if (r)
			route_cancel(rt, r, "bad_request", "unexpected frame type", now);
		else
			client_error(rt, ci, h->stream, "bad_request", "unexpected frame type");
	}
}

int mon_router_accept(struct mon_router *rt, uid_t uid)
{
	int ci;

	for (ci = 0; ci < MON_MAX_CLIENTS && rt->clients[ci]; ci++)
		;
	if (ci == MON_MAX_CLIENTS)
		return -1;
	rt->clients[ci] = omr_xcalloc(1, sizeof(struct client));
	rt->clients[ci]->uid = uid;
	rt->clients[ci]->serial = ++rt->next_serial;
	rt->nclients++;
	return ci;
}

uid_t mon_router_client_uid(const struct mon_router *rt, int ci)
{
	return rt->clients[ci]->uid;
}

unsigned mon_router_nclients(const struct mon_router *rt)
{
	return rt->nclients;
}

void mon_router_client_gone(struct mon_router *rt, int ci, uint64_t now)
{
	struct client *cl = ci >= 0 && ci < MON_MAX_CLIENTS ? rt->clients[ci] : NULL;

	if (!cl)
		return;
	/* Streams of a client that left are cancelled: foreground commands
	 * are killed, uploads discarded; background commands live on.  That
	 * ends them for the client, which is activity. */
	for (size_t i = 0; i < rt->nroutes; i++) {
		struct route *r = &rt->routes[i];
		if (r->client != ci)
			continue;
		mon_outq_push(&rt->agent_out, OMR_F_SIGNAL, 0, r->gsid, "{}", 2);
		r->client = -1;
		r->orphaned_ms = now;
		if (now > rt->last_activity)
			rt->last_activity = now;
	}
	if (rt->destroy_client == ci)
		rt->destroy_client = -1;
	mon_outq_clear(&cl->out);
	free(cl);
	rt->clients[ci] = NULL;
	rt->nclients--;
}

/* --- writing --- */

struct written_ctx {
	struct mon_router *rt;
	struct client *cl;
};

/* A frame has left: it no longer counts against its budget. */
static void frame_written(void *user, const struct outq_buf *b)
{
	struct written_ctx *w = user;
	struct route *r;

	if (b->acct == ACCT_OWN && w->cl)
		w->cl->own_queued -= b->len;
	else if (b->acct == ACCT_ROUTE && (r = route_by_gsid(w->rt, b->gsid)))
		r->ctl_queued -= b->len < r->ctl_queued ? b->len : r->ctl_queued;
	else if (b->acct == ACCT_DATA && (r = route_by_gsid(w->rt, b->gsid))) {
		size_t cost = OUTQ_COST(b->len - OMR_FRAME_HDR);
		r->data_mem -= cost < r->data_mem ? cost : r->data_mem;
		/* A raw client has no WINDOW to send: what it took is its
		 * credit back to the agent. */
		if (w->cl && w->cl->raw == RAW_ON && w->cl->raw_gsid == b->gsid) {
			uint8_t win[OMR_WINDOW_LEN];
			uint32_t n = (uint32_t)(b->len - OMR_FRAME_HDR);
			r->data_unacked -= n < r->data_unacked ? n : r->data_unacked;
			omr_window_pack(n, win);
			mon_outq_push(&w->rt->agent_out, OMR_F_WINDOW, 0, b->gsid, win, sizeof(win));
		}
	}
}

int mon_router_flush_client(struct mon_router *rt, int ci, mon_write_fn w, void *ctx)
{
	struct client *cl = ci >= 0 && ci < MON_MAX_CLIENTS ? rt->clients[ci] : NULL;
	struct written_ctx wc = { rt, cl };
	int rc;

	if (!cl)
		return -EBADF;
	rc = mon_outq_flush(&cl->out, w, ctx, frame_written, &wc);
	if (rc < 0)
		return rc;
	/* A client that does not read our own answers is dropped; its
	 * streams are bounded one by one. */
	return cl->own_queued > MON_CLIENT_OWN_MAX ? -ENOBUFS : 0;
}

int mon_router_flush_agent(struct mon_router *rt, mon_write_fn w, void *ctx)
{
	struct written_ctx wc = { rt, NULL };

	return mon_outq_flush(&rt->agent_out, w, ctx, frame_written, &wc);
}

size_t mon_router_client_pending(const struct mon_router *rt, int ci)
{
	return ci >= 0 && ci < MON_MAX_CLIENTS && rt->clients[ci] ? rt->clients[ci]->out.bytes : 0;
}

size_t mon_router_agent_pending(const struct mon_router *rt)
{
	return rt->agent_out.bytes;
}

int mon_router_read_clients(const struct mon_router *rt)
{
	return rt->agent_out.mem <= MON_AGENT_OUTQ_MAX;
}

int mon_router_read_agent(const struct mon_router *rt)
{
	size_t queued = rt->agent_out.mem;

	for (int ci = 0; ci < MON_MAX_CLIENTS; ci++)
		if (rt->clients[ci])
			queued += rt->clients[ci]->out.mem;
	return queued <= MON_QUEUED_MAX;
}

/* --- time --- */

uint64_t mon_router_expire(struct mon_router *rt, uint64_t now)
{
	uint64_t next = 0;

	for (size_t i = 0; i < rt->nroutes;) {
		struct route *r = &rt->routes[i];
		if (r->client < 0) {
			uint64_t age = now - r->orphaned_ms;
			if (age >= MON_ORPHAN_TTL_MS) {
				route_remove(rt, r, now); /* moves the last route to i */
				continue;
			}
			if (!next || MON_ORPHAN_TTL_MS - age < next)
				next = MON_ORPHAN_TTL_MS - age;
		}
		i++;
	}
	return next;
}

uint64_t mon_router_last_activity(const struct mon_router *rt, uint64_t now)
{
	for (size_t i = 0; i < rt->nroutes; i++)
		if (rt->routes[i].client >= 0)
			return now;
	return rt->last_activity;
}

void mon_router_touch(struct mon_router *rt, uint64_t now)
{
	if (now > rt->last_activity)
		rt->last_activity = now;
}

const json_t *mon_router_hello(const struct mon_router *rt)
{
	return rt->hello;
}

void mon_router_own_request(struct mon_router *rt, uint32_t gsid, const void *p, size_t len)
{
	mon_outq_push(&rt->agent_out, OMR_F_REQ, 0, gsid, p, len);
}

int mon_router_answer(struct mon_router *rt, const struct mon_ticket *t, json_t *j)
{
	struct client *cl = t->ci >= 0 && t->ci < MON_MAX_CLIENTS ? rt->clients[t->ci] : NULL;

	if (!cl || cl->serial != t->serial) {
		json_decref(j);
		return -1;
	}
	client_answer(rt, t->ci, t->csid, j);
	return 0;
}

int mon_router_answer_destroy(struct mon_router *rt)
{
	int ci = rt->destroy_client;

	if (ci < 0 || !rt->clients[ci])
		return -1;
	mon_outq_push(&rt->clients[ci]->out, OMR_F_END, 0, rt->destroy_csid, "{}", 2);
	return ci;
}

/* --- raw (forward) connections --- */

unsigned mon_router_raw(const struct mon_router *rt, int ci)
{
	const struct client *cl = ci >= 0 && ci < MON_MAX_CLIENTS ? rt->clients[ci] : NULL;
	unsigned st = 0;

	if (!cl || cl->raw != RAW_ON)
		return 0;
	st = MON_RAW_ON;
	if (!cl->raw_in_eof && !cl->raw_end && cl->raw_credit > 0 && mon_router_read_clients(rt))
		st |= MON_RAW_READ;
	if (cl->out.bytes == 0) {
		if ((cl->raw_out_eof || cl->raw_end) && !cl->raw_shut)
			st |= MON_RAW_SHUT;
		if (cl->raw_end)
			st |= MON_RAW_CLOSE;
	}
	return st;
}

size_t mon_router_raw_room(const struct mon_router *rt, int ci)
{
	const struct client *cl = ci >= 0 && ci < MON_MAX_CLIENTS ? rt->clients[ci] : NULL;

	if (!cl || cl->raw != RAW_ON || cl->raw_in_eof || cl->raw_end)
		return 0;
	return cl->raw_credit < OMR_DATA_CHUNK ? (size_t)cl->raw_credit : OMR_DATA_CHUNK;
}

void mon_router_on_client_raw(struct mon_router *rt, int ci, const uint8_t *p, size_t len,
			      uint64_t now)
{
	struct client *cl = ci >= 0 && ci < MON_MAX_CLIENTS ? rt->clients[ci] : NULL;

	if (!cl || cl->raw != RAW_ON || cl->raw_in_eof || cl->raw_end)
		return;
	if (len == 0) {
		cl->raw_in_eof = true;
		mon_outq_push(&rt->agent_out, OMR_F_EOF, OMR_CH_STDIN, cl->raw_gsid, NULL, 0);
		return;
	}
	if (len > cl->raw_credit)
		len = (size_t)cl->raw_credit; /* the caller read too much: its bug */
	cl->raw_credit -= len;
	rt->last_activity = now;
	mon_outq_push(&rt->agent_out, OMR_F_DATA, OMR_CH_STDIN, cl->raw_gsid, p, len);
}

void mon_router_raw_shut(struct mon_router *rt, int ci)
{
	struct client *cl = ci >= 0 && ci < MON_MAX_CLIENTS ? rt->clients[ci] : NULL;

	if (cl)
		cl->raw_shut = true;
}

size_t mon_router_nroutes(const struct mon_router *rt)
{
	return rt->nroutes;
}

size_t mon_router_norphans(const struct mon_router *rt)
{
	size_t n = 0;

	for (size_t i = 0; i < rt->nroutes; i++)
		n += rt->routes[i].client < 0;
	return n;
}

void mon_router_free(struct mon_router *rt)
{
	if (!rt)
		return;
	for (int ci = 0; ci < MON_MAX_CLIENTS; ci++)
		mon_router_client_gone(rt, ci, 0);
	while (rt->nroutes)
		route_remove(rt, &rt->routes[rt->nroutes - 1], 0);
	free(rt->routes);
	mon_outq_clear(&rt->agent_out);
	json_decref(rt->hello);
	free(rt);
}
