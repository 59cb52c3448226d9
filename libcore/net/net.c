/* One sandbox's network: its namespace, policy, stats and events; see
 * omnirun/net/net.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "omnirun/base/log.h"
#include "net-internal.h"

#define LISTEN_BACKLOG 128

struct net_name_stat *net_stat_name(struct omr_net *n, const char *name)
{
	for (size_t i = 0; i < n->nnames; i++)
		if (!strcmp(n->names[i].name, name))
			return &n->names[i];
	if (n->nnames < NET_NAMES_MAX - 1) {
		struct net_name_stat *s = &n->names[n->nnames++];
		memset(s, 0, sizeof(*s));
		omr_strlcpy(s->name, name, sizeof(s->name));
		return s;
	}
	/* Bounded: past the table, names share one row. */
	if (n->nnames == NET_NAMES_MAX - 1) {
		memset(&n->names[n->nnames], 0, sizeof(n->names[0]));
		omr_strlcpy(n->names[n->nnames++].name, "(other)", OMR_HOST_MAX);
	}
	return &n->names[NET_NAMES_MAX - 1];
}

void net_event(struct omr_net *n, json_t *ev)
{
	if (n->event)
		n->event(n->user, ev);
	json_decref(ev);
}

void net_refused(struct omr_net *n, const char *what, const char *name, const char *reason,
		 int port)
{
	struct net_name_stat *s = net_stat_name(n, name);
	uint64_t now = omr_now_ms();

	if (strcmp(what, "dns"))
		n->conn_refused++;
	s->refused++;
	snprintf(s->last_refusal, sizeof(s->last_refusal), "%s: %s", what, reason);
	/* The event log is bounded, and so is what a guest can make us
	 * write into it: NET_EVENTS_PER_S, then a count of what was
	 * skipped. */
	if (now - n->ev_window_ms >= 1000) {
		if (n->ev_suppressed)
			net_event(n, json_pack("{s:s, s:I}", "type", "net_refusals_skipped", "count",
					       (json_int_t)n->ev_suppressed));
		n->ev_window_ms = now;
		n->ev_in_window = 0;
		n->ev_suppressed = 0;
	}
	if (n->ev_in_window++ >= NET_EVENTS_PER_S) {
		n->ev_suppressed++;
		return;
	}
	net_event(n, json_pack("{s:s, s:s, s:s, s:s, s:i}", "type", "net_refused", "via", what,
			       "name", name, "reason", reason, "port", port));
}

/* A socket bound to the gateway inside the namespace (the caller is in
 * it). */
static int bind_gw(struct omr_net *n, int type, int port, struct omr_err **err)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr = n->gw_in };
	int one = 1, fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot create a socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    (type == SOCK_STREAM && listen(fd, LISTEN_BACKLOG) < 0)) {
		int e = errno;
		close(fd);
		return omr_err_set(err, OMR_E_FAIL, e, "cannot listen on %s:%d", n->gw, port);
	}
	return fd;
}

static int make_namespace(struct omr_net *n, struct omr_err **err)
{
	n->host_ns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (n->host_ns < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot open our network namespace");
	if (unshare(CLONE_NEWNET) < 0)
		return omr_err_set(err, errno == EPERM ? OMR_E_DENIED : OMR_E_FAIL, errno,
				   "cannot create a network namespace");
	n->sb_ns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (n->sb_ns < 0) {
		int e = errno;
		net_ns_leave(n);
		return omr_err_set(err, OMR_E_FAIL, e, "cannot open the new network namespace");
	}
	net_ns_leave(n);
	return 0;
}

static int make_sockets(struct omr_net *n, struct omr_err **err)
{
	if (net_ns_enter(n, err) < 0)
		return -1;
	n->dns_fd = bind_gw(n, SOCK_DGRAM, 53, err);
	if (n->dns_fd >= 0)
		n->http_fd = bind_gw(n, SOCK_STREAM, NET_PROXY_PORT_HTTP, err);
	if (n->http_fd >= 0)
		n->tls_fd = bind_gw(n, SOCK_STREAM, NET_PROXY_PORT_TLS, err);
	net_ns_leave(n);
	return n->tls_fd >= 0 ? 0 : -1;
}

/* What internet needs on the host: the uplink, the host's table, the veth. */
static int internet_up(struct omr_net *n, struct omr_err **err)
{
	if (n->veth)
		return 0;
	if (net_uplink_check(n, err) < 0 || net_host_rules_apply(n, err) < 0 ||
	    net_veth_create(n, err) < 0) {
		net_veth_delete(n);
		return -1;
	}
	return 0;
}

int omr_net_open(const struct omr_net_opts *o, struct omr_net **out, struct omr_err **err)
{
	struct omr_net *n = omr_xcalloc(1, sizeof(*n));
	uint8_t r[3];

	*out = NULL;
	n->c = o->c;
	n->host_ns = n->sb_ns = n->tap_fd = n->dns_fd = n->http_fd = n->tls_fd = -1;
	n->event = o->event;
	n->user = o->user;
	n->internet = !!o->internet;
	if (omr_strlcpy(n->id, o->id, sizeof(n->id)) < 0 ||
	    omr_strlcpy(n->allow, o->allow ? o->allow : "", sizeof(n->allow)) < 0 ||
	    omr_strlcpy(n->guest, o->guest_addr, sizeof(n->guest)) < 0 ||
	    omr_net_gateway_of(n->guest, n->gw) < 0 || inet_pton(AF_INET, n->guest, &n->guest_in) != 1 ||
	    inet_pton(AF_INET, n->gw, &n->gw_in) != 1) {
		free(n);
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "bad network settings for %s", o->id);
	}
	/* "omr" + the id's random part: IFNAMSIZ allows 15 bytes; the link's
	 * alias carries the whole id. */
	snprintf(n->host_if, sizeof(n->host_if), NET_HOST_PREFIX "%.12s",
		 strncmp(n->id, OMR_ID_PREFIX, 3) ? n->id : n->id + 3);
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
		memset(r, 0x42, sizeof(r));
	snprintf(n->mac, sizeof(n->mac), "52:54:00:%02x:%02x:%02x", r[0], r[1], r[2]);
	if (make_namespace(n, err) < 0 || net_links_open(n, err) < 0 ||
	    net_tap_create(n, err) < 0 || make_sockets(n, err) < 0 ||
	    net_rules_apply(n, n->internet, n->allow, err) < 0 ||
	    (n->internet && internet_up(n, err) < 0)) {
		omr_net_close(n);
		return -1;
	}
	*out = n;
	return 0;
}

int omr_net_tap_fd(const struct omr_net *n)
{
	return n->tap_fd;
}

void omr_net_drop_tap(struct omr_net *n)
{
	if (n->tap_fd >= 0)
		close(n->tap_fd);
	n->tap_fd = -1;
}

const char *omr_net_mac(const struct omr_net *n)
{
	return n->mac;
}

json_t *omr_net_guest_request(const struct omr_net *n)
{
	return json_pack("{s:s, s:s, s:s, s:i, s:s, s:[s], s:i}", "op", "net_config", "mac",
			 n->mac, "address", n->guest, "prefix", 30, "gateway", n->gw, "dns", n->gw,
			 "mtu", NET_MTU);
}

int omr_net_attach(struct omr_net *n, struct omr_loop *l, struct omr_err **err)
{
	n->loop = l;
	n->res = net_resolver_new(l, err);
	if (!n->res || net_dns_attach(n, err) < 0 || net_proxy_attach(n, err) < 0)
		return -1;
	return 0;
}

int omr_net_set_policy(struct omr_net *n, int internet, const char *allow,
		       struct omr_err **err)
{
	uint64_t o, i;
	int had_veth = n->veth;

	internet = !!internet;
	if (strlen(allow) >= sizeof(n->allow))
		return omr_err_setx(err, OMR_E_LIMIT, E2BIG, "allow-list too long");
	if (internet && !n->veth) {
		if (net_uplink_check(n, err) < 0 || net_host_rules_apply(n, err) < 0)
			return -1;
	}
	/* Counters restart with the new table: keep what they had. */
	net_rules_counters(n, &o, &i);
	if (net_rules_apply(n, internet, allow, err) < 0)
		return -1;
	if (internet && !had_veth && net_veth_create(n, err) < 0) {
		net_veth_delete(n);
		net_rules_apply(n, n->internet, n->allow, NULL);
		return -1;
	}
	n->fwd_base_out += o;
	n->fwd_base_in += i;
	n->internet = internet;
	memcpy(n->allow, allow, strlen(allow) + 1);
	net_proxy_recheck(n);
	net_event(n, json_pack("{s:s, s:b, s:s}", "type", "net_policy", "internet", internet,
			       "allow", allow));
	return 0;
}

json_t *omr_net_stats(struct omr_net *n)
{
	json_t *names = json_array(), *allow = json_array();
	const char *p = n->allow;
	uint64_t o, i;

	net_rules_counters(n, &o, &i);
	while (*p) {
		size_t len = strcspn(p, ",");
		if (len)
			json_array_append_new(allow, json_stringn(p, len));
		p += len + (p[len] == ',');
	}
	for (size_t k = 0; k < n->nnames; k++) {
		const struct net_name_stat *s = &n->names[k];
		json_array_append_new(names, json_pack("{s:s, s:I, s:I, s:I, s:I, s:s?}", "name",
						       s->name, "allowed", (json_int_t)s->allowed,
						       "refused", (json_int_t)s->refused, "bytes_in",
						       (json_int_t)s->bytes_in, "bytes_out",
						       (json_int_t)s->bytes_out, "last_refusal",
						       s->last_refusal[0] ? s->last_refusal : NULL));
	}
	return json_pack("{s:s, s:b, s:o, s:s, s:s, s:I, s:I, s:{s:I, s:I, s:I},"
			 " s:{s:I, s:I, s:I}, s:{s:I, s:I}, s:o}",
			 "mode", n->internet ? "internet" : n->allow[0] ? "allow-list" : "air-gapped",
			 "internet", n->internet, "allow", allow, "address", n->guest, "gateway", n->gw,
			 "bytes_in", (json_int_t)(n->bytes_in + n->fwd_base_in + i),
			 "bytes_out", (json_int_t)(n->bytes_out + n->fwd_base_out + o),
			 "connections", "allowed", (json_int_t)n->conn_allowed, "refused",
			 (json_int_t)n->conn_refused, "open", (json_int_t)net_proxy_count(n),
			 "dns", "answered", (json_int_t)n->dns_answered, "refused",
			 (json_int_t)n->dns_refused, "relayed", (json_int_t)n->dns_relayed,
			 "forwarded", "bytes_in", (json_int_t)(n->fwd_base_in + i), "bytes_out",
			 (json_int_t)(n->fwd_base_out + o), "names", names);
}

void omr_net_close(struct omr_net *n)
{
	if (!n)
		return;
	net_proxy_close(n);
	net_dns_close(n);
	net_resolver_free(n->res);
	if (n->loop) {
		if (n->dns_fd >= 0)
			omr_loop_remove_fd(n->loop, n->dns_fd);
		if (n->http_fd >= 0)
			omr_loop_remove_fd(n->loop, n->http_fd);
		if (n->tls_fd >= 0)
			omr_loop_remove_fd(n->loop, n->tls_fd);
	}
	net_veth_delete(n);
	net_links_close(n);
	if (n->dns_fd >= 0)
		close(n->dns_fd);
	if (n->http_fd >= 0)
		close(n->http_fd);
	if (n->tls_fd >= 0)
		close(n->tls_fd);
	omr_net_drop_tap(n);
	if (n->sb_ns >= 0)
		close(n->sb_ns);
	if (n->host_ns >= 0)
		close(n->host_ns);
	free(n);
}
