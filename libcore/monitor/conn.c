/* The monitor's connections; see conn-internal.h. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn-internal.h"
#include "omnirun/base/log.h"
#include "omnirun/base/util.h"

/* Connections taken per wakeup of monitor.sock: the others wait their
 * turn in the kernel's backlog while the loop serves what it has. */
#define ACCEPT_BATCH 64
/* How long accepting pauses when the process is out of fds. */
#define ACCEPT_PAUSE_MS 100

static void sync_all(struct mon_conns *cs);

static ssize_t sock_write(void *ctx, const void *buf, size_t len)
{
	ssize_t n = send(*(const int *)ctx, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);

	return n < 0 ? -errno : n;
}

/* --- clients --- */

static void client_close(struct mon_conns *cs, int ci, uint64_t now);

/* A forward's connection carries bytes (router-internal.h): read what
 * the agent's credit allows.  A half-close is EOF toward the guest; a
 * hangup (both directions gone) or an error ends it: what the client
 * sent and the monitor has not read yet is lost with it. */
static void on_client_raw(struct mon_conn *c, uint32_t events, uint64_t now)
{
	struct mon_conns *cs = c->cs;
	uint8_t buf[OMR_DATA_CHUNK];
	size_t room = mon_router_raw_room(cs->rt, c->ci);
	ssize_t n;

	if ((events & EPOLLIN) && room > 0 && (mon_router_raw(cs->rt, c->ci) & MON_RAW_READ)) {
		n = recv(c->fd, buf, room, MSG_DONTWAIT);
		if (n >= 0)
			mon_router_on_client_raw(cs->rt, c->ci, buf, (size_t)n, now);
		else if (errno != EAGAIN && errno != EINTR)
			events |= EPOLLERR;
	}
	if (events & (EPOLLHUP | EPOLLERR))
		client_close(cs, c->ci, now);
}

static void on_client(void *user, int fd, uint32_t events)
{
	struct mon_conn *c = user;
	struct mon_conns *cs = c->cs;
	uint64_t now = omr_now_ms();
	struct omr_frame_hdr h;
	const uint8_t *p;
	ssize_t n;
	int rc;

	(void)fd;
	if (mon_router_raw(cs->rt, c->ci)) {
		on_client_raw(c, events, now);
		goto out;
	}
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		goto out;
	n = omr_frame_reader_fill(&c->rd, c->fd);
	if (n == -EAGAIN)
		goto out;
	if (n <= 0) {
		client_close(cs, c->ci, now);
		goto out;
	}
	while ((rc = omr_frame_reader_next(&c->rd, &h, &p)) == 1)
		mon_router_on_client_frame(cs->rt, c->ci, &h, p, now);
	/* An oversized header: the byte stream cannot be resynchronised. */
	if (rc < 0)
		client_close(cs, c->ci, now);
out:
	sync_all(cs);
}

static int client_activate(struct mon_conns *cs, int fd, uid_t uid, struct omr_err **err)
{
	int ci = mon_router_accept(cs->rt, uid);
	struct mon_conn *c;

	if (ci < 0)
		return omr_err_setx(err, OMR_E_LIMIT, EUSERS, "no room for a client");
	c = &cs->clients[ci];
	*c = (struct mon_conn){ .cs = cs, .ci = ci, .fd = fd, .events = EPOLLIN };
	if (omr_frame_reader_init(&c->rd) < 0)
		abort();
	if (omr_loop_add_fd(cs->loop, fd, EPOLLIN, on_client, c, err) < 0) {
		omr_frame_reader_free(&c->rd);
		mon_router_client_gone(cs->rt, ci, omr_now_ms());
		c->fd = -1;
		return -1;
	}
	return 0;
}

/* Serves the first waiters while there is room. */
static void promote_waiters(struct mon_conns *cs)
{
	while (cs->wait_len && mon_router_nclients(cs->rt) < MON_MAX_CLIENTS) {
		struct mon_waiter *w = &cs->waiting[cs->wait_head];
		int fd = w->fd;

		cs->wait_head = (cs->wait_head + 1) % MON_MAX_WAITING;
		cs->wait_len--;
		if (fd < 0)
			continue;
		cs->nwaiting--;
		w->fd = -1;
		omr_loop_remove_fd(cs->loop, fd);
		if (client_activate(cs, fd, w->uid, NULL) < 0)
			close(fd);
	}
}

static void client_close(struct mon_conns *cs, int ci, uint64_t now)
{
	struct mon_conn *c = &cs->clients[ci];

	if (c->fd < 0)
		return;
	mon_router_client_gone(cs->rt, ci, now);
	omr_loop_remove_fd(cs->loop, c->fd);
	close(c->fd);
	c->fd = -1;
	omr_frame_reader_free(&c->rd);
	promote_waiters(cs);
}

/* A waiter that hangs up leaves the queue. */
static void on_waiter(void *user, int fd, uint32_t events)
{
	struct mon_waiter *w = user;
	struct mon_conns *cs = w->cs;

	(void)events;
	omr_loop_remove_fd(cs->loop, fd);
	close(fd);
	w->fd = -1;
	cs->nwaiting--;
}

/* Said on stream 0, the connection's own; best effort. */
static void refuse(int fd)
{
	char *msg = omr_strdup_printf("{\"error\":\"too many connections to this sandbox (%d served "
				      "and %d waiting)\",\"code\":\"limit_reached\"}",
				      MON_MAX_CLIENTS, MON_MAX_WAITING);
	size_t n;
	uint8_t *f = omr_frame_build(OMR_F_END, 0, 0, msg, strlen(msg), &n);

	if (f)
		(void)!send(fd, f, n, MSG_NOSIGNAL | MSG_DONTWAIT);
	free(f);
	free(msg);
	close(fd);
}

static void enqueue(struct mon_conns *cs, int fd, uid_t uid)
{
	struct mon_waiter *w;

	if (cs->wait_len == MON_MAX_WAITING) {
		/* Slots of waiters that left are reclaimed from the head. */
		while (cs->wait_len && cs->waiting[cs->wait_head].fd < 0) {
			cs->wait_head = (cs->wait_head + 1) % MON_MAX_WAITING;
			cs->wait_len--;
		}
	}
	if (cs->wait_len == MON_MAX_WAITING) {
		refuse(fd);
		return;
	}
	w = &cs->waiting[(cs->wait_head + cs->wait_len) % MON_MAX_WAITING];
	*w = (struct mon_waiter){ .cs = cs, .fd = fd, .uid = uid };
	/* Not read until served: only its hangup is watched. */
	if (omr_loop_add_fd(cs->loop, fd, 0, on_waiter, w, NULL) < 0) {
		w->fd = -1;
		refuse(fd);
		return;
	}
	cs->wait_len++;
	cs->nwaiting++;
}

static void listen_again(void *user)
{
	struct mon_conns *cs = user;

	if (cs->listen_fd >= 0)
		omr_loop_set_events(cs->loop, cs->listen_fd, EPOLLIN);
}

/* Out of fds or memory: the pending connection stays readable, so pause
 * rather than spin. */
static void accept_pause(struct mon_conns *cs, int lfd)
{
	uint64_t now = omr_now_ms();

	if (!cs->accept_warned_ms || now - cs->accept_warned_ms >= 10000) {
		omr_log(OMR_LOG_WARN, "cannot accept a client: %s", strerror(errno));
		cs->accept_warned_ms = now;
	}
	omr_loop_set_events(cs->loop, lfd, 0);
	omr_loop_add_timer(cs->loop, ACCEPT_PAUSE_MS, listen_again, cs);
}

static void on_listen(void *user, int lfd, uint32_t events)
{
	struct mon_conns *cs = user;

	(void)events;
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct ucred cred;
		socklen_t len = sizeof(cred);
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (fd < 0 && (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)) {
			accept_pause(cs, lfd);
			break;
		}
		if (fd < 0)
			break;
		/* Identity comes from the kernel, never from the request. */
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
		    (cred.uid != 0 && cred.uid != cs->owner)) {
			close(fd);
			continue;
		}
		/* First come, first served: nobody overtakes a waiter. */
		if (cs->nwaiting || client_activate(cs, fd, cred.uid, NULL) < 0)
			enqueue(cs, fd, cred.uid);
	}
	sync_all(cs);
}

/* --- the agent --- */

static void agent_close(struct mon_conns *cs)
{
	if (cs->agent_fd < 0)
		return;
	omr_loop_remove_fd(cs->loop, cs->agent_fd);
	close(cs->agent_fd);
	cs->agent_fd = -1;
	omr_frame_reader_free(&cs->agent_rd);
}

static void agent_lost(struct mon_conns *cs)
{
	agent_close(cs);
	if (cs->ops->agent_lost)
		cs->ops->agent_lost(cs->user);
}

static void on_agent(void *user, int fd, uint32_t events)
{
	struct mon_conns *cs = user;
	uint64_t now = omr_now_ms();
	struct omr_frame_hdr h;
	const uint8_t *p;
	ssize_t n;
	int rc = 0;

	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		n = omr_frame_reader_fill(&cs->agent_rd, fd);
		if (n == 0 || (n < 0 && n != -EAGAIN)) {
			/* QEMU closes the chardev when the guest is gone. */
			agent_lost(cs);
			return;
		}
		while ((rc = omr_frame_reader_next(&cs->agent_rd, &h, &p)) == 1)
			mon_router_on_agent_frame(cs->rt, &h, p, now);
		if (rc < 0) {
			agent_lost(cs);
			return;
		}
		if (cs->ops->agent_read)
			cs->ops->agent_read(cs->user);
	}
	sync_all(cs);
}

int mon_conns_agent(struct mon_conns *cs, int fd, struct omr_err **err)
{
	omr_fd_set_nonblock(fd, 1);
	if (omr_frame_reader_init(&cs->agent_rd) < 0)
		abort();
	cs->agent_fd = fd;
	cs->agent_events = EPOLLIN;
	if (omr_loop_add_fd(cs->loop, fd, EPOLLIN, on_agent, cs, err) < 0) {
		agent_close(cs);
		return -1;
	}
	return 0;
}

int mon_conns_has_agent(const struct mon_conns *cs)
{
	return cs->agent_fd >= 0;
}

/* --- writing and interest --- */

static void set_events(struct mon_conns *cs, int fd, uint32_t *have, uint32_t want)
{
	if (*have != want && omr_loop_set_events(cs->loop, fd, want) == 0)
		*have = want;
}

/* After each event: write what the router queued, then watch each fd for
 * what it should now do.  Clients are not read while the agent is not
 * keeping up, and the agent not while clients are not keeping up in all
 * (each route is bounded on its own): memory stays bounded. */
static void sync_all(struct mon_conns *cs)
{
	uint64_t now = omr_now_ms();
	unsigned raw;
	int read_clients;

	if (cs->agent_fd >= 0 && mon_router_agent_pending(cs->rt) &&
	    mon_router_flush_agent(cs->rt, sock_write, &cs->agent_fd) < 0) {
		agent_lost(cs);
		return;
	}
	read_clients = mon_router_read_clients(cs->rt);
	for (int ci = 0; ci < MON_MAX_CLIENTS; ci++) {
		struct mon_conn *c = &cs->clients[ci];

		if (c->fd < 0)
			continue;
		if (mon_router_client_pending(cs->rt, ci) &&
		    mon_router_flush_client(cs->rt, ci, sock_write, &c->fd) < 0) {
			client_close(cs, ci, now);
			continue;
		}
		if ((raw = mon_router_raw(cs->rt, ci))) {
			if (raw & MON_RAW_SHUT) {
				shutdown(c->fd, SHUT_WR);
				mon_router_raw_shut(cs->rt, ci);
			}
			if (raw & MON_RAW_CLOSE) {
				client_close(cs, ci, now);
				continue;
			}
			set_events(cs, c->fd, &c->events,
				   (raw & MON_RAW_READ ? EPOLLIN : 0) |
				   (mon_router_client_pending(cs->rt, ci) ? EPOLLOUT : 0));
			continue;
		}
		set_events(cs, c->fd, &c->events,
			   (read_clients ? EPOLLIN : 0) |
			   (mon_router_client_pending(cs->rt, ci) ? EPOLLOUT : 0));
	}
	/* Flushing clients may have freed room toward the agent. */
	if (cs->agent_fd >= 0)
		set_events(cs, cs->agent_fd, &cs->agent_events,
			   (mon_router_read_agent(cs->rt) ? EPOLLIN : 0) |
			   (mon_router_agent_pending(cs->rt) ? EPOLLOUT : 0));
}

void mon_conns_kick(struct mon_conns *cs)
{
	sync_all(cs);
}

/* --- life --- */

void mon_conns_init(struct mon_conns *cs, struct omr_loop *l, struct mon_router *rt,
		    uid_t owner, const struct mon_conns_ops *ops, void *user)
{
	memset(cs, 0, sizeof(*cs));
	cs->loop = l;
	cs->rt = rt;
	cs->owner = owner;
	cs->ops = ops;
	cs->user = user;
	cs->listen_fd = -1;
	cs->agent_fd = -1;
	for (int ci = 0; ci < MON_MAX_CLIENTS; ci++)
		cs->clients[ci].fd = -1;
	for (int i = 0; i < MON_MAX_WAITING; i++)
		cs->waiting[i].fd = -1;
}

int mon_conns_serve(struct mon_conns *cs, int listen_fd, struct omr_err **err)
{
	if (omr_loop_add_fd(cs->loop, listen_fd, EPOLLIN, on_listen, cs, err) < 0)
		return -1;
	cs->listen_fd = listen_fd;
	return 0;
}

/* Writes what client ci has queued, blocking until deadline at most. */
static void flush_client(struct mon_conns *cs, int ci, uint64_t deadline)
{
	struct mon_conn *c;

	if (ci < 0 || cs->clients[ci].fd < 0)
		return;
	c = &cs->clients[ci];
	while (mon_router_flush_client(cs->rt, ci, sock_write, &c->fd) == 0 &&
	       mon_router_client_pending(cs->rt, ci)) {
		struct pollfd p = { .fd = c->fd, .events = POLLOUT };
		uint64_t now = omr_now_ms();

		if (now >= deadline || (poll(&p, 1, (int)(deadline - now)) < 0 && errno != EINTR))
			break;
	}
}

void mon_conns_answer_destroy(struct mon_conns *cs, unsigned timeout_ms)
{
	flush_client(cs, mon_router_answer_destroy(cs->rt), omr_now_ms() + timeout_ms);
}

void mon_conns_flush_all(struct mon_conns *cs, unsigned timeout_ms)
{
	uint64_t deadline = omr_now_ms() + timeout_ms;

	for (int ci = 0; ci < MON_MAX_CLIENTS; ci++)
		flush_client(cs, ci, deadline);
}

void mon_conns_close_all(struct mon_conns *cs)
{
	uint64_t now = omr_now_ms();

	if (cs->listen_fd >= 0) {
		omr_loop_remove_fd(cs->loop, cs->listen_fd);
		close(cs->listen_fd);
		cs->listen_fd = -1;
	}
	/* Waiters first, so that closing clients promotes none. */
	for (int i = 0; i < MON_MAX_WAITING; i++) {
		if (cs->waiting[i].fd < 0)
			continue;
		omr_loop_remove_fd(cs->loop, cs->waiting[i].fd);
		close(cs->waiting[i].fd);
		cs->waiting[i].fd = -1;
	}
	cs->wait_len = cs->nwaiting = 0;
	for (int ci = 0; ci < MON_MAX_CLIENTS; ci++)
		client_close(cs, ci, now);
	agent_close(cs);
}
