/* nft rules through libnftables: one table in the sandbox's namespace,
 * replaced whole in one transaction at every policy change, and the one
 * table OmniRun owns on the host (NAT out of the uplink for --internet).
 * Nothing else on the host is touched. */
#include <errno.h>
#include <jansson.h>
#include <nftables/libnftables.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>

#include "net-internal.h"

/* Never forwarded to, whatever the policy (exceptions aside); the proxy
 * applies the same list in addr.c. */
static const char blocked4[] =
	"0.0.0.0/8, 10.0.0.0/8, 100.64.0.0/10, 127.0.0.0/8, 169.254.0.0/16, "
	"172.16.0.0/12, 192.0.0.0/24, 192.168.0.0/16, 198.18.0.0/15, 224.0.0.0/4, "
	"240.0.0.0/4";

struct sbuf {
	char *s;
	size_t len, cap;
};

__attribute__((format(printf, 2, 3))) static void put(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0)
			abort();
		if (b->len + (size_t)n < b->cap) {
			b->len += (size_t)n;
			return;
		}
		b->cap = (b->cap + (size_t)n) * 2 + 256;
		b->s = omr_xrealloc(b->s, b->cap);
	}
}

static void cidr_str(const struct omr_cidr *c, char *buf, size_t n)
{
	char a[INET6_ADDRSTRLEN];

	inet_ntop(c->family, c->addr, a, sizeof(a));
	snprintf(buf, n, "%s/%u", a, c->prefix);
}

/* Runs text in the calling thread's namespace as one transaction. */
static int nft_run(const char *text, int json, char **out, struct omr_err **err)
{
	struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
	int rc;

	if (!ctx)
		return omr_err_setx(err, OMR_E_FAIL, ENOMEM, "cannot start libnftables");
	nft_ctx_buffer_output(ctx);
	nft_ctx_buffer_error(ctx);
	if (json)
		nft_ctx_output_set_flags(ctx, NFT_CTX_OUTPUT_JSON);
	rc = nft_run_cmd_from_buffer(ctx, text);
	if (rc != 0) {
		const char *e = nft_ctx_get_error_buffer(ctx);
		_cleanup_free_ char *first = omr_strdup_printf("%.300s", e ? e : "");
		first[strcspn(first, "\n")] = 0;
		omr_err_setx(err, OMR_E_FAIL, 0, "nftables refused the rules: %s", first);
		nft_ctx_free(ctx);
		return -1;
	}
	if (out)
		*out = omr_xstrdup(nft_ctx_get_output_buffer(ctx));
	nft_ctx_free(ctx);
	return 0;
}

static char *ns_ruleset(struct omr_net *n, int internet, const char *allow)
{
	struct sbuf b = { 0 };
	char pool[64], c[64];
	int nexc4 = 0;

	cidr_str(&n->c->net_pool, pool, sizeof(pool));
	/* Replaced whole: "add" makes sure there is one to delete. */
	put(&b, "add table inet " NET_TABLE "\ndelete table inet " NET_TABLE "\n");
	put(&b, "table inet " NET_TABLE " {\n");
	put(&b, "  counter fwd_out { }\n  counter fwd_in { }\n");
	put(&b, "  set blocked4 { type ipv4_addr; flags interval; auto-merge; elements = { %s, %s } }\n",
	    blocked4, pool);
	put(&b, "  set except4 { type ipv4_addr; flags interval; auto-merge;");
	for (int i = 0; i < n->c->net_nexceptions; i++) {
		if (n->c->net_exceptions[i].family != AF_INET)
			continue;
		cidr_str(&n->c->net_exceptions[i], c, sizeof(c));
		put(&b, "%s%s", nexc4++ ? ", " : " elements = { ", c);
	}
	put(&b, "%s }\n", nexc4 ? " }" : "");

	put(&b, "  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n");
	/* With an allow-list (and no internet) every TCP 80 and 443 goes to
	 * the proxy, whatever address the guest dialled: its /etc/hosts or
	 * an IP literal changes nothing. */
	if (!internet && allow[0])
		put(&b, "    iifname \"" NET_TAP_NAME "\" tcp dport { 80, 443 } redirect\n");
	put(&b, "  }\n");

	/* Not forwarded (air-gapped, or the proxy's): anything the guest
	 * sends past the gateway is refused at once rather than left to
	 * time out (a reset for TCP, ICMP for the rest). */
	if (!internet)
		put(&b, "  chain prefilter {\n    type filter hook prerouting priority filter; policy accept;\n"
			"    iifname \"" NET_TAP_NAME "\" fib daddr type != local meta l4proto tcp "
			"reject with tcp reset\n"
			"    iifname \"" NET_TAP_NAME "\" fib daddr type != local reject with icmpx "
			"type admin-prohibited\n  }\n");
	put(&b, "  chain input {\n    type filter hook input priority filter; policy drop;\n"
		"    iifname \"lo\" accept\n"
		"    iifname \"" NET_TAP_NAME "\" ip saddr != %s drop\n"
		"    ct state established,related accept\n"
		"    iifname \"" NET_TAP_NAME "\" ip daddr %s udp dport 53 accept\n",
	    n->guest, n->gw);
	if (!internet && allow[0])
		put(&b, "    iifname \"" NET_TAP_NAME "\" ip daddr %s tcp dport { 80, 443 } accept\n",
		    n->gw);
	put(&b, "    iifname \"" NET_TAP_NAME "\" ip daddr %s icmp type echo-request "
		"limit rate 20/second accept\n"
		"    iifname \"" NET_TAP_NAME "\" meta l4proto tcp reject with tcp reset\n"
		"    iifname \"" NET_TAP_NAME "\" reject with icmpx type admin-prohibited\n  }\n",
	    n->gw);

	put(&b, "  chain forward {\n    type filter hook forward priority filter; policy drop;\n");
	if (internet) {
		put(&b, "    iifname \"" NET_VETH_NAME "\" oifname \"" NET_TAP_NAME "\" "
			"ct state established,related counter name fwd_in accept\n"
			"    iifname \"" NET_TAP_NAME "\" oifname \"" NET_VETH_NAME "\" ip saddr %s "
			"ip daddr @except4 counter name fwd_out accept\n"
			"    iifname \"" NET_TAP_NAME "\" oifname \"" NET_VETH_NAME "\" ip saddr %s "
			"ip daddr != @blocked4 counter name fwd_out accept\n",
		    n->guest, n->guest);
	}
	/* Refused, and said so at once: a connection that a new policy
	 * forbids is reset at its next packet. */
	put(&b, "    iifname \"" NET_TAP_NAME "\" meta l4proto tcp reject with tcp reset\n"
		"    iifname \"" NET_TAP_NAME "\" reject with icmpx type admin-prohibited\n  }\n");
	put(&b, "}\n");
	return b.s;
}

int net_rules_apply(struct omr_net *n, int internet, const char *allow, struct omr_err **err)
{
	_cleanup_free_ char *text = ns_ruleset(n, internet, allow);
	int rc;

	if (net_ns_enter(n, err) < 0)
		return -1;
	rc = nft_run(text, 0, NULL, err);
	/* Forwarding follows the policy too: off, nothing is forwarded even
	 * if a rule were missing. */
	if (rc == 0)
		rc = net_sysctl("ipv4/ip_forward", internet ? "1" : "0", err);
	net_ns_leave(n);
	return rc;
}

int net_host_rules_apply(struct omr_net *n, struct omr_err **err)
{
	struct sbuf b = { 0 };
	const char *up = n->c->net_uplink;
	char pool[64];
	int rc;

	cidr_str(&n->c->net_pool, pool, sizeof(pool));
	/* Every monitor writes the same table: idempotent, and one
	 * transaction, so the table is never half there.  The host's other
	 * tables are not touched; this one only restricts and NATs. */
	put(&b, "add table inet " NET_TABLE "\ndelete table inet " NET_TABLE "\n"
		"table inet " NET_TABLE " {\n"
		"  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n"
		"    oifname \"%s\" ip saddr %s masquerade\n  }\n"
		"  chain forward {\n    type filter hook forward priority filter - 1; policy accept;\n"
		"    iifname \"" NET_HOST_PREFIX "*\" oifname != \"%s\" drop\n"
		"    oifname \"" NET_HOST_PREFIX "*\" iifname != \"%s\" drop\n"
		"    oifname \"" NET_HOST_PREFIX "*\" ct state established,related accept\n"
		"    oifname \"" NET_HOST_PREFIX "*\" drop\n  }\n"
		"  chain input {\n    type filter hook input priority filter - 1; policy accept;\n"
		"    iifname \"" NET_HOST_PREFIX "*\" drop\n  }\n"
		"}\n", up, pool, up, up);
	rc = nft_run(b.s, 0, NULL, err);
	free(b.s);
	return rc < 0 ? omr_err_wrap(err, "the host's table inet " NET_TABLE) : 0;
}

void net_rules_counters(struct omr_net *n, uint64_t *out, uint64_t *in)
{
	_cleanup_free_ char *text = NULL;
	json_t *j, *arr, *item;
	size_t i;

	*out = *in = 0;
	if (net_ns_enter(n, NULL) < 0)
		return;
	if (nft_run("list counters table inet " NET_TABLE, 1, &text, NULL) < 0) {
		net_ns_leave(n);
		return;
	}
	net_ns_leave(n);
	j = json_loads(text, 0, NULL);
	arr = json_object_get(j, "nftables");
	json_array_foreach(arr, i, item) {
		json_t *ctr = json_object_get(item, "counter");
		const char *name = json_string_value(json_object_get(ctr, "name"));
		uint64_t bytes = (uint64_t)json_integer_value(json_object_get(ctr, "bytes"));
		if (!name)
			continue;
		if (!strcmp(name, "fwd_out"))
			*out = bytes;
		else if (!strcmp(name, "fwd_in"))
			*in = bytes;
	}
	json_decref(j);
}
