/* sbx-doctor's network checks; see omnirun/net/doctor.h.  NAT is tried
 * for real, in a throwaway namespace (the host's tables are never
 * touched): the kernel may lack nf_nat, and modules may not load. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <nftables/libnftables.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "omnirun/net/doctor.h"
#include "omnirun/state/record.h"
#include "net-internal.h"

static const char nat_probe[] =
	"table inet omnirun_probe {\n"
	"  chain postrouting { type nat hook postrouting priority srcnat; masquerade; }\n"
	"  chain prerouting { type nat hook prerouting priority dstnat; tcp dport 443 redirect; }\n"
	"  chain forward { type filter hook forward priority filter; policy drop;\n"
	"    fib daddr type != local meta l4proto tcp reject with tcp reset; }\n"
	"}\n";

/* Makes a namespace, tries the rules a sandbox needs in it, and comes
 * back; the namespace goes with its last fd. */
static json_t *probe(void)
{
	int host = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	struct nft_ctx *ctx;
	const char *nserr = NULL;
	_cleanup_free_ char *naterr = NULL;
	int rc;

	if (host < 0)
		nserr = strerror(errno);
	else if (unshare(CLONE_NEWNET) < 0)
		nserr = strerror(errno);
	if (nserr) {
		if (host >= 0)
			close(host);
		return json_pack("{s:{s:b, s:s}, s:{s:b, s:s}}", "namespaces", "ok", 0, "error", nserr,
				 "nat", "ok", 0, "error", "no network namespace to try it in");
	}
	ctx = nft_ctx_new(NFT_CTX_DEFAULT);
	if (!ctx) {
		naterr = omr_xstrdup("libnftables did not start");
	} else {
		nft_ctx_buffer_output(ctx);
		nft_ctx_buffer_error(ctx);
		rc = nft_run_cmd_from_buffer(ctx, nat_probe);
		if (rc != 0) {
			naterr = omr_strdup_printf("%.200s", nft_ctx_get_error_buffer(ctx));
			naterr[strcspn(naterr, "\n")] = 0;
		}
		nft_ctx_free(ctx);
	}
	if (setns(host, CLONE_NEWNET) < 0)
		abort(); /* see net_ns_leave */
	close(host);
	return json_pack("{s:{s:b}, s:{s:b, s:s?}}", "namespaces", "ok", 1, "nat", "ok", !naterr,
			 "error", naterr);
}

static json_t *uplink(const struct omr_config *c)
{
	const char *up = c->net_uplink;
	_cleanup_free_ char *fwd = NULL;
	struct ifaddrs *ifa = NULL;
	json_t *addrs = json_array();
	char val[16] = "";

	if (!up)
		return json_pack("{s:n, s:b, s:b, s:o, s:s}", "name", "present", 0, "forwarding", 0,
				 "addresses", addrs, "error", "[network] uplink is not set: --internet is refused");
	if (!if_nametoindex(up))
		return json_pack("{s:s, s:b, s:b, s:o, s:s}", "name", up, "present", 0, "forwarding", 0,
				 "addresses", addrs, "error", "no such interface");
	fwd = omr_strdup_printf("ipv4/conf/%s/forwarding", up);
	net_sysctl_read(fwd, val, sizeof(val));
	if (getifaddrs(&ifa) == 0) {
		for (struct ifaddrs *i = ifa; i; i = i->ifa_next) {
			char a[INET6_ADDRSTRLEN];
			if (!i->ifa_addr || strcmp(i->ifa_name, up) ||
			    (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6))
				continue;
			inet_ntop(i->ifa_addr->sa_family,
				  i->ifa_addr->sa_family == AF_INET
					  ? (void *)&((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr
					  : (void *)&((struct sockaddr_in6 *)(void *)i->ifa_addr)->sin6_addr,
				  a, sizeof(a));
			json_array_append_new(addrs, json_string(a));
		}
		freeifaddrs(ifa);
	}
	return json_pack("{s:s, s:b, s:b, s:o, s:s?}", "name", up, "present", 1, "forwarding",
			 !strcmp(val, "1"), "addresses", addrs, "error",
			 strcmp(val, "1") ? "IPv4 forwarding is off on it" : NULL);
}

static json_t *pool(const struct omr_config *c)
{
	struct omr_sandbox *v = NULL;
	size_t n = 0, used = 0;
	char a[INET_ADDRSTRLEN];
	_cleanup_free_ char *range = NULL;

	inet_ntop(AF_INET, c->net_pool.addr, a, sizeof(a));
	range = omr_strdup_printf("%s/%u", a, c->net_pool.prefix);
	if (omr_sandbox_list(c, &v, &n, NULL) == 0) {
		for (size_t i = 0; i < n; i++) {
			struct in_addr g;
			if (v[i].state != OMR_SB_STOPPED && v[i].net_addr[0] &&
			    inet_pton(AF_INET, v[i].net_addr, &g) == 1 &&
			    omr_cidr_contains(&c->net_pool, AF_INET, &g))
				used++;
		}
		free(v);
	}
	return json_pack("{s:s, s:I, s:I}", "range", range, "size",
			 (json_int_t)1 << (30 - c->net_pool.prefix), "used", (json_int_t)used);
}

json_t *omr_net_doctor(const struct omr_config *c)
{
	json_t *j = probe();

	json_object_set_new(j, "pool", pool(c));
	json_object_set_new(j, "uplink", uplink(c));
	return j;
}
