/* Unit tests for the monitor's router (libcore/monitor/router.c), driven
 * as the state machine it is: frames in, frames out, time passed in.  No
 * fds, no VM.  TAP. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../libcore/monitor/router-internal.h"
#include "omnirun/base/proto.h"

#include "tap.h"

/* --- a fake monitor: hooks and writers --- */

static int destroyed;
static char history[65536];
static size_t history_len;

static json_t *status_hook(void *user)
{
	(void)user;
	return json_pack("{s:s}", "sandbox_id", "sb_test");
}

static void destroy_hook(void *user)
{
	(void)user;
	destroyed++;
}

static void history_hook(void *user, const char *line, size_t len)
{
	(void)user;
	if (history_len + len + 1 < sizeof(history)) {
		memcpy(history + history_len, line, len);
		history_len += len;
		history[history_len++] = '\n';
		history[history_len] = 0;
	}
}

static const struct mon_router_ops ops = { .status = status_hook, .destroy = destroy_hook,
					   .history = history_hook };

/* A peer that takes at most `budget` bytes (SIZE_MAX: all) and keeps them. */
struct sink {
	uint8_t *buf;
	size_t len, cap, budget;
};

static ssize_t sink_write(void *ctx, const void *b, size_t n)
{
	struct sink *s = ctx;

	if (s->budget == 0)
		return -EAGAIN;
	if (n > s->budget)
		n = s->budget;
	if (s->budget != SIZE_MAX)
		s->budget -= n;
	if (s->len + n > s->cap) {
		s->cap = (s->len + n) * 2;
		s->buf = realloc(s->buf, s->cap);
	}
	memcpy(s->buf + s->len, b, n);
	s->len += n;
	return (ssize_t)n;
}

/* A frame the router wrote. */
struct frame {
	uint8_t type, flags;
	uint32_t stream, len;
	char payload[512]; /* the first bytes, NUL-terminated */
};

/* Drains what the router queued for client ci (ci < 0: for the agent)
 * and parses it into out (at most max frames).  Returns the count. */
static int take(struct mon_router *rt, int ci, struct frame *out, int max)
{
	struct sink s = { .budget = SIZE_MAX };
	int n = 0;

	if (ci < 0)
		mon_router_flush_agent(rt, sink_write, &s);
	else
		mon_router_flush_client(rt, ci, sink_write, &s);
	for (size_t off = 0; off + OMR_FRAME_HDR <= s.len;) {
		struct omr_frame_hdr h;
		omr_frame_hdr_unpack(s.buf + off, &h);
		if (n < max) {
			size_t k = h.len < sizeof(out[n].payload) - 1 ? h.len : sizeof(out[n].payload) - 1;
			out[n] = (struct frame){ .type = h.type, .flags = h.flags, .stream = h.stream,
						 .len = h.len };
			memcpy(out[n].payload, s.buf + off + OMR_FRAME_HDR, k);
			out[n].payload[k] = 0;
		}
		n++;
		off += OMR_FRAME_HDR + h.len;
	}
	free(s.buf);
	return n;
}

static void from_client(struct mon_router *rt, int ci, uint8_t type, uint8_t flags, uint32_t sid,
			const void *p, size_t len, uint64_t now)
{
	struct omr_frame_hdr h = { .len = (uint32_t)len, .type = type, .flags = flags, .stream = sid };

	mon_router_on_client_frame(rt, ci, &h, p, now);
}

static void from_agent(struct mon_router *rt, uint8_t type, uint8_t flags, uint32_t sid,
		       const void *p, size_t len, uint64_t now)
{
	struct omr_frame_hdr h = { .len = (uint32_t)len, .type = type, .flags = flags, .stream = sid };

	mon_router_on_agent_frame(rt, &h, p, now);
}

static void req(struct mon_router *rt, int ci, uint32_t sid, const char *json, uint64_t now)
{
	from_client(rt, ci, OMR_F_REQ, 0, sid, json, strlen(json), now);
}

static void window(struct mon_router *rt, int ci, uint32_t sid, uint32_t credit, uint64_t now)
{
	uint8_t b[OMR_WINDOW_LEN];

	omr_window_pack(credit, b);
	from_client(rt, ci, OMR_F_WINDOW, 0, sid, b, sizeof(b), now);
}

/* Opens stream csid of client ci; returns its id on the agent channel. */
static uint32_t open_stream(struct mon_router *rt, int ci, uint32_t csid, uint64_t now)
{
	struct frame f[4];

	req(rt, ci, csid, "{\"op\":\"exec\",\"argv\":[\"true\"],\"env\":{\"SECRET\":\"x\"}}", now);
	return take(rt, -1, f, 4) == 1 && f[0].type == OMR_F_REQ ? f[0].stream : 0;
}

static struct mon_router *router(uint64_t now)
{
	history_len = 0;
	history[0] = 0;
	destroyed = 0;
	return mon_router_new(&ops, NULL, now);
}

/* --- the tests --- */

static void test_route(void)
{
	struct mon_router *rt = router(1000);
	int ci = mon_router_accept(rt, 0);
	struct frame f[8];
	uint32_t g;
	int n;

	is_int(ci, 0, "accept: the first client is 0");
	g = open_stream(rt, ci, 5, 1000);
	ok(g != 0 && g != 5, "route: a REQ goes to the agent on a stream id of the monitor's (%u)", g);
	from_agent(rt, OMR_F_REPLY, 0, g, "{\"pid\":7}", 9, 1001);
	from_agent(rt, OMR_F_DATA, 1, g, "hello", 5, 1002);
	from_agent(rt, OMR_F_END, 0, g, "{\"exit_code\":3}", 15, 1003);
	n = take(rt, ci, f, 8);
	ok(n == 3 && f[0].type == OMR_F_REPLY && f[1].type == OMR_F_DATA && f[1].flags == 1 &&
		   !strcmp(f[1].payload, "hello") && f[2].type == OMR_F_END &&
		   f[0].stream == 5 && f[1].stream == 5 && f[2].stream == 5,
	   "route: REPLY, DATA and END reach the client on its own stream id");
	is_int(mon_router_nroutes(rt), 0, "route: END closes the route");
	ok(strstr(history, "\"exit_code\":3") && strstr(history, "\"argv\":[\"true\"]") &&
		   !strstr(history, "SECRET"),
	   "history: what ran and how it ended, never the environment");
	mon_router_free(rt);
}

static void test_window_overrun(void)
{
	struct mon_router *rt = router(0);
	int ci = mon_router_accept(rt, 0);
	static uint8_t chunk[OMR_DATA_CHUNK];
	struct frame f[64];
	uint32_t g = open_stream(rt, ci, 1, 0);
	size_t sent = 0;
	int n, cancelled = 0;

	/* Within the window, credited as it goes: twice the window passes. */
	while (sent < 2 * OMR_WINDOW_INIT) {
		from_agent(rt, OMR_F_DATA, 1, g, chunk, sizeof(chunk), 1);
		sent += sizeof(chunk);
		n = take(rt, ci, f, 64);
		cancelled |= n != 1 || f[0].type != OMR_F_DATA;
		window(rt, ci, 1, sizeof(chunk), 1);
	}
	ok(!cancelled && mon_router_nroutes(rt) == 1, "window: data credited back is never too much");
	take(rt, -1, f, 64); /* the WINDOW frames went on to the agent */
	/* Without credit the guest may send one window (and a frame of
	 * slack), not more. */
	for (sent = 0; sent <= MON_ROUTE_DATA_MAX && mon_router_nroutes(rt); sent += sizeof(chunk))
		from_agent(rt, OMR_F_DATA, 1, g, chunk, sizeof(chunk), 2);
	is_int(mon_router_nroutes(rt), 0, "window: a guest overrunning the window loses the route");
	n = take(rt, ci, f, 64);
	ok(n > 0 && f[n - 1].type == OMR_F_END && strstr(f[n - 1].payload, "too_large") &&
		   strstr(f[n - 1].payload, "flow-control window"),
	   "window: the client gets END too_large");
	n = take(rt, -1, f, 64);
	ok(n == 1 && f[0].type == OMR_F_SIGNAL && f[0].stream == g && !strcmp(f[0].payload, "{}"),
	   "window: the agent is told to cancel (SIGNAL {})");
	from_agent(rt, OMR_F_DATA, 1, g, chunk, sizeof(chunk), 3);
	is_int(mon_router_client_pending(rt, ci), 0, "window: later DATA of the cancelled stream is dropped");
	mon_router_free(rt);
}

static void test_empty_data(void)
{
	struct mon_router *rt = router(0);
	int ci = mon_router_accept(rt, 0);
	struct frame f[4];
	uint32_t g = open_stream(rt, ci, 1, 0);

	for (int i = 0; i < 200000; i++)
		from_agent(rt, OMR_F_DATA, 1, g, NULL, 0, 1);
	ok(mon_router_client_pending(rt, ci) == 0 && mon_router_read_agent(rt),
	   "empty DATA from the guest is not queued (nothing to allocate or count)");
	is_int(mon_router_nroutes(rt), 1, "empty DATA does not end the stream");
	from_agent(rt, OMR_F_DATA, 1, g, "x", 1, 1);
	ok(take(rt, ci, f, 4) == 1 && f[0].len == 1, "DATA after empty ones still flows");
	/* From the client: no frame to the agent, no activity. */
	from_agent(rt, OMR_F_END, 0, g, "{}", 2, 50);
	for (int i = 0; i < 1000; i++)
		from_client(rt, ci, OMR_F_DATA, 0, 1, NULL, 0, 100);
	is_int(mon_router_agent_pending(rt), 0, "empty DATA from a client is not forwarded");
	is_int(mon_router_last_activity(rt, 200), 50, "empty DATA from a client is no activity");
	mon_router_free(rt);
}

static void test_small_frames(void)
{
	struct mon_router *rt = router(0);
	int ci = mon_router_accept(rt, 0);
	uint32_t g = open_stream(rt, ci, 1, 0);
	size_t frames = 0;

	/* One byte per frame costs a buffer per byte: the route's memory is
	 * bounded long before its window is used. */
	while (mon_router_nroutes(rt) && frames < OMR_WINDOW_INIT) {
		from_agent(rt, OMR_F_DATA, 1, g, "x", 1, 1);
		frames++;
	}
	ok(mon_router_nroutes(rt) == 0 && frames < OMR_WINDOW_INIT,
	   "1-byte DATA frames: the route is cancelled at its memory bound (%zu frames)", frames);
	ok(mon_router_client_pending(rt, ci) <= MON_ROUTE_DATA_MEM_MAX + 4096,
	   "1-byte DATA frames: what is queued stays within the bound");
	mon_router_free(rt);
}

static void test_ctl_cap(void)
{
	struct mon_router *rt = router(0);
	int ci = mon_router_accept(rt, 0);
	static char big[60000];
	struct frame f[64];
	uint32_t g = open_stream(rt, ci, 1, 0);
	size_t queued = 0;
	int n;

	memset(big, ' ', sizeof(big));
	big[0] = '{';
	big[sizeof(big) - 1] = '}';
	/* A client that reads keeps its route however much comes. */
	for (int i = 0; i < 40; i++) {
		from_agent(rt, OMR_F_REPLY, 0, g, big, sizeof(big), 1);
		take(rt, ci, f, 64);
	}
	is_int(mon_router_nroutes(rt), 1, "ctl cap: 2.4 MB of REPLY to a reading client passes");
	/* One that does not read: cancelled past MON_ROUTE_CTL_MAX. */
	while (mon_router_nroutes(rt) && queued <= 2 * MON_ROUTE_CTL_MAX) {
		from_agent(rt, OMR_F_REPLY, 0, g, big, sizeof(big), 2);
		queued += sizeof(big);
	}
	ok(mon_router_nroutes(rt) == 0 && queued <= MON_ROUTE_CTL_MAX + sizeof(big),
	   "ctl cap: a route whose replies are not read is cancelled at %u bytes", MON_ROUTE_CTL_MAX);
	n = take(rt, ci, f, 64);
	ok(n > 0 && f[n - 1].type == OMR_F_END && strstr(f[n - 1].payload, "too_large"),
	   "ctl cap: the client gets END too_large after the replies it had");
	n = take(rt, -1, f, 64);
	ok(n == 1 && f[0].type == OMR_F_SIGNAL, "ctl cap: the agent is told to cancel");
	mon_router_free(rt);
}

static void test_own_answers(void)
{
	struct mon_router *rt = router(0);
	int ci = mon_router_accept(rt, 0);
	struct sink none = { .budget = 0 };
	int dropped = 0;

	for (int i = 0; i < 100000 && !dropped; i++) {
		req(rt, ci, 0, "{\"op\":\"status\"}", 1); /* stream 0: answered by the monitor */
		dropped = mon_router_flush_client(rt, ci, sink_write, &none) < 0;
	}
	ok(dropped, "own answers: a client that does not read them is to be dropped");
	mon_router_free(rt);
}

static void test_orphans(void)
{
	struct mon_router *rt = router(0);
	int ci = mon_router_accept(rt, 0);
	struct frame f[8];
	uint32_t g = open_stream(rt, ci, 1, 0);
	uint64_t left;

	take(rt, ci, f, 8);
	mon_router_client_gone(rt, ci, 1000);
	ok(take(rt, -1, f, 8) == 1 && f[0].type == OMR_F_SIGNAL && f[0].stream == g,
	   "orphan: the agent is told to cancel the streams of a client that left");
	ok(mon_router_nclients(rt) == 0 && mon_router_norphans(rt) == 1,
	   "orphan: the route stays until its END or its TTL");
	left = mon_router_expire(rt, 1000 + MON_ORPHAN_TTL_MS - 1);
	ok(left == 1 && mon_router_norphans(rt) == 1, "orphan: kept until the TTL (1 ms left)");
	is_int(mon_router_last_activity(rt, 5000), 1000,
	       "orphan: the client leaving was activity, the orphan is none");
	ok(mon_router_expire(rt, 1000 + MON_ORPHAN_TTL_MS) == 0 && mon_router_nroutes(rt) == 0,
	   "orphan: forgotten at the TTL");
	from_agent(rt, OMR_F_END, 0, g, "{\"cancelled\":true}", 18, 20000);
	ok(mon_router_nroutes(rt) == 0 && mon_router_agent_pending(rt) == 0,
	   "orphan: a late END is ignored");
	/* An orphan whose END comes in time is closed by it. */
	ci = mon_router_accept(rt, 0);
	g = open_stream(rt, ci, 1, 30000);
	mon_router_client_gone(rt, ci, 30001);
	from_agent(rt, OMR_F_DATA, 1, g, "late", 4, 30002);
	from_agent(rt, OMR_F_END, 0, g, "{\"cancelled\":true}", 18, 30003);
	ok(mon_router_nroutes(rt) == 0 && mon_router_expire(rt, 30004) == 0,
	   "orphan: its END closes it");
	mon_router_free(rt);
}

static void test_stream_ids(void)
{
	struct mon_router *rt = router(0);
	int a = mon_router_accept(rt, 0), b = mon_router_accept(rt, 0);
	struct frame f[8];
	uint32_t g1, g2, g3;
	int n;

	g1 = open_stream(rt, a, 7, 0);
	g2 = open_stream(rt, b, 7, 0);
	ok(g1 && g2 && g1 != g2, "ids: two clients' stream 7 are two streams on the agent channel");
	/* Reusing an open id: both ends drop the stream. */
	req(rt, a, 7, "{\"op\":\"exec\",\"argv\":[\"x\"]}", 1);
	n = take(rt, a, f, 8);
	ok(n == 1 && f[0].type == OMR_F_END && f[0].stream == 7 && strstr(f[0].payload, "already in use"),
	   "ids: a REQ on an open stream id is answered bad_request");
	n = take(rt, -1, f, 8);
	ok(n == 1 && f[0].type == OMR_F_SIGNAL && f[0].stream == g1,
	   "ids: the old stream is cancelled and the new REQ not forwarded");
	is_int(mon_router_nroutes(rt), 1, "ids: the other client's stream 7 is untouched");
	/* Once ended, an id may be used again, as a new stream. */
	g3 = open_stream(rt, a, 7, 2);
	ok(g3 && g3 != g1 && g3 != g2, "ids: a freed id opens a new stream (%u)", g3);
	from_agent(rt, OMR_F_END, 0, g3, "{}", 2, 3);
	ok(take(rt, a, f, 8) == 1 && f[0].stream == 7, "ids: its END comes on the reused id");
	req(rt, a, 0, "{\"op\":\"exec\"}", 4);
	n = take(rt, a, f, 8);
	ok(n == 1 && f[0].stream == 0 && strstr(f[0].payload, "bad_request"),
	   "ids: stream 0 is the connection's");
	/* Frames for a stream the router does not know are dropped. */
	from_client(rt, a, OMR_F_DATA, 0, 99, "x", 1, 5);
	is_int(mon_router_agent_pending(rt), 0, "ids: DATA on an unknown stream goes nowhere");
	mon_router_free(rt);
}

static void test_activity(void)
{
	struct mon_router *rt = router(100);
	int ci = mon_router_accept(rt, 0);
	uint32_t g;

	is_int(mon_router_last_activity(rt, 500), 100, "activity: none yet");
	g = open_stream(rt, ci, 1, 1000);
	is_int(mon_router_last_activity(rt, 50000), 50000,
	       "activity: a running foreground command is activity");
	from_agent(rt, OMR_F_END, 0, g, "{\"exit_code\":0}", 15, 60000);
	is_int(mon_router_last_activity(rt, 61000), 60000, "activity: the end of a stream is activity");
	mon_router_touch(rt, 62000);
	is_int(mon_router_last_activity(rt, 63000), 62000, "activity: touch");
	mon_router_free(rt);
}

static void test_clients(void)
{
	struct mon_router *rt = router(0);
	int last = -2, ci;
	struct frame f[4];

	for (int i = 0; i < MON_MAX_CLIENTS; i++)
		last = mon_router_accept(rt, 0);
	ok(last == MON_MAX_CLIENTS - 1 && mon_router_accept(rt, 0) == -1,
	   "clients: %d served, the next one refused", MON_MAX_CLIENTS);
	mon_router_client_gone(rt, 5, 1);
	is_int(mon_router_accept(rt, 0), 5, "clients: a slot that frees is used again");
	/* Destroy: the hook is called, the answer queued on demand. */
	req(rt, 3, 9, "{\"op\":\"destroy\"}", 2);
	is_int(destroyed, 1, "destroy: the monitor is told");
	ci = mon_router_answer_destroy(rt);
	ok(ci == 3 && take(rt, 3, f, 4) == 1 && f[0].type == OMR_F_END && f[0].stream == 9,
	   "destroy: its caller gets END on its stream");
	req(rt, 4, 1, "{\"op\":\"status\"}", 3);
	ok(take(rt, 4, f, 4) == 1 && strstr(f[0].payload, "sb_test") && strstr(f[0].payload, "idle_ms"),
	   "status: answered by the monitor");
	mon_router_free(rt);
}

static void test_agent_restart(void)
{
	struct mon_router *rt = router(0);
	int ci = mon_router_accept(rt, 0);
	struct frame f[4];

	from_agent(rt, OMR_F_HELLO, 0, 0, "{\"version\":1}", 13, 0);
	ok(mon_router_hello(rt) != NULL, "hello: kept");
	open_stream(rt, ci, 1, 1);
	window(rt, ci, 1, 10, 1); /* queued toward the agent, never sent */
	from_agent(rt, OMR_F_HELLO, 0, 0, "{\"version\":1}", 13, 2);
	ok(take(rt, ci, f, 4) == 1 && strstr(f[0].payload, "agent_restarted") &&
		   mon_router_nroutes(rt) == 0,
	   "hello again: open streams end with agent_restarted");
	is_int(mon_router_agent_pending(rt), 0, "hello again: nothing queued goes to the new agent");
	mon_router_free(rt);
}

static void test_backpressure(void)
{
	struct mon_router *rt = router(0);
	int ci = mon_router_accept(rt, 0);
	static uint8_t chunk[OMR_DATA_CHUNK];
	uint32_t g = open_stream(rt, ci, 1, 0);

	(void)g;
	ok(mon_router_read_clients(rt), "back pressure: clients are read while the agent keeps up");
	for (size_t q = 0; q <= MON_AGENT_OUTQ_MAX; q += sizeof(chunk))
		from_client(rt, ci, OMR_F_DATA, 0, 1, chunk, sizeof(chunk), 1);
	ok(!mon_router_read_clients(rt), "back pressure: not past %u bytes toward the agent",
	   MON_AGENT_OUTQ_MAX);
	mon_router_free(rt);
}

/* The monitor's own ops and requests (the network's hooks). */
static uint32_t own_gsid;
static char own_payload[64];

static struct mon_ticket later;

static json_t *net_request(void *user, const char *op, json_t *r, const struct mon_ticket *t)
{
	(void)user;
	(void)r;
	if (!strcmp(op, "pause")) {
		later = *t;
		return json_null();
	}
	return strcmp(op, "net_stats") ? NULL : json_pack("{s:i}", "answered", 1);
}

static void own_end(void *user, uint32_t gsid, const uint8_t *p, size_t len)
{
	(void)user;
	own_gsid = gsid;
	snprintf(own_payload, sizeof(own_payload), "%.*s", (int)len, (const char *)p);
}

static void test_monitor_ops(void)
{
	static const struct mon_router_ops nops = { .status = status_hook, .request = net_request,
						   .own_end = own_end };
	struct mon_router *rt = mon_router_new(&nops, NULL, 0);
	int ci = mon_router_accept(rt, 0);
	struct frame f[4];
	int n;

	req(rt, ci, 3, "{\"op\":\"net_stats\"}", 1);
	n = take(rt, ci, f, 4);
	ok(n == 1 && f[0].type == OMR_F_END && f[0].stream == 3 && strstr(f[0].payload, "answered"),
	   "an op the monitor answers never reaches the agent");
	is_int(take(rt, -1, f, 4), 0, "nothing went to the agent");
	ok(open_stream(rt, ci, 4, 2) != 0, "other ops still go to the agent");
	mon_router_own_request(rt, MON_OWN_GSID_MIN + 1, "{\"op\":\"net_config\"}", 19);
	n = take(rt, -1, f, 4);
	ok(n == 1 && f[0].type == OMR_F_REQ && f[0].stream == MON_OWN_GSID_MIN + 1,
	   "the monitor's own request goes to the agent on its stream");
	from_agent(rt, OMR_F_END, 0, MON_OWN_GSID_MIN + 1, "{\"iface\":\"eth0\"}", 16, 3);
	ok(own_gsid == MON_OWN_GSID_MIN + 1 && strstr(own_payload, "eth0"),
	   "its END goes to the monitor");
	is_int(take(rt, ci, f, 4), 0, "and to no client");

	/* An op answered later: nothing now, its END when the monitor has
	 * it, and nothing for a client that left (nor for the next one at
	 * its number). */
	req(rt, ci, 5, "{\"op\":\"pause\"}", 1);
	is_int(take(rt, ci, f, 4) + take(rt, -1, f, 4), 0, "a deferred op is not answered at once");
	ok(mon_router_answer(rt, &later, json_pack("{s:s}", "state", "paused")) == 0, "answer later");
	n = take(rt, ci, f, 4);
	ok(n == 1 && f[0].type == OMR_F_END && f[0].stream == 5 && strstr(f[0].payload, "paused"),
	   "the deferred END reaches the client on its stream");
	req(rt, ci, 6, "{\"op\":\"pause\"}", 1);
	mon_router_client_gone(rt, ci, 4);
	ci = mon_router_accept(rt, 0);
	ok(ci == later.ci && mon_router_answer(rt, &later, json_object()) < 0 &&
	   take(rt, ci, f, 4) == 0, "a deferred answer to a client that left goes nowhere");
	mon_router_free(rt);
}

/* Drains client ci's queue as raw bytes (a forward's connection). */
static size_t take_raw(struct mon_router *rt, int ci, char *out, size_t max)
{
	struct sink s = { .budget = SIZE_MAX };
	size_t n;

	mon_router_flush_client(rt, ci, sink_write, &s);
	n = s.len < max ? s.len : max;
	if (n)
		memcpy(out, s.buf, n);
	free(s.buf);
	return s.len;
}

static void test_forward(void)
{
	struct mon_router *rt = router(1000);
	int ci = mon_router_accept(rt, 0), c2 = mon_router_accept(rt, 0);
	struct frame f[8];
	char raw[256];
	uint8_t win[OMR_WINDOW_LEN];
	uint32_t g;
	int n;

	req(rt, ci, 1, "{\"op\":\"forward\",\"port\":8000}", 1000);
	n = take(rt, -1, f, 8);
	g = f[0].stream;
	ok(n == 1 && f[0].type == OMR_F_REQ && strstr(f[0].payload, "8000"),
	   "forward: the REQ goes to the agent");
	is_int(mon_router_raw(rt, ci), 0, "forward: framed until the agent connected");
	req(rt, ci, 2, "{\"op\":\"ping\"}", 1000);
	n = take(rt, ci, f, 8);
	ok(n == 1 && f[0].type == OMR_F_END && strstr(f[0].payload, "connection of its own"),
	   "forward: no other stream on a forward's connection");

	from_agent(rt, OMR_F_REPLY, 0, g, "{\"connected\":true}", 18, 1001);
	n = take(rt, ci, f, 8);
	ok(n == 1 && f[0].type == OMR_F_REPLY && f[0].stream == 1,
	   "forward: the agent's REPLY reaches the client as a frame");
	ok(mon_router_raw(rt, ci) == (MON_RAW_ON | MON_RAW_READ), "forward: then the connection is raw");

	from_agent(rt, OMR_F_DATA, OMR_CH_STDOUT, g, "HTTP/1.0 200", 12, 1002);
	from_agent(rt, OMR_F_DATA, OMR_CH_STDOUT, g, " OK\r\n", 5, 1002);
	ok(take_raw(rt, ci, raw, sizeof(raw)) == 17 && !memcmp(raw, "HTTP/1.0 200 OK\r\n", 17),
	   "forward: the guest's bytes reach the client without frame headers");
	n = take(rt, -1, f, 8);
	ok(n == 2 && f[0].type == OMR_F_WINDOW && f[0].stream == g && f[1].type == OMR_F_WINDOW,
	   "forward: each written chunk returns its credit to the agent");

	is_int(mon_router_raw_room(rt, ci), OMR_DATA_CHUNK, "forward: the client may send a chunk");
	mon_router_on_client_raw(rt, ci, (const uint8_t *)"GET /", 5, 1003);
	n = take(rt, -1, f, 8);
	ok(n == 1 && f[0].type == OMR_F_DATA && f[0].flags == OMR_CH_STDIN && f[0].stream == g &&
		   !strcmp(f[0].payload, "GET /"),
	   "forward: the client's bytes go to the agent as DATA 0");
	/* Spend the credit: nothing more is read until the agent grants it. */
	static uint8_t big[OMR_WINDOW_INIT];
	for (size_t off = 0; off < sizeof(big) - 5;) {
		size_t k = mon_router_raw_room(rt, ci);
		if (k > sizeof(big) - 5 - off)
			k = sizeof(big) - 5 - off;
		mon_router_on_client_raw(rt, ci, big, k, 1003);
		off += k;
	}
	take(rt, -1, f, 8);
	ok(mon_router_raw_room(rt, ci) == 0 && !(mon_router_raw(rt, ci) & MON_RAW_READ),
	   "forward: without the agent's credit the client is not read");
	omr_window_pack(100, win);
	from_agent(rt, OMR_F_WINDOW, 0, g, win, sizeof(win), 1004);
	ok(mon_router_raw_room(rt, ci) == 100 && take(rt, ci, f, 8) == 0,
	   "forward: the agent's WINDOW is credit, not a frame for the client");

	mon_router_on_client_raw(rt, ci, NULL, 0, 1005);
	n = take(rt, -1, f, 8);
	ok(n == 1 && f[0].type == OMR_F_EOF && f[0].flags == OMR_CH_STDIN && f[0].stream == g &&
		   !(mon_router_raw(rt, ci) & MON_RAW_READ),
	   "forward: the client's half-close is EOF 0");
	from_agent(rt, OMR_F_DATA, OMR_CH_STDOUT, g, "bye", 3, 1006);
	from_agent(rt, OMR_F_EOF, OMR_CH_STDOUT, g, NULL, 0, 1006);
	ok(!(mon_router_raw(rt, ci) & MON_RAW_SHUT), "forward: no shutdown before the data is written");
	ok(take_raw(rt, ci, raw, sizeof(raw)) == 3 && (mon_router_raw(rt, ci) & MON_RAW_SHUT) &&
		   !(mon_router_raw(rt, ci) & MON_RAW_CLOSE),
	   "forward: the guest's EOF shuts the client's side once written");
	mon_router_raw_shut(rt, ci);
	from_agent(rt, OMR_F_END, 0, g, "{\"bytes_in\":5}", 14, 1007);
	ok(take_raw(rt, ci, raw, sizeof(raw)) == 0 && (mon_router_raw(rt, ci) & MON_RAW_CLOSE),
	   "forward: the END is not written; it closes the connection");
	is_int(mon_router_nroutes(rt), 0, "forward: END closes the route");

	/* A port nobody listens on: the error END as a frame, no raw mode. */
	take(rt, -1, f, 8);
	req(rt, c2, 1, "{\"op\":\"forward\",\"port\":9}", 1010);
	take(rt, -1, f, 8);
	g = f[0].stream;
	from_agent(rt, OMR_F_END, 0, g, "{\"error\":\"x\",\"code\":\"connection_refused\"}", 40, 1011);
	n = take(rt, c2, f, 8);
	ok(n == 1 && f[0].type == OMR_F_END && strstr(f[0].payload, "connection_refused") &&
		   mon_router_raw(rt, c2) == 0,
	   "forward: a refused connection is an END frame on a framed connection");

	/* A raw connection that goes away cancels the agent's stream; an
	 * agent restart closes it without writing a frame into its bytes. */
	mon_router_client_gone(rt, c2, 1012);
	from_agent(rt, OMR_F_HELLO, 0, 0, "{\"version\":1}", 13, 1012);
	c2 = mon_router_accept(rt, 0);
	req(rt, c2, 1, "{\"op\":\"forward\",\"port\":80}", 1013);
	take(rt, -1, f, 8);
	g = f[0].stream;
	from_agent(rt, OMR_F_REPLY, 0, g, "{\"connected\":true}", 18, 1014);
	take(rt, c2, f, 8);
	from_agent(rt, OMR_F_HELLO, 0, 0, "{\"version\":1}", 13, 1015);
	ok(take_raw(rt, c2, raw, sizeof(raw)) == 0 && (mon_router_raw(rt, c2) & MON_RAW_CLOSE),
	   "forward: an agent restart closes a raw connection, writing nothing into it");
	mon_router_client_gone(rt, c2, 1016);
	c2 = mon_router_accept(rt, 0);
	req(rt, c2, 1, "{\"op\":\"forward\",\"port\":80}", 1017);
	take(rt, -1, f, 8);
	g = f[0].stream;
	from_agent(rt, OMR_F_REPLY, 0, g, "{\"connected\":true}", 18, 1018);
	take(rt, c2, f, 8);
	mon_router_client_gone(rt, c2, 1019);
	n = take(rt, -1, f, 8);
	ok(n == 1 && f[0].type == OMR_F_SIGNAL && f[0].stream == g && !strcmp(f[0].payload, "{}"),
	   "forward: a client that leaves cancels the guest connection");
	mon_router_free(rt);
}

int main(void)
{
	test_route();
	test_monitor_ops();
	test_window_overrun();
	test_empty_data();
	test_small_frames();
	test_ctl_cap();
	test_own_answers();
	test_orphans();
	test_stream_ids();
	test_activity();
	test_clients();
	test_agent_restart();
	test_backpressure();
	test_forward();
	return done_testing();
}
