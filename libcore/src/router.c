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
#include "omnirun/log.h"
#include "omnirun/util.h"

#define HISTORY_MAX (4u << 20)

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

/* Writes what the fd takes now.  Returns 0 or -errno (not -EAGAIN). */
static int outq_flush(int fd, struct outq *q)
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
		free(b);
	}
	return 0;
}

static void queue_frame(struct outq *q, uint8_t type, uint8_t flags, uint32_t sid,
			const void *payload, size_t len)
{
	uint8_t hdr[OMR_FRAME_HDR];
	struct omr_frame_hdr h = { .len = (uint32_t)len, .type = type, .flags = flags,
				   .stream = sid };
	struct outq_buf *b = omr_xmalloc(sizeof(*b) + OMR_FRAME_HDR + len);

	omr_frame_hdr_pack(&h, hdr);
	b->next = NULL;
	b->len = OMR_FRAME_HDR + len;
	b->off = 0;
	memcpy(b->data, hdr, OMR_FRAME_HDR);
	if (len)
		memcpy(b->data + OMR_FRAME_HDR, payload, len);
	if (q->tail)
		q->tail->next = b;
	else
		q->head = b;
	q->tail = b;
	q->bytes += b->len;
}

static void queue_json(struct outq *q, uint8_t type, uint32_t sid, json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);

	json_decref(j);
	if (!s)
		abort();
	queue_frame(q, type, 0, sid, s, strlen(s));
	free(s);
}

static void client_error(struct mon *m, int ci, uint32_t csid, const char *code,
			 const char *msg)
{
	queue_json(&m->clients[ci]->out, OMR_F_END, csid,
		   json_pack("{s:s, s:s}", "error", msg, "code", code));
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

/* --- agent side --- */

static void agent_restarted(struct mon *m)
{
	/* Streams open on the old agent process are lost: tell their clients. */
	while (m->nroutes) {
		struct route *r = &m->routes[m->nroutes - 1];
		if (r->client >= 0)
			client_error(m, r->client, r->csid, "agent_restarted",
				     "the guest agent restarted; the request was lost");
		route_remove(m, r);
	}
}

static void agent_frame(struct mon *m, const struct omr_frame_hdr *h, const uint8_t *p)
{
	struct route *r;

	if (h->type == OMR_F_HELLO) {
		json_t *j = json_loadb((const char *)p, h->len, 0, NULL);
		if (m->hello)
			agent_restarted(m);
		json_decref(m->hello);
		m->hello = j ? j : json_object();
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
	if (r->client >= 0) {
		struct client *cl = m->clients[r->client];
		queue_frame(&cl->out, h->type, h->flags, r->csid, p, h->len);
	}
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

	if (!op) {
		client_error(m, ci, csid, "bad_request", "a request needs a JSON object with \"op\"");
		goto out;
	}
	if (csid == 0 || route_by_client(m, ci, csid)) {
		client_error(m, ci, csid, "bad_request", "stream id 0 or already in use");
		goto out;
	}
	m->last_activity = omr_now_ms();
	if (!strcmp(op, "status")) {
		queue_json(&cl->out, OMR_F_END, csid, status_json(m));
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
	if (m->nroutes == m->routes_cap) {
		m->routes_cap = m->routes_cap ? m->routes_cap * 2 : 64;
		m->routes = omr_xrealloc(m->routes, m->routes_cap * sizeof(*m->routes));
	}
	r = &m->routes[m->nroutes++];
	*r = (struct route){ .gsid = new_gsid(m), .client = ci, .csid = csid,
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
	struct route *r;

	switch (h->type) {
	case OMR_F_REQ:
		client_req(m, ci, h->stream, p, h->len);
		return;
	case OMR_F_DATA:
	case OMR_F_EOF:
	case OMR_F_WINDOW:
	case OMR_F_SIGNAL:
	case OMR_F_RESIZE:
		r = route_by_client(m, ci, h->stream);
		if (!r)
			return; /* raced with END: nothing to do */
		if (h->type == OMR_F_DATA)
			m->last_activity = omr_now_ms();
		queue_frame(&m->agent_out, h->type, h->flags, r->gsid, p, h->len);
		return;
	default:
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
		close(fd);
		return;
	}
	m->clients[ci] = omr_xcalloc(1, sizeof(struct client));
	m->clients[ci]->fd = fd;
	m->clients[ci]->uid = cred.uid;
	if (omr_frame_reader_init(&m->clients[ci]->rd) < 0)
		abort();
}

void mon_router_close_all(struct mon *m)
{
	for (int ci = 0; ci < MON_MAX_CLIENTS; ci++) {
		struct client *cl = m->clients[ci];
		if (!cl)
			continue;
		if (ci == m->destroy_client) {
			/* The caller of destroy learns that teardown is done. */
			omr_fd_set_nonblock(cl->fd, 0);
			queue_frame(&cl->out, OMR_F_END, 0, m->destroy_csid, "{}", 2);
			outq_flush(cl->fd, &cl->out);
		}
		client_close(m, ci);
	}
	while (m->nroutes)
		route_remove(m, &m->routes[m->nroutes - 1]);
	free(m->routes);
	m->routes = NULL;
	m->routes_cap = 0;
}

static void check_lifetime(struct mon *m)
{
	int64_t now = (int64_t)(omr_wall_ms() / 1000);

	if (m->sb.expires_at > 0 && now >= m->sb.expires_at)
		m->end_reason = "timeout";
	else if (m->sb.idle_timeout_s > 0 && m->nroutes == 0 &&
		 omr_now_ms() - m->last_activity >= (uint64_t)m->sb.idle_timeout_s * 1000)
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
		nfds_t n = P_CLIENTS;

		p[P_SIG] = (struct pollfd){ .fd = m->sig_fd, .events = POLLIN };
		p[P_CON] = (struct pollfd){ .fd = m->console_pipe, .events = POLLIN };
		p[P_LISTEN] = (struct pollfd){ .fd = m->listen_fd, .events = POLLIN };
		p[P_AGENT] = (struct pollfd){ .fd = m->agent_fd,
					      .events = POLLIN | (m->agent_out.head ? POLLOUT : 0) };
		for (int ci = 0; ci < MON_MAX_CLIENTS; ci++) {
			struct client *cl = m->clients[ci];
			if (!cl)
				continue;
			map[n - P_CLIENTS] = ci;
			/* Stop reading clients while the agent is not keeping
			 * up: memory stays bounded. */
			p[n++] = (struct pollfd){ .fd = cl->fd,
						  .events = (agent_full ? 0 : POLLIN) |
							    (cl->out.head ? POLLOUT : 0) };
		}
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
		if (m->agent_out.head && outq_flush(m->agent_fd, &m->agent_out) < 0) {
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
			if (outq_flush(cl->fd, &cl->out) < 0 || cl->out.bytes > MON_CLIENT_OUTQ_MAX)
				client_close(m, ci);
		}
		if (p[P_LISTEN].revents & POLLIN)
			accept_client(m);
		if (m->agent_out.head)
			outq_flush(m->agent_fd, &m->agent_out);
		check_lifetime(m);
	}
}
