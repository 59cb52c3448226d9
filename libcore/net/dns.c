/* The DNS responder on the gateway.  Air-gapped or with an allow-list it
 * answers only allowed names, with the gateway's own address (so every
 * connection meets the proxy) and REFUSED for the rest: nothing is ever
 * asked upstream, so DNS carries nothing out.  AAAA and other types of an
 * allowed name get an empty answer (no HTTPS records: no ECH keys).  With
 * internet on, queries are relayed to the host's nameserver, bounded. */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <unistd.h>

#include "net-internal.h"

#define ANSWER_TTL 5   /* short: a policy change shows quickly */
#define RELAY_TIMEOUT_MS 5000

struct relay {
	struct net_dns *d;
	int fd;
	uint16_t orig_id, new_id;
	struct sockaddr_in client;
	uint64_t timer;
	struct relay *prev, *next;
};

struct net_dns {
	struct omr_net *n;
	struct relay *head;
	size_t count;
};

static void relay_free(struct relay *r)
{
	struct net_dns *d = r->d;

	if (r->prev)
		r->prev->next = r->next;
	else
		d->head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	d->count--;
	omr_loop_remove_fd(d->n->loop, r->fd);
	close(r->fd);
	if (r->timer)
		omr_loop_cancel_timer(d->n->loop, r->timer);
	free(r);
}

static void on_relay_timeout(void *user)
{
	struct relay *r = user;

	r->timer = 0;
	relay_free(r);
}

static void on_relay_answer(void *user, int fd, uint32_t events)
{
	struct relay *r = user;
	struct omr_net *n = r->d->n;
	uint8_t buf[NET_DNS_MAX];
	ssize_t len = recv(fd, buf, sizeof(buf), 0);

	(void)events;
	if (len < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (len >= 12 && ((unsigned)buf[0] << 8 | buf[1]) == r->new_id) {
		buf[0] = (uint8_t)(r->orig_id >> 8);
		buf[1] = (uint8_t)r->orig_id;
		sendto(n->dns_fd, buf, (size_t)len, 0, (struct sockaddr *)&r->client,
		       sizeof(r->client));
	}
	relay_free(r);
}

static void relay(struct net_dns *d, const uint8_t *p, size_t len, const struct sockaddr_in *from)
{
	struct omr_net *n = d->n;
	struct sockaddr_storage ss;
	socklen_t sl;
	struct relay *r;
	uint8_t copy[NET_DNS_MAX];

	if (d->count >= NET_RELAY_MAX || len > sizeof(copy) ||
	    net_resolver_server(n->res, &ss, &sl) < 0)
		return; /* the guest's resolver retries */
	r = omr_xcalloc(1, sizeof(*r));
	r->d = d;
	r->orig_id = (uint16_t)((unsigned)p[0] << 8 | p[1]);
	if (getrandom(&r->new_id, sizeof(r->new_id), 0) != (ssize_t)sizeof(r->new_id))
		r->new_id = (uint16_t)omr_now_ms();
	r->client = *from;
	/* Made in the host's namespace (the monitor's own): the query
	 * leaves from the host, like any of its lookups. */
	r->fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (r->fd < 0 || connect(r->fd, (struct sockaddr *)&ss, sl) < 0 ||
	    omr_loop_add_fd(n->loop, r->fd, EPOLLIN, on_relay_answer, r, NULL) < 0) {
		if (r->fd >= 0)
			close(r->fd);
		free(r);
		return;
	}
	r->next = d->head;
	if (d->head)
		d->head->prev = r;
	d->head = r;
	d->count++;
	memcpy(copy, p, len);
	copy[0] = (uint8_t)(r->new_id >> 8);
	copy[1] = (uint8_t)r->new_id;
	(void)!send(r->fd, copy, len, 0);
	r->timer = omr_loop_add_timer(n->loop, RELAY_TIMEOUT_MS, on_relay_timeout, r);
	n->dns_relayed++;
}

static void answer(struct omr_net *n, const uint8_t *p, size_t len, const struct sockaddr_in *from)
{
	struct net_dns_q q;
	uint8_t out[NET_DNS_MAX];
	size_t olen;
	int rcode = NET_DNS_RCODE_REFUSED;
	const uint8_t *a4 = NULL;

	if (net_dns_parse_query(p, len, &q) < 0)
		return;
	if (n->internet && q.qclass == 1) {
		relay(n->dns, p, len, from);
		return;
	}
	if (q.qclass == 1 && q.name_ok && omr_allow_match(n->allow, q.name)) {
		rcode = NET_DNS_RCODE_NOERROR;
		if (q.qtype == NET_DNS_T_A)
			a4 = (const uint8_t *)&n->gw_in.s_addr;
		n->dns_answered++;
	} else {
		n->dns_refused++;
		net_refused(n, "dns", q.name_ok ? q.name : "(not a host name)",
			    q.qclass != 1 ? "not class IN" : "not on the allow-list", 53);
	}
	olen = net_dns_answer(p, &q, rcode, a4, ANSWER_TTL, out, sizeof(out));
	if (olen)
		sendto(n->dns_fd, out, olen, 0, (const struct sockaddr *)from, sizeof(*from));
}

static void on_query(void *user, int fd, uint32_t events)
{
	struct omr_net *n = user;
	uint8_t buf[NET_DNS_MAX];

	(void)events;
	/* A bounded batch per wake-up: a flood cannot starve the rest. */
	for (int i = 0; i < 64; i++) {
		struct sockaddr_in from;
		socklen_t fl = sizeof(from);
		ssize_t len = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
		if (len < 0)
			return;
		if (fl == sizeof(from) && from.sin_family == AF_INET)
			answer(n, buf, (size_t)len, &from);
	}
}

int net_dns_attach(struct omr_net *n, struct omr_err **err)
{
	n->dns = omr_xcalloc(1, sizeof(*n->dns));
	n->dns->n = n;
	return omr_loop_add_fd(n->loop, n->dns_fd, EPOLLIN, on_query, n, err);
}

void net_dns_close(struct omr_net *n)
{
	if (!n->dns)
		return;
	while (n->dns->head)
		relay_free(n->dns->head);
	free(n->dns);
	n->dns = NULL;
}
