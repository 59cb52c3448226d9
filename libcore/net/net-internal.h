/* Shared inside the net area. */
#ifndef OMNIRUN_NET_INTERNAL_H
#define OMNIRUN_NET_INTERNAL_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/base/ids.h"
#include "omnirun/base/util.h"
#include "omnirun/base/loop.h"
#include "omnirun/net/net.h"
#include "omnirun/state/netconf.h"

#define NET_TAP_NAME "tap0"       /* inside the namespace: the guest's link */
#define NET_VETH_NAME "up0"       /* inside the namespace: the way out */
#define NET_HOST_PREFIX "omr"     /* host end of a veth: omr + the id's tail */
#define NET_TABLE "omnirun"       /* our nft table, in the namespace and on the host */
#define NET_MTU 1500
#define NET_PROXY_PORT_HTTP 80
#define NET_PROXY_PORT_TLS 443

/* Bounds (the monitor's memory stays bounded whatever the guest does). */
#define NET_CONN_MAX 256          /* proxied connections at once */
#define NET_HEAD_MAX (32u << 10)  /* ClientHello or HTTP head we buffer */
#define NET_PIPE_SIZE (128u << 10) /* per direction and connection, spliced */
#define NET_COPY_BUF (64u << 10)   /* the same when no pipe can be had */
#define NET_HEAD_TIMEOUT_MS 5000  /* for the ClientHello / request head */
#define NET_CONNECT_TIMEOUT_MS 10000
#define NET_RESOLVE_TIMEOUT_MS 5000
#define NET_RESOLVE_MAX 128       /* lookups in flight */
#define NET_RELAY_MAX 64          /* relayed guest DNS queries in flight */
#define NET_NAMES_MAX 128         /* names kept in the stats */
#define NET_ADDRS_MAX 8           /* addresses tried per name */
#define NET_EVENTS_PER_S 20       /* refusal events logged per second */

/* ---- addresses (addr.c) ---- */
struct net_addr {
	int family;                  /* AF_INET or AF_INET6 */
	uint8_t a[16];
};
/* Why an address may not be dialled ("loopback", "private", "cgnat",
 * "link-local", "metadata", "multicast", "reserved", "host", "pool"), or
 * NULL when it may.  exceptions from the config lift the ranges (never
 * loopback or the host's own addresses). */
const char *net_addr_forbidden(const struct net_addr *a, const struct omr_cidr *exc, int nexc,
			       const struct omr_cidr *pool);
/* 1 if a is one of this host's addresses (any interface, in the calling
 * thread's namespace). */
int net_addr_is_host(const struct net_addr *a);
void net_addr_str(const struct net_addr *a, char *buf, size_t n);

/* ---- parsers (parse.c): pure functions over bytes ---- */
enum net_parse {
	NET_P_MORE = 0,     /* need more bytes */
	NET_P_OK = 1,       /* name found */
	NET_P_REFUSE = -1,  /* well-formed but refused: reason says why */
	NET_P_BAD = -2,     /* malformed */
};
/* A TLS ClientHello, possibly split over many records and segments: the
 * SNI host name into name.  Refused: no SNI, more than one name, an
 * Encrypted Client Hello extension, an IP literal, a bad name. */
enum net_parse net_parse_client_hello(const uint8_t *p, size_t n, size_t max,
				      char name[OMR_HOST_MAX], const char **reason);
/* An HTTP/1.x request head: the Host header (port dropped) into name.
 * Refused: CONNECT, no or several Host headers, a Host that disagrees
 * with an absolute URI, an IP literal, a bad name. */
enum net_parse net_parse_http_head(const uint8_t *p, size_t n, size_t max,
				   char name[OMR_HOST_MAX], const char **reason);

/* ---- DNS messages (dnsmsg.c) ---- */
#define NET_DNS_MAX 1232            /* what we read or answer over UDP */
#define NET_DNS_T_A 1
#define NET_DNS_T_AAAA 28
#define NET_DNS_RCODE_NOERROR 0
#define NET_DNS_RCODE_FORMERR 1
#define NET_DNS_RCODE_SERVFAIL 2
#define NET_DNS_RCODE_NXDOMAIN 3
#define NET_DNS_RCODE_REFUSED 5
struct net_dns_q {
	uint16_t id, flags, qtype, qclass;
	char name[OMR_HOST_MAX];    /* lower-case, no trailing dot */
	int name_ok;                /* a valid host name */
	size_t qend;                /* offset just past the question */
};
/* Parses a query (QR 0, one question).  Returns 0 or -1. */
int net_dns_parse_query(const uint8_t *p, size_t n, struct net_dns_q *q);
/* Builds the answer to q (whose bytes are p): rcode, and when a4 is not
 * NULL one A record with it.  Returns the length written into out. */
size_t net_dns_answer(const uint8_t *p, const struct net_dns_q *q, int rcode,
		      const uint8_t *a4, uint32_t ttl, uint8_t *out, size_t outmax);
/* Builds a recursive query for name and type.  Returns its length or 0. */
size_t net_dns_build_query(uint16_t id, const char *name, uint16_t qtype, uint8_t *out,
			   size_t outmax);
/* Reads the A/AAAA records of a response with id into addrs (at most max).
 * Returns the count (>= 0), or -1 for a malformed message or another id,
 * -2 for an error rcode.  *ttl gets the smallest TTL seen. */
int net_dns_parse_answer(const uint8_t *p, size_t n, uint16_t id, struct net_addr *addrs,
			 int max, uint32_t *ttl);

/* ---- the host's resolver (resolve.c) ---- */
struct net_resolver;
typedef void (*net_resolve_fn)(void *user, const struct net_addr *addrs, int n,
			       const char *error);
struct net_resolver *net_resolver_new(struct omr_loop *l, struct omr_err **err);
void net_resolver_free(struct net_resolver *r);
/* Looks name up (A and AAAA) from the host; fn is called exactly once,
 * later (never from inside this call), unless cancelled.  Returns a
 * handle (> 0). */
uint64_t net_resolve(struct net_resolver *r, const char *name, net_resolve_fn fn, void *user);
void net_resolve_cancel(struct net_resolver *r, uint64_t handle);
/* The first nameserver of the host, for relayed queries. */
int net_resolver_server(const struct net_resolver *r, struct sockaddr_storage *ss,
			socklen_t *len);

/* ---- the per-sandbox object (net.c) ---- */
struct net_name_stat {
	char name[OMR_HOST_MAX];
	uint64_t allowed, refused, bytes_in, bytes_out;
	char last_refusal[64];
};

struct net_proxy;
struct net_dns;

struct omr_net {
	const struct omr_config *c;
	char id[OMR_ID_MAX];
	char host_if[16];            /* host end of the veth */
	char guest[OMR_ADDR4_MAX], gw[OMR_ADDR4_MAX];
	struct in_addr guest_in, gw_in;
	char mac[18];
	int host_ns, sb_ns;          /* namespace fds */
	int tap_fd;
	int veth;                    /* the veth exists */
	struct nl_sock *nl_sb, *nl_host;
	int internet;
	char allow[OMR_ALLOW_MAX];
	struct omr_loop *loop;
	struct net_resolver *res;
	struct net_proxy *proxy;
	struct net_dns *dns;
	int dns_fd, http_fd, tls_fd; /* bound in the namespace */
	omr_net_event_fn event;
	void *user;
	/* stats */
	uint64_t bytes_in, bytes_out, conn_allowed, conn_refused;
	uint64_t dns_answered, dns_refused, dns_relayed;
	uint64_t fwd_base_out, fwd_base_in;  /* counters of replaced tables */
	struct net_name_stat names[NET_NAMES_MAX];
	size_t nnames;
	uint64_t ev_window_ms, ev_in_window, ev_suppressed;
};

/* The stats row of name ("(other)" once the table is full). */
struct net_name_stat *net_stat_name(struct omr_net *n, const char *name);
/* Counts a refusal and logs it as an event (rate-limited). */
void net_refused(struct omr_net *n, const char *what, const char *name, const char *reason,
		 int port);
void net_event(struct omr_net *n, json_t *ev); /* steals ev */

/* ---- namespaces (ns.c) ---- */
/* Enter the sandbox's namespace / come back.  Leaving aborts the process
 * if it fails: a monitor left in the sandbox's namespace would dial from
 * there. */
int net_ns_enter(struct omr_net *n, struct omr_err **err);
void net_ns_leave(struct omr_net *n);
/* Writes val to /proc/sys/net/... of the calling thread's namespace. */
int net_sysctl(const char *path, const char *val, struct omr_err **err);
int net_sysctl_read(const char *path, char *buf, size_t n);

/* ---- links, addresses, routes (link.c, libnl-route-3) ---- */
int net_links_open(struct omr_net *n, struct omr_err **err);
int net_tap_create(struct omr_net *n, struct omr_err **err);
int net_veth_create(struct omr_net *n, struct omr_err **err);
void net_veth_delete(struct omr_net *n);
int net_uplink_check(struct omr_net *n, struct omr_err **err);
void net_links_close(struct omr_net *n);

/* ---- rules (rules.c, libnftables) ---- */
/* The namespace's table for the current policy, in one transaction. */
int net_rules_apply(struct omr_net *n, int internet, const char *allow, struct omr_err **err);
/* The host's one table (NAT out of the uplink), idempotent. */
int net_host_rules_apply(struct omr_net *n, struct omr_err **err);
/* Bytes forwarded out and in (the forward chain's counters). */
void net_rules_counters(struct omr_net *n, uint64_t *out, uint64_t *in);

/* ---- DNS responder (dns.c) and proxy (proxy.c) ---- */
int net_dns_attach(struct omr_net *n, struct omr_err **err);
void net_dns_close(struct omr_net *n);
int net_proxy_attach(struct omr_net *n, struct omr_err **err);
/* Closes the connections the current allow-list refuses. */
void net_proxy_recheck(struct omr_net *n);
size_t net_proxy_count(const struct omr_net *n);
void net_proxy_close(struct omr_net *n);

#endif
