/* The egress proxy: every TCP 80/443 connection of the guest lands here
 * (nft redirects it to the gateway).  It reads the ClientHello's SNI (443)
 * or the request's Host (80), checks the name against the allow-list,
 * resolves it from the host, refuses forbidden addresses, dials out from
 * the host's namespace and splices with bounded buffers.  Bounded: at
 * most NET_CONN_MAX connections, each with a head timeout. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net-internal.h"

enum cstate { C_HEAD, C_RESOLVE, C_CONNECT, C_SPLICE };

#define PUMP_ROUNDS 4
#define ACCEPT_PAUSE_MS 100

/* One direction's bytes in flight: in a pipe (spliced, never copied
 * through the monitor) or, when no pipe could be had, in a buffer. */
struct pbuf {
	uint8_t *b;
	size_t off, len, cap;
	int eof, shut;
	int pr, pw;             /* the pipe's ends, or -1 */
};

struct conn {
	struct net_proxy *px;
	int gfd, ufd, port;
	int greg, ureg;         /* gfd, ufd are in the loop */
	uint32_t gev, uev;      /* what the loop watches them for */
	enum cstate st;
	struct pbuf g2u, u2g;   /* guest -> upstream, upstream -> guest */
	char name[OMR_HOST_MAX];
	struct net_name_stat *stat;
	struct net_addr addrs[NET_ADDRS_MAX];
	int naddrs, ai, last_errno;
	uint64_t timer, lookup;
	struct conn *prev, *next;
};

struct net_proxy {
	struct omr_net *n;
	struct conn *head;
	size_t count;
	uint64_t paused;        /* timer that resumes accepting, or 0 */
};

static void pipe_close(struct pbuf *b)
{
	if (b->pr >= 0) {
		close(b->pr);
		close(b->pw);
	}
	b->pr = b->pw = -1;
}

static void conn_free(struct conn *c)
{
	struct net_proxy *px = c->px;
	struct omr_net *n = px->n;

	if (c->prev)
		c->prev->next = c->next;
	else
		px->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	px->count--;
	if (c->greg)
		omr_loop_remove_fd(n->loop, c->gfd);
	if (c->ureg)
		omr_loop_remove_fd(n->loop, c->ufd);
	if (c->gfd >= 0)
		close(c->gfd);
	if (c->ufd >= 0)
		close(c->ufd);
	if (c->timer)
		omr_loop_cancel_timer(n->loop, c->timer);
	if (c->lookup)
		net_resolve_cancel(n->res, c->lookup);
	free(c->g2u.b);
	free(c->u2g.b);
	pipe_close(&c->g2u);
	pipe_close(&c->u2g);
	free(c);
}

static void on_io(void *user, int fd, uint32_t events);

/* Sets what the loop watches fd for; with nothing to wait for, fd leaves
 * the loop: a hung-up socket (HUP cannot be masked) never spins it. */
static void watch(struct conn *c, int fd, int *reg, uint32_t events)
{
	struct omr_loop *l = c->px->n->loop;
	uint32_t *have = fd == c->gfd ? &c->gev : &c->uev;

	if (!events) {
		if (*reg)
			omr_loop_remove_fd(l, fd);
		*reg = 0;
	} else if (*reg) {
		/* Unchanged is the common case while splicing: no syscall. */
		if (*have != events && omr_loop_set_events(l, fd, events) == 0)
			*have = events;
		return;
	} else if (omr_loop_add_fd(l, fd, events, on_io, c, NULL) == 0) {
		*reg = 1;
	}
	*have = events;
}

/* Refused: counted, logged, and the guest's connection reset. */
static void refuse(struct conn *c, const char *reason)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	net_refused(c->px->n, "proxy", c->name[0] ? c->name : "(unknown)", reason, c->port);
	if (c->gfd >= 0)
		setsockopt(c->gfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	conn_free(c);
}

static void set_timer(struct conn *c, uint64_t ms, omr_loop_timer_fn fn)
{
	struct omr_loop *l = c->px->n->loop;

	if (c->timer)
		omr_loop_cancel_timer(l, c->timer);
	c->timer = ms ? omr_loop_add_timer(l, ms, fn, c) : 0;
}

static void on_head_timeout(void *user)
{
	struct conn *c = user;

	c->timer = 0;
	refuse(c, c->st == C_HEAD ? "no ClientHello or request in time" : "upstream did not answer in time");
}

/* ---- splicing ---- */

/* Reads what fd has into b (compacting first).  Returns 0, or -1 when
 * the connection is broken. */
static int fill(struct pbuf *b, int fd)
{
	ssize_t r;

	if (b->eof || b->len == b->cap)
		return 0;
	if (b->pr >= 0) {
		r = splice(fd, NULL, b->pw, NULL, b->cap - b->len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (r > 0)
			b->len += (size_t)r;
		else if (r == 0)
			b->eof = 1;
		else if (errno != EAGAIN && errno != EINTR)
			return -1;
		return 0;
	}
	if (b->off && b->off + b->len == b->cap) {
		memmove(b->b, b->b + b->off, b->len);
		b->off = 0;
	}
	r = recv(fd, b->b + b->off + b->len, b->cap - b->off - b->len, 0);
	if (r > 0)
		b->len += (size_t)r;
	else if (r == 0)
		b->eof = 1;
	else if (errno != EAGAIN && errno != EINTR)
		return -1;
	return 0;
}

/* Writes what b holds to fd; counts the bytes in *ctr.  Returns 0 or -1. */
static int drain(struct pbuf *b, int fd, uint64_t *ctr, uint64_t *ctr2)
{
	ssize_t w;

	if (b->len) {
		if (b->pr >= 0)
			w = splice(b->pr, NULL, fd, NULL, b->len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		else
			w = send(fd, b->b + b->off, b->len, MSG_NOSIGNAL);
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			return -1;
		if (w > 0) {
			b->off += b->pr >= 0 ? 0 : (size_t)w;
			b->len -= (size_t)w;
			*ctr += (uint64_t)w;
			*ctr2 += (uint64_t)w;
			if (!b->len)
				b->off = 0;
		}
	}
	if (b->eof && !b->len && !b->shut) {
		shutdown(fd, SHUT_WR);
		b->shut = 1;
	}
	return 0;
}

/* Moves what both sides have, a few rounds while bytes move (fewer
 * wake-ups for a fast stream; bounded, so one connection cannot hold the
 * loop). */
static void pump(struct conn *c)
{
	struct omr_net *n = c->px->n;

	for (int round = 0; round < PUMP_ROUNDS; round++) {
		uint64_t before = n->bytes_in + n->bytes_out;
		if (fill(&c->g2u, c->gfd) < 0 || fill(&c->u2g, c->ufd) < 0 ||
		    drain(&c->g2u, c->ufd, &n->bytes_out, &c->stat->bytes_out) < 0 ||
		    drain(&c->u2g, c->gfd, &n->bytes_in, &c->stat->bytes_in) < 0 ||
		    (c->g2u.shut && c->u2g.shut)) {
			conn_free(c);
			return;
		}
		if (n->bytes_in + n->bytes_out == before)
			break;
	}
	watch(c, c->gfd, &c->greg,
	      (!c->g2u.eof && c->g2u.len < c->g2u.cap ? EPOLLIN : 0) | (c->u2g.len ? EPOLLOUT : 0));
	watch(c, c->ufd, &c->ureg,
	      (!c->u2g.eof && c->u2g.len < c->u2g.cap ? EPOLLIN : 0) | (c->g2u.len ? EPOLLOUT : 0));
}

/* A pipe for one direction (O_CLOEXEC, non-blocking).  Returns 0 or -1. */
static int pipe_open(struct pbuf *b)
{
	int p[2];
	int sz;

	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
		return -1;
	fcntl(p[1], F_SETPIPE_SZ, (int)NET_PIPE_SIZE);
	sz = fcntl(p[1], F_GETPIPE_SZ);
	b->pr = p[0];
	b->pw = p[1];
	b->cap = sz > 0 ? (size_t)sz : 4096;
	return 0;
}

static void start_splice(struct conn *c)
{
	set_timer(c, 0, NULL);
	c->st = C_SPLICE;
	/* Pipes, so that the bytes never cross into the monitor (splice(2));
	 * the head already read is the first thing upstream gets.  Short of
	 * fds, buffers do the same by copying. */
	if (pipe_open(&c->g2u) == 0 && pipe_open(&c->u2g) == 0 &&
	    write(c->g2u.pw, c->g2u.b + c->g2u.off, c->g2u.len) == (ssize_t)c->g2u.len) {
		free(c->g2u.b);
		c->g2u.b = NULL;
		c->g2u.off = 0;
	} else {
		pipe_close(&c->g2u);
		pipe_close(&c->u2g);
		c->g2u.b = omr_xrealloc(c->g2u.b, NET_COPY_BUF);
		c->g2u.cap = NET_COPY_BUF;
		c->u2g.b = omr_xmalloc(NET_COPY_BUF);
		c->u2g.cap = NET_COPY_BUF;
	}
	pump(c);
}

static void connect_next(struct conn *c)
{
	while (c->ai < c->naddrs) {
		const struct net_addr *a = &c->addrs[c->ai++];
		struct sockaddr_storage ss = { 0 };
		socklen_t sl;

		if (a->family == AF_INET) {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
			s4->sin_family = AF_INET;
			s4->sin_port = htons((uint16_t)c->port);
			memcpy(&s4->sin_addr, a->a, 4);
			sl = sizeof(*s4);
		} else {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
			s6->sin6_family = AF_INET6;
			s6->sin6_port = htons((uint16_t)c->port);
			memcpy(&s6->sin6_addr, a->a, 16);
			sl = sizeof(*s6);
		}
		watch(c, c->ufd, &c->ureg, 0);
		if (c->ufd >= 0)
			close(c->ufd);
		/* The monitor's own namespace: the host's. */
		c->ufd = socket(a->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (c->ufd < 0) {
			c->last_errno = errno;
			continue;
		}
		if (connect(c->ufd, (struct sockaddr *)&ss, sl) < 0 && errno != EINPROGRESS) {
			c->last_errno = errno;
			close(c->ufd);
			c->ufd = -1;
			continue;
		}
		watch(c, c->ufd, &c->ureg, EPOLLOUT);
		if (!c->ureg) {
			close(c->ufd);
			c->ufd = -1;
			continue;
		}
		c->st = C_CONNECT;
		set_timer(c, NET_CONNECT_TIMEOUT_MS, on_head_timeout);
		return;
	}
	refuse(c, c->last_errno == ECONNREFUSED ? "upstream refused the connection"
						: "cannot connect upstream");
}

static void on_resolved(void *user, const struct net_addr *addrs, int cnt, const char *error)
{
	struct conn *c = user;
	struct omr_net *n = c->px->n;
	const char *why = NULL;
	char a[64], reason[128];

	c->lookup = 0;
	if (error) {
		refuse(c, error);
		return;
	}
	/* Only the addresses that may be dialled are kept; if none is left
	 * the name is refused, with the first reason. */
	for (int i = 0; i < cnt; i++) {
		const char *w = net_addr_forbidden(&addrs[i], n->c->net_exceptions,
						   n->c->net_nexceptions, &n->c->net_pool);
		if (!w) {
			if (c->naddrs < NET_ADDRS_MAX)
				c->addrs[c->naddrs++] = addrs[i];
		} else if (!why) {
			why = w;
			net_addr_str(&addrs[i], a, sizeof(a));
		}
	}
	if (!c->naddrs) {
		if (why)
			snprintf(reason, sizeof(reason), "resolves to a %s address (%s)", why, a);
		refuse(c, why ? reason : "does not resolve");
		return;
	}
	n->conn_allowed++;
	c->stat->allowed++;
	connect_next(c);
}

static void on_head(struct conn *c)
{
	struct omr_net *n = c->px->n;
	const char *reason = NULL;
	enum net_parse p;

	if (fill(&c->g2u, c->gfd) < 0 || (c->g2u.eof && c->g2u.len == 0)) {
		conn_free(c); /* gone before saying anything */
		return;
	}
	p = c->port == NET_PROXY_PORT_TLS
		? net_parse_client_hello(c->g2u.b, c->g2u.len, NET_HEAD_MAX, c->name, &reason)
		: net_parse_http_head(c->g2u.b, c->g2u.len, NET_HEAD_MAX, c->name, &reason);
	if (p == NET_P_MORE) {
		if (c->g2u.eof)
			refuse(c, "closed before the ClientHello or request ended");
		return;
	}
	if (p != NET_P_OK) {
		c->name[0] = 0;
		refuse(c, reason);
		return;
	}
	c->stat = net_stat_name(n, c->name);
	if (!omr_allow_match(n->allow, c->name) || n->internet) {
		refuse(c, n->internet ? "the proxy is off while internet is on" : "not on the allow-list");
		return;
	}
	/* Nothing more is read from the guest until upstream answers. */
	watch(c, c->gfd, &c->greg, 0);
	c->st = C_RESOLVE;
	c->lookup = net_resolve(n->res, c->name, on_resolved, c);
}

static void on_io(void *user, int fd, uint32_t events)
{
	struct conn *c = user;

	(void)events;
	switch (c->st) {
	case C_HEAD:
		on_head(c);
		return;
	case C_RESOLVE:
		return;
	case C_CONNECT: {
		int e = 0;
		socklen_t el = sizeof(e);
		if (fd != c->ufd)
			return;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
			e = errno;
		if (e) {
			c->last_errno = e;
			connect_next(c);
			return;
		}
		start_splice(c);
		return;
	}
	case C_SPLICE:
		pump(c);
		return;
	}
}

/* At the bound, the oldest connection that has not said anything yet
 * makes room: a burst of idle connections cannot lock out the guest's
 * real ones.  Returns 1 if one was closed. */
static int evict_idle(struct net_proxy *px)
{
	struct conn *c, *oldest = NULL;

	for (c = px->head; c; c = c->next) /* newest first */
		if (c->st == C_HEAD && c->g2u.len == 0)
			oldest = c;
	if (!oldest)
		return 0;
	refuse(oldest, "too many connections: the oldest idle one is closed");
	return 1;
}

static void accept_again(void *user)
{
	struct net_proxy *px = user;

	px->paused = 0;
	omr_loop_set_events(px->n->loop, px->n->http_fd, EPOLLIN);
	omr_loop_set_events(px->n->loop, px->n->tls_fd, EPOLLIN);
}

static void on_accept(void *user, int lfd, uint32_t events)
{
	struct net_proxy *px = user;
	struct omr_net *n = px->n;
	int port = lfd == n->tls_fd ? NET_PROXY_PORT_TLS : NET_PROXY_PORT_HTTP;

	(void)events;
	for (int i = 0; i < 64; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct conn *c;

		if (fd < 0) {
			/* Out of fds the listener stays readable: pause it
			 * rather than spin. */
			if ((errno == EMFILE || errno == ENFILE) && !px->paused) {
				omr_loop_set_events(n->loop, n->http_fd, 0);
				omr_loop_set_events(n->loop, n->tls_fd, 0);
				px->paused = omr_loop_add_timer(n->loop, ACCEPT_PAUSE_MS, accept_again, px);
			}
			return;
		}
		if (px->count >= NET_CONN_MAX && !evict_idle(px)) {
			/* Bounded: the newest is refused, the rest go on. */
			struct linger lg = { .l_onoff = 1, .l_linger = 0 };
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			close(fd);
			net_refused(n, "proxy", "(unknown)", "too many connections", port);
			continue;
		}
		c = omr_xcalloc(1, sizeof(*c));
		c->px = px;
		c->gfd = fd;
		c->ufd = -1;
		c->port = port;
		c->g2u.cap = NET_HEAD_MAX;
		c->g2u.b = omr_xmalloc(NET_HEAD_MAX);
		c->g2u.pr = c->g2u.pw = c->u2g.pr = c->u2g.pw = -1;
		c->next = px->head;
		if (px->head)
			px->head->prev = c;
		px->head = c;
		px->count++;
		watch(c, fd, &c->greg, EPOLLIN);
		if (!c->greg) {
			conn_free(c);
			continue;
		}
		set_timer(c, NET_HEAD_TIMEOUT_MS, on_head_timeout);
	}
}

int net_proxy_attach(struct omr_net *n, struct omr_err **err)
{
	n->proxy = omr_xcalloc(1, sizeof(*n->proxy));
	n->proxy->n = n;
	if (omr_loop_add_fd(n->loop, n->http_fd, EPOLLIN, on_accept, n->proxy, err) < 0 ||
	    omr_loop_add_fd(n->loop, n->tls_fd, EPOLLIN, on_accept, n->proxy, err) < 0)
		return -1;
	return 0;
}

void net_proxy_recheck(struct omr_net *n)
{
	struct conn *c, *next;

	if (!n->proxy)
		return;
	for (c = n->proxy->head; c; c = next) {
		next = c->next;
		if (c->st == C_HEAD)
			continue; /* checked when its name is known */
		/* Internet on allows more, never less: those stay. */
		if (!n->internet && !omr_allow_match(n->allow, c->name))
			refuse(c, "the policy changed");
	}
}

size_t net_proxy_count(const struct omr_net *n)
{
	return n->proxy ? n->proxy->count : 0;
}

void net_proxy_close(struct omr_net *n)
{
	if (!n->proxy)
		return;
	while (n->proxy->head)
		conn_free(n->proxy->head);
	if (n->proxy->paused)
		omr_loop_cancel_timer(n->loop, n->proxy->paused);
	free(n->proxy);
	n->proxy = NULL;
}
