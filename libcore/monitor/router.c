/* The monitor's event loop: many client streams multiplexed onto the one
 * agent channel.  Stream ids are rewritten (client id <-> channel id); DATA
 * and WINDOW pass through unchanged, so flow control stays end to end. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "monitor-internal.h"
#include "omnirun/base/log.h"
#include "omnirun/base/util.h"

#define HISTORY_MAX (4u << 20)
/* The HELLO goes into every status answer: a guest must not make those
 * large. */
#define HELLO_MAX 4096
#define TOO_LARGE_END "{\"error\":\"the answer is too large\",\"code\":\"too_large\"}"

static struct route *route_by_gsid(struct mon *m, uint32_t gsid);

/* --- output queues --- */

void mon_outq_clear(struct outq *q)
{
	while (q->head) {
		struct outq_buf *b = q->head;
		q->head = b->next;
		free(b);
	}
	q->tail = NULL;
	q->bytes = 0;
}

/* Drops every frame not yet begun.  One partly written is kept: the byte
 * stream must stay framed. */
static void outq_drop_unsent(struct outq *q)
{
	struct outq_buf *keep = q->head && q->head->off ? q->head : NULL;

	if (keep)
		q->head = keep->next;
	mon_outq_clear(q);
	if (keep) {
		keep->next = NULL;
		q->head = q->tail = keep;
		q->bytes = keep->len - keep->off;
	}
}

/* A frame has left: it no longer counts against its budget. */
static void outq_written(struct mon *m, struct client *cl, const struct outq_buf *b)
{
	struct route *r;

	if (b->acct == ACCT_OWN && cl)
		cl->own_queued -= b->len;
	else if (b->acct == ACCT_ROUTE && (r = route_by_gsid(m, b->gsid)))
		r->ctl_queued -= b->len < r->ctl_queued ? b->len : r->ctl_queued;
}

/* Writes what the fd takes now (cl: the client it belongs to, or NULL).
 * Returns 0 or -errno (not -EAGAIN). */
static int outq_flush(struct mon *m, int fd, struct outq *q, struct client *cl)
{
	while (q->head) {
		struct outq_buf *b = q->head;
		ssize_t n = send(fd, b->data + b->off, b->len - b->off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return 0;
			return -errno;
		}
		b->off += (size_t)n;
		q->bytes -= (size_t)n;
		if (b->off < b->len)
			return 0;
		q->head = b->next;
		if (!q->head)
			q->tail = NULL;
		outq_written(m, cl, b);
		free(b);
	}
	return 0;
}

/* Queues one frame (counted as ACCT_NONE; the caller may change that).
 * Returns it, or NULL when the payload is over the protocol's limit. */
static struct outq_buf *queue_frame(struct outq *q, uint8_t type, uint8_t flags, uint32_t sid,
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
	return b;
}

/* Queues j (released) as one frame; an END too large to send becomes an
 * error END, so that the stream still ends. */
static struct outq_buf *queue_json(struct outq *q, uint8_t type, uint32_t sid, json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);
	struct outq_buf *b;

	json_decref(j);
	if (!s)
		abort();
	b = queue_frame(q, type, 0, sid, s, strlen(s));
	free(s);
	if (!b && type == OMR_F_END)
		b = queue_frame(q, type, 0, sid, TOO_LARGE_END, strlen(TOO_LARGE_END));
	return b;
}

/* The monitor's own answer to a client (j is released). */
static void client_answer(struct mon *m, int ci, uint32_t csid, json_t *j)
{
	struct client *cl = m->clients[ci];
	struct outq_buf *b = queue_json(&cl->out, OMR_F_END, csid, j);

	if (b) {
		b->acct = ACCT_OWN;
		cl->own_queued += b->len;
	}
}

static void client_error(struct mon *m, int ci, uint32_t csid, const char *code,
			 const char *msg)
{
	client_answer(m, ci, csid, json_pack("{s:s, s:s}", "error", msg, "code", code));
}

/* --- routes --- */

static struct route *route_by_gsid(struct mon *m, uint32_t gsid)
{
	for (size_t i = 0; i < m->nroutes; i++)
		if (m->routes[i].gsid == gsid)
			return &m->routes[i];
	return NULL;
}

static struct route *route_by_client(struct mon *m, int ci, uint32_t csid)
{
	for (size_t i = 0; i < m->nroutes; i++)
		if (m->routes[i].client == ci && m->routes[i].csid == csid)
			return &m->routes[i];
	return NULL;
}

static void route_remove(struct mon *m, struct route *r)
{
	size_t i = (size_t)(r - m->routes);

	if (r->client >= 0 && m->clients[r->client])
		m->clients[r->client]->nstreams--;
	json_decref(r->hist);
	m->routes[i] = m->routes[--m->nroutes];
}

static uint32_t new_gsid(struct mon *m)
{
	do {
		if (++m->next_gsid == 0)
			m->next_gsid = 1;
	} while (route_by_gsid(m, m->next_gsid));
	return m->next_gsid;
}

static void history_write(struct mon *m, struct route *r, json_t *end)
{
	json_t *v;
	char *line;

	if (!r->hist || m->history_fd < 0)
		return;
	json_object_set_new(r->hist, "duration_ms", json_integer((json_int_t)(omr_now_ms() - r->started_ms)));
	json_object_set_new(r->hist, "ended_at", json_integer((json_int_t)omr_wall_ms()));
	const char *keys[] = { "exit_code", "signal", "timed_out", "error", "pid", "background" };
	for (size_t i = 0; i < OMR_ARRAY_SIZE(keys); i++)
		if ((v = json_object_get(end, keys[i])))
			json_object_set(r->hist, keys[i], v);
	line = json_dumps(r->hist, JSON_COMPACT);
	if (!line)
		return;
	/* Bounded: a sandbox that runs millions of commands keeps the first
	 * HISTORY_MAX bytes of its history. */
	if (lseek(m->history_fd, 0, SEEK_END) + (off_t)strlen(line) < (off_t)HISTORY_MAX) {
		size_t n = strlen(line);
		line[n] = '\n';
		(void)!write(m->history_fd, line, n + 1);
	}
	free(line);
}

/* Cancels a live route: the agent is told (SIGNAL {}), the client gets
 * END with the error and the route is forgotten, so that client, monitor
 * and agent all agree that the stream is over. */
static void route_cancel(struct mon *m, struct route *r, const char *code, const char *msg)
{
	json_t *end = json_pack("{s:s, s:s}", "error", msg, "code", code);

	queue_frame(&m->agent_out, OMR_F_SIGNAL, 0, r->gsid, "{}", 2);
	history_write(m, r, end);
	if (r->client >= 0)
		client_answer(m, r->client, r->csid, end);
	else
		json_decref(end);
	route_remove(m, r);
}

/* --- agent side --- */

static void agent_restarted(struct mon *m)
{
	/* Streams open on the old agent process are lost: tell their clients,
	 * and hand none of their queued frames to the new agent. */
	outq_drop_unsent(&m->agent_out);
	while (m->nroutes) {
		struct route *r = &m->routes[m->nroutes - 1];
		if (r->client >= 0)
			client_error(m, r->client, r->csid, "agent_restarted",
				     "the guest agent restarted; the request was lost");
		route_remove(m, r);
	}
}

static void agent_hello(struct mon *m, const uint8_t *p, size_t len)
{
	json_t *j = json_loadb((const char *)p, len, 0, NULL);

	if (m->hello)
		agent_restarted(m);
	json_decref(m->hello);
	if (json_is_object(j) && len <= HELLO_MAX) {
		m->hello = j;
		return;
	}
	json_t *v = json_object_get(j, "version");
	m->hello = json_pack("{s:O?}", "version", json_is_integer(v) ? v : NULL);
	json_decref(j);
}

/* Forwards a frame of route r to its client, within the route's bounds. */
static void route_forward(struct mon *m, struct route *r, const struct omr_frame_hdr *h,
			  const uint8_t *p)
{
	struct client *cl = m->clients[r->client];
	struct outq_buf *b;

	if (h->type == OMR_F_DATA) {
		r->data_unacked += h->len;
		if (r->data_unacked > MON_ROUTE_DATA_MAX) {
			route_cancel(m, r, "too_large", "the stream overran its flow-control window");
			return;
		}
		queue_frame(&cl->out, h->type, h->flags, r->csid, p, h->len);
		return;
	}
	/* The END always goes: it closes the route and is one frame. */
	if (h->type != OMR_F_END &&
	    r->ctl_queued + OMR_FRAME_HDR + h->len > MON_ROUTE_CTL_MAX) {
		route_cancel(m, r, "too_large", "the client does not read the stream's replies");
		return;
	}
	b = queue_frame(&cl->out, h->type, h->flags, r->csid, p, h->len);
	if (b) {
		b->acct = ACCT_ROUTE;
		b->gsid = r->gsid;
		r->ctl_queued += b->len;
	}
}

static void agent_frame(struct mon *m, const struct omr_frame_hdr *h, const uint8_t *p)
{
	struct route *r;

	if (h->type == OMR_F_HELLO) {
		agent_hello(m, p, h->len);
		return;
	}
	r = route_by_gsid(m, h->stream);
	if (!r)
		return; /* a stream we already gave up on */
	if (h->type == OMR_F_END) {
		json_t *j = json_loadb((const char *)p, h->len, 0, NULL);
		if (j)
			history_write(m, r, j);
		json_decref(j);
	}
	if (r->client >= 0)
		route_forward(m, r, h, p); /* may cancel r, never on END */
	if (h->type == OMR_F_END)
		route_remove(m, r);
}

int mon_agent_readable(struct mon *m)
{
	ssize_t n = omr_frame_reader_fill(&m->agent_rd, m->agent_fd);
	struct omr_frame_hdr h;
	const uint8_t *p;
	int rc;

	if (n == -EAGAIN)
		return 0;
	if (n <= 0)
		return n == 0 ? -EPIPE : (int)n;
	while ((rc = omr_frame_reader_next(&m->agent_rd, &h, &p)) == 1)
		agent_frame(m, &h, p);
	return rc < 0 ? rc : 0;
}

/* --- client side --- */

static json_t *status_json(struct mon *m)
{
	json_t *j = json_pack("{s:s, s:s, s:s, s:I, s:I, s:i, s:i, s:i, s:i, s:s, s:I}",
			      "sandbox_id", m->sb.id, "template", m->sb.template_name,
			      "state", omr_sb_state_name(m->sb.state),
			      "created_at", (json_int_t)m->sb.created_at,
			      "expires_at", (json_int_t)m->sb.expires_at,
			      "cpus", m->sb.cpus, "memory_mb", m->sb.memory_mb,
			      "disk_mb", m->sb.disk_mb, "vmm_pid", (int)m->vmm_pid,
			      "accel", m->sb.accel,
			      "idle_ms", (json_int_t)(omr_now_ms() - m->last_activity));
	if (m->hello)
		json_object_set(j, "agent", m->hello);
	return j;
}

static void client_req(struct mon *m, int ci, uint32_t csid, const uint8_t *p, size_t len)
{
	struct client *cl = m->clients[ci];
	json_t *req = json_loadb((const char *)p, len, 0, NULL);
	const char *op = json_string_value(json_object_get(req, "op"));
	struct route *r;
	uint32_t gsid;

	if (csid == 0) {
		client_error(m, ci, csid, "bad_request", "stream id 0 is the connection's");
		goto out;
	}
	if ((r = route_by_client(m, ci, csid))) {
		/* The client lost track of its stream: both ends drop it. */
		route_cancel(m, r, "bad_request", "stream id already in use");
		goto out;
	}
	if (!op) {
		client_error(m, ci, csid, "bad_request", "a request needs a JSON object with \"op\"");
		goto out;
	}
	m->last_activity = omr_now_ms();
	if (!strcmp(op, "status")) {
		client_answer(m, ci, csid, status_json(m));
		goto out;
	}
	if (!strcmp(op, "destroy")) {
		m->end_reason = "killed";
		m->destroy_client = ci;
		m->destroy_csid = csid;
		goto out;
	}
	if (!strcmp(op, "hello")) {
		client_error(m, ci, csid, "bad_request", "op 'hello' is the monitor's own");
		goto out;
	}
	if (cl->nstreams >= MON_MAX_STREAMS_PER_CLIENT) {
		client_error(m, ci, csid, "limit_reached", "too many open streams on this connection");
		goto out;
	}
	gsid = new_gsid(m);
	if (m->nroutes == m->routes_cap) {
		m->routes_cap = m->routes_cap ? m->routes_cap * 2 : 64;
		m->routes = omr_xrealloc(m->routes, m->routes_cap * sizeof(*m->routes));
	}
	r = &m->routes[m->nroutes++];
	*r = (struct route){ .gsid = gsid, .client = ci, .csid = csid,
			     .started_ms = omr_now_ms() };
	cl->nstreams++;
	if (!strcmp(op, "exec")) {
		/* History keeps what ran, never the environment (secrets). */
		r->hist = json_pack("{s:I}", "started_at", (json_int_t)omr_wall_ms());
		const char *keys[] = { "argv", "cmd", "cwd", "user", "background" };
		for (size_t i = 0; i < OMR_ARRAY_SIZE(keys); i++) {
			json_t *v = json_object_get(req, keys[i]);
			if (v)
				json_object_set(r->hist, keys[i], v);
		}
	}
	queue_frame(&m->agent_out, OMR_F_REQ, 0, r->gsid, p, len);
out:
	json_decref(req);
}

static void client_frame(struct mon *m, int ci, const struct omr_frame_hdr *h, const uint8_t *p)
{
	struct route *r = route_by_client(m, ci, h->stream);

	switch (h->type) {
	case OMR_F_REQ:
		client_req(m, ci, h->stream, p, h->len);
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
		if (h->type == OMR_F_DATA)
			m->last_activity = omr_now_ms();
		queue_frame(&m->agent_out, h->type, h->flags, r->gsid, p, h->len);
		return;
	default:
		if (r)
			route_cancel(m, r, "bad_request", "unexpected frame type");
		else
			client_error(m, ci, h->stream, "bad_request", "unexpected frame type");
	}
}

static void client_close(struct mon *m, int ci)
{
	struct client *cl = m->clients[ci];

	/* Streams of a client that left are cancelled: foreground commands
	 * are killed, uploads discarded; background commands live on. */
	for (size_t i = 0; i < m->nroutes; i++) {
		struct route *r = &m->routes[i];
		if (r->client != ci)
			continue;
		queue_frame(&m->agent_out, OMR_F_SIGNAL, 0, r->gsid, "{}", 2);
		r->client = -1;
		r->orphaned_ms = omr_now_ms();
	}
	if (m->destroy_client == ci)
		m->destroy_client = -1;
	close(cl->fd);
	omr_frame_reader_free(&cl->rd);
	mon_outq_clear(&cl->out);
	free(cl);
	m->clients[ci] = NULL;
}

static void client_readable(struct mon *m, int ci)
{
	struct client *cl = m->clients[ci];
	ssize_t n = omr_frame_reader_fill(&cl->rd, cl->fd);
	struct omr_frame_hdr h;
	const uint8_t *p;
	int rc;

	if (n == -EAGAIN)
		return;
	if (n <= 0) {
		client_close(m, ci);
		return;
	}
	while ((rc = omr_frame_reader_next(&cl->rd, &h, &p)) == 1)
		client_frame(m, ci, &h, p);
	if (rc < 0) {
		/* Oversized header: the byte stream cannot be resynchronised. */
		client_close(m, ci);
	}
}

static void accept_client(struct mon *m)
{
	static const char full[] = "{\"error\":\"too many connections to this sandbox\","
				   "\"code\":\"limit_reached\"}";
	struct ucred cred;
	socklen_t len = sizeof(cred);
	int fd = accept4(m->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	int ci;

	if (fd < 0)
		return;
	/* Identity comes from the kernel, never from the request. */
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
	    (cred.uid != 0 && cred.uid != m->sb.owner)) {
		close(fd);
		return;
	}
	for (ci = 0; ci < MON_MAX_CLIENTS && m->clients[ci]; ci++)
		;
	if (ci == MON_MAX_CLIENTS) {
		/* Said on stream 0, the connection's own; best effort. */
		size_t n;
		uint8_t *f = omr_frame_build(OMR_F_END, 0, 0, full, sizeof(full) - 1, &n);
		if (f)
			(void)!send(fd, f, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		free(f);
		close(fd);
		return;
	}
	m->clients[ci] = omr_xcalloc(1, sizeof(struct client));
	m->clients[ci]->fd = fd;
	m->clients[ci]->uid = cred.uid;
	if (omr_frame_reader_init(&m->clients[ci]->rd) < 0)
		abort();
}

/* The caller of destroy learns that teardown is done, if it takes the
 * answer within a bound: teardown never waits on a client for long. */
static void destroy_answer(struct mon *m)
{
	struct client *cl = m->destroy_client >= 0 ? m->clients[m->destroy_client] : NULL;
	uint64_t deadline = omr_now_ms() + MON_DESTROY_FLUSH_MS;

	if (!cl)
		return;
	queue_frame(&cl->out, OMR_F_END, 0, m->destroy_csid, "{}", 2);
	while (outq_flush(m, cl->fd, &cl->out, cl) == 0 && cl->out.head) {
		struct pollfd p = { .fd = cl->fd, .events = POLLOUT };
		uint64_t now = omr_now_ms();

		if (now >= deadline || (poll(&p, 1, (int)(deadline - now)) < 0 && errno != EINTR))
			break;
	}
}

void mon_router_close_all(struct mon *m)
{
	destroy_answer(m);
	for (int ci = 0; ci < MON_MAX_CLIENTS; ci++)
		if (m->clients[ci])
			client_close(m, ci);
	while (m->nroutes)
		route_remove(m, &m->routes[m->nroutes - 1]);
	free(m->routes);
	m->routes = NULL;
	m->routes_cap = 0;
}

/* Forgets orphans past their time, then ends the sandbox when its
 * lifetime or idle time is over (orphans are no activity). */
static void check_lifetime(struct mon *m)
{
	uint64_t now = omr_now_ms();
	size_t live = 0;

	for (size_t i = 0; i < m->nroutes;) {
		struct route *r = &m->routes[i];
		if (r->client < 0 && now - r->orphaned_ms >= MON_ORPHAN_TTL_MS) {
			route_remove(m, r); /* moves the last route to i */
			continue;
		}
		live += r->client >= 0;
		i++;
	}
	if (m->sb.expires_at > 0 && (int64_t)(omr_wall_ms() / 1000) >= m->sb.expires_at)
		m->end_reason = "timeout";
	else if (m->sb.idle_timeout_s > 0 && live == 0 &&
		 now - m->last_activity >= (uint64_t)m->sb.idle_timeout_s * 1000)
		m->end_reason = "idle";
}

void mon_serve(struct mon *m)
{
	enum { P_SIG, P_CON, P_LISTEN, P_AGENT, P_CLIENTS };
	struct pollfd p[P_CLIENTS + MON_MAX_CLIENTS];
	int map[MON_MAX_CLIENTS];

	m->destroy_client = -1;
	while (!m->end_reason) {
		int agent_full = m->agent_out.bytes > MON_AGENT_OUTQ_MAX;
		size_t queued = m->agent_out.bytes;
		nfds_t n = P_CLIENTS;

		p[P_SIG] = (struct pollfd){ .fd = m->sig_fd, .events = POLLIN };
		p[P_CON] = (struct pollfd){ .fd = m->console_pipe, .events = POLLIN };
		p[P_LISTEN] = (struct pollfd){ .fd = m->listen_fd, .events = POLLIN };
		for (int ci = 0; ci < MON_MAX_CLIENTS; ci++) {
			struct client *cl = m->clients[ci];
			if (!cl)
				continue;
			map[n - P_CLIENTS] = ci;
			queued += cl->out.bytes;
			/* Stop reading clients while the agent is not keeping
			 * up: memory stays bounded. */
			p[n++] = (struct pollfd){ .fd = cl->fd,
						  .events = (agent_full ? 0 : POLLIN) |
							    (cl->out.head ? POLLOUT : 0) };
		}
		/* And stop reading the agent while clients are not keeping up
		 * in all (each route is bounded on its own). */
		p[P_AGENT] = (struct pollfd){ .fd = m->agent_fd,
					      .events = (queued > MON_QUEUED_MAX ? 0 : POLLIN) |
							(m->agent_out.head ? POLLOUT : 0) };
		if (poll(p, n, 1000) < 0 && errno != EINTR)
			break;
		if (p[P_SIG].revents && mon_handle_signals(m)) {
			if (!m->end_reason)
				m->end_reason = "vmm_exited";
			break;
		}
		if (p[P_CON].revents)
			mon_console_drain(m);
		if (p[P_AGENT].revents & (POLLIN | POLLHUP | POLLERR)) {
			if (mon_agent_readable(m) < 0) {
				/* QEMU closed the channel: the VM is going. */
				omr_log(OMR_LOG_WARN, "agent channel closed");
				close(m->agent_fd);
				m->agent_fd = -1;
				if (!m->end_reason)
					m->end_reason = "vmm_exited";
				break;
			}
		}
		if (m->agent_out.head && outq_flush(m, m->agent_fd, &m->agent_out, NULL) < 0) {
			m->end_reason = "vmm_exited";
			break;
		}
		for (nfds_t i = P_CLIENTS; i < n; i++) {
			int ci = map[i - P_CLIENTS];
			if (!m->clients[ci])
				continue;
			if (p[i].revents & (POLLIN | POLLHUP | POLLERR))
				client_readable(m, ci);
		}
		for (int ci = 0; ci < MON_MAX_CLIENTS; ci++) {
			struct client *cl = m->clients[ci];
			if (!cl || !cl->out.head)
				continue;
			/* A client that does not read our own answers is
			 * dropped; its streams are bounded one by one. */
			if (outq_flush(m, cl->fd, &cl->out, cl) < 0 ||
			    cl->own_queued > MON_CLIENT_OWN_MAX)
				client_close(m, ci);
		}
		if (p[P_LISTEN].revents & POLLIN)
			accept_client(m);
		if (m->agent_out.head)
			outq_flush(m, m->agent_fd, &m->agent_out, NULL);
		check_lifetime(m);
	}
}
