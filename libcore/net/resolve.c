/* A small asynchronous stub resolver for the proxy: A and AAAA queries to
 * the host's nameservers (/etc/resolv.conf), one connected UDP socket per
 * lookup (only the server's answers arrive on it), random ids, bounded
 * lookups in flight and a small cache that honours TTLs (at most 30 s). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <unistd.h>

#include "net-internal.h"

#define SERVERS_MAX 3
#define TRY_MS 1500
#define CACHE_MAX 64
#define CACHE_TTL_MAX_S 30

struct lookup {
	struct net_resolver *r;
	uint64_t handle, timer;
	char name[OMR_HOST_MAX];
	net_resolve_fn fn;
	void *user;
	int fd, server, tries;
	uint16_t id4, id6;
	int got4, got6, failed;
	struct net_addr addrs[NET_ADDRS_MAX];
	int n;
	uint32_t ttl;
	uint64_t deadline;
	const char *error;     /* set: deliver from the timer */
	struct lookup *prev, *next;
};

struct cache {
	char name[OMR_HOST_MAX];
	struct net_addr addrs[NET_ADDRS_MAX];
	int n;
	uint64_t expires;
};

struct net_resolver {
	struct omr_loop *l;
	struct sockaddr_storage srv[SERVERS_MAX];
	socklen_t srvlen[SERVERS_MAX];
	int nsrv;
	struct lookup *head;
	size_t count;
	uint64_t next_handle;
	struct cache cache[CACHE_MAX];
};

static void add_server(struct net_resolver *r, const char *s)
{
	struct sockaddr_in *a4 = (struct sockaddr_in *)&r->srv[r->nsrv];
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&r->srv[r->nsrv];

	if (r->nsrv == SERVERS_MAX)
		return;
	memset(&r->srv[r->nsrv], 0, sizeof(r->srv[0]));
	if (inet_pton(AF_INET, s, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons(53);
		r->srvlen[r->nsrv++] = sizeof(*a4);
	} else if (inet_pton(AF_INET6, s, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(53);
		r->srvlen[r->nsrv++] = sizeof(*a6);
	}
}

struct net_resolver *net_resolver_new(struct omr_loop *l, struct omr_err **err)
{
	struct net_resolver *r = omr_xcalloc(1, sizeof(*r));
	_cleanup_free_ char *text = NULL;

	(void)err;
	r->l = l;
	/* The host's resolver configuration, read once at start. */
	if (omr_read_file_at(AT_FDCWD, "/etc/resolv.conf", 65536, &text, NULL, NULL) == 0) {
		for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
		     line = strtok_r(NULL, "\n", &save)) {
			char addr[64];
			if (sscanf(line, " nameserver %63s", addr) == 1)
				add_server(r, addr);
		}
	}
	if (!r->nsrv)
		add_server(r, "127.0.0.1"); /* what the C library assumes too */
	return r;
}

static void lookup_unlink(struct lookup *k)
{
	struct net_resolver *r = k->r;

	if (k->prev)
		k->prev->next = k->next;
	else
		r->head = k->next;
	if (k->next)
		k->next->prev = k->prev;
	r->count--;
	if (k->fd >= 0) {
		omr_loop_remove_fd(r->l, k->fd);
		close(k->fd);
		k->fd = -1;
	}
	if (k->timer)
		omr_loop_cancel_timer(r->l, k->timer);
	k->timer = 0;
}

void net_resolver_free(struct net_resolver *r)
{
	if (!r)
		return;
	while (r->head) {
		struct lookup *k = r->head;
		lookup_unlink(k);
		free(k);
	}
	free(r);
}

int net_resolver_server(const struct net_resolver *r, struct sockaddr_storage *ss, socklen_t *len)
{
	if (!r->nsrv)
		return -1;
	*ss = r->srv[0];
	*len = r->srvlen[0];
	return 0;
}

static void cache_put(struct net_resolver *r, const struct lookup *k)
{
	uint64_t now = omr_now_ms();
	struct cache *slot = &r->cache[0];
	uint32_t ttl = k->ttl < CACHE_TTL_MAX_S ? k->ttl : CACHE_TTL_MAX_S;

	if (k->n == 0 || ttl == 0)
		return;
	for (int i = 0; i < CACHE_MAX; i++) {
		if (!strcmp(r->cache[i].name, k->name) || r->cache[i].expires < slot->expires) {
			slot = &r->cache[i];
			if (!strcmp(r->cache[i].name, k->name))
				break;
		}
	}
	memcpy(slot->name, k->name, sizeof(slot->name));
	memcpy(slot->addrs, k->addrs, sizeof(slot->addrs));
	slot->n = k->n;
	slot->expires = now + (uint64_t)ttl * 1000;
}

static const struct cache *cache_get(struct net_resolver *r, const char *name)
{
	uint64_t now = omr_now_ms();

	for (int i = 0; i < CACHE_MAX; i++)
		if (r->cache[i].expires > now && !strcmp(r->cache[i].name, name))
			return &r->cache[i];
	return NULL;
}

/* Hands the result over; k is freed. */
static void deliver(struct lookup *k)
{
	net_resolve_fn fn = k->fn;
	void *user = k->user;
	struct net_addr addrs[NET_ADDRS_MAX];
	int n = k->n;
	const char *error = k->error;

	if (!error && k->failed == 2)
		error = "lookup failed";
	if (!error)
		cache_put(k->r, k);
	memcpy(addrs, k->addrs, sizeof(addrs));
	lookup_unlink(k);
	free(k);
	fn(user, addrs, n, error);
}

static void on_deliver_timer(void *user)
{
	struct lookup *k = user;

	k->timer = 0;
	deliver(k);
}

static void fail_later(struct lookup *k, const char *error)
{
	if (k->fd >= 0) {
		omr_loop_remove_fd(k->r->l, k->fd);
		close(k->fd);
		k->fd = -1;
	}
	k->error = error;
	if (k->timer)
		omr_loop_cancel_timer(k->r->l, k->timer);
	k->timer = omr_loop_add_timer(k->r->l, 0, on_deliver_timer, k);
}

static uint16_t rand16(void)
{
	uint16_t v = 0;

	if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
		v = (uint16_t)omr_now_ms();
	return v;
}

static void on_readable(void *user, int fd, uint32_t events);
static void on_try_timeout(void *user);

/* Sends both questions to the current server over a fresh socket. */
static void try_server(struct lookup *k)
{
	struct net_resolver *r = k->r;
	uint8_t q[NET_DNS_MAX];
	const struct sockaddr_storage *s = &r->srv[k->server % r->nsrv];
	size_t len;

	if (k->fd >= 0) {
		omr_loop_remove_fd(r->l, k->fd);
		close(k->fd);
	}
	k->fd = socket(s->ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (k->fd < 0 || connect(k->fd, (const struct sockaddr *)s, r->srvlen[k->server % r->nsrv]) < 0 ||
	    omr_loop_add_fd(r->l, k->fd, EPOLLIN, on_readable, k, NULL) < 0) {
		if (k->fd >= 0)
			close(k->fd);
		k->fd = -1;
		fail_later(k, "cannot reach the host's nameserver");
		return;
	}
	k->id4 = rand16();
	do
		k->id6 = rand16();
	while (k->id6 == k->id4);
	if (!k->got4 && (len = net_dns_build_query(k->id4, k->name, NET_DNS_T_A, q, sizeof(q))))
		(void)!send(k->fd, q, len, 0);
	if (!k->got6 && (len = net_dns_build_query(k->id6, k->name, NET_DNS_T_AAAA, q, sizeof(q))))
		(void)!send(k->fd, q, len, 0);
	k->timer = omr_loop_add_timer(r->l, TRY_MS, on_try_timeout, k);
}

static void on_try_timeout(void *user)
{
	struct lookup *k = user;

	k->timer = 0;
	if (omr_now_ms() >= k->deadline) {
		fail_later(k, "the host's nameserver did not answer");
		return;
	}
	k->server++;
	try_server(k);
}

static void on_readable(void *user, int fd, uint32_t events)
{
	struct lookup *k = user;
	uint8_t buf[4096];
	ssize_t len;

	(void)events;
	while ((len = recv(fd, buf, sizeof(buf), 0)) > 0) {
		int *got = NULL, cnt;
		uint16_t id = (uint16_t)((unsigned)buf[0] << 8 | buf[1]);
		uint32_t ttl;

		if (len < 12)
			continue;
		if (id == k->id4 && !k->got4)
			got = &k->got4;
		else if (id == k->id6 && !k->got6)
			got = &k->got6;
		else
			continue;
		cnt = net_dns_parse_answer(buf, (size_t)len, id, k->addrs + k->n,
					   NET_ADDRS_MAX - k->n, &ttl);
		if (cnt == -1)
			continue;
		*got = 1;
		if (cnt == -2) {
			k->failed++;
		} else {
			k->n += cnt;
			if (cnt && ttl < k->ttl)
				k->ttl = ttl;
		}
	}
	if (len < 0 && errno != EAGAIN && errno != EINTR) {
		/* ICMP port unreachable and the like: the next server. */
		if (k->timer)
			omr_loop_cancel_timer(k->r->l, k->timer);
		k->timer = omr_loop_add_timer(k->r->l, 0, on_try_timeout, k);
		return;
	}
	if (k->got4 && k->got6) {
		omr_loop_remove_fd(k->r->l, k->fd);
		close(k->fd);
		k->fd = -1;
		if (k->timer)
			omr_loop_cancel_timer(k->r->l, k->timer);
		k->timer = omr_loop_add_timer(k->r->l, 0, on_deliver_timer, k);
	}
}

uint64_t net_resolve(struct net_resolver *r, const char *name, net_resolve_fn fn, void *user)
{
	struct lookup *k = omr_xcalloc(1, sizeof(*k));
	const struct cache *c;

	k->r = r;
	k->fd = -1;
	k->handle = ++r->next_handle;
	k->fn = fn;
	k->user = user;
	k->ttl = UINT32_MAX;
	k->deadline = omr_now_ms() + NET_RESOLVE_TIMEOUT_MS;
	omr_strlcpy(k->name, name, sizeof(k->name));
	k->next = r->head;
	if (r->head)
		r->head->prev = k;
	r->head = k;
	r->count++;
	if ((c = cache_get(r, name))) {
		memcpy(k->addrs, c->addrs, sizeof(k->addrs));
		k->n = c->n;
		k->ttl = 0; /* not cached again */
		k->timer = omr_loop_add_timer(r->l, 0, on_deliver_timer, k);
	} else if (r->count > NET_RESOLVE_MAX) {
		fail_later(k, "too many lookups in flight");
	} else {
		try_server(k);
	}
	return k->handle;
}

void net_resolve_cancel(struct net_resolver *r, uint64_t handle)
{
	for (struct lookup *k = r->head; k; k = k->next)
		if (k->handle == handle) {
			lookup_unlink(k);
			free(k);
			return;
		}
}
