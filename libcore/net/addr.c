/* Which resolved addresses the proxy may dial: never loopback, private,
 * CGNAT, link-local (with the metadata address), multicast, reserved, the
 * sandbox pool or the host's own addresses, for IPv4 and IPv6, including
 * IPv4 addresses carried inside IPv6 ones (mapped, NAT64, 6to4). */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <stdio.h>
#include <string.h>

#include "net-internal.h"

struct range {
	const char *cidr, *why;
};

/* Order matters only for the reason given. */
static const struct range v4[] = {
	{ "169.254.169.254/32", "metadata" },
	{ "100.100.100.200/32", "metadata" },
	{ "0.0.0.0/8", "reserved" },
	{ "10.0.0.0/8", "private" },
	{ "100.64.0.0/10", "cgnat" },
	{ "127.0.0.0/8", "loopback" },
	{ "169.254.0.0/16", "link-local" },
	{ "172.16.0.0/12", "private" },
	{ "192.0.0.0/24", "reserved" },
	{ "192.168.0.0/16", "private" },
	{ "198.18.0.0/15", "reserved" },
	{ "224.0.0.0/4", "multicast" },
	{ "240.0.0.0/4", "reserved" },
};

static const struct range v6[] = {
	{ "fd00:ec2::254/128", "metadata" },
	{ "::/128", "reserved" },
	{ "::1/128", "loopback" },
	{ "100::/64", "reserved" },
	{ "2001::/32", "reserved" },         /* Teredo: tunnels to anywhere */
	{ "fc00::/7", "private" },
	{ "fe80::/10", "link-local" },
	{ "fec0::/10", "link-local" },
	{ "ff00::/8", "multicast" },
};

static const char *in_table(const struct range *t, size_t n, const struct net_addr *a)
{
	for (size_t i = 0; i < n; i++) {
		struct omr_cidr c;
		if (omr_cidr_parse(t[i].cidr, &c) == 0 && omr_cidr_contains(&c, a->family, a->a))
			return t[i].why;
	}
	return NULL;
}

static int excepted(const struct net_addr *a, const struct omr_cidr *exc, int nexc)
{
	for (int i = 0; i < nexc; i++)
		if (omr_cidr_contains(&exc[i], a->family, a->a))
			return 1;
	return 0;
}

/* The IPv4 address inside an IPv6 one that leads to it (mapped, NAT64,
 * 6to4), if any. */
static int embedded_v4(const struct net_addr *a, struct net_addr *out)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	static const uint8_t nat64[12] = { 0, 0x64, 0xff, 0x9b };
	static const uint8_t compat[12] = { 0 };

	out->family = AF_INET;
	if (!memcmp(a->a, mapped, 12) || !memcmp(a->a, nat64, 12) ||
	    (!memcmp(a->a, compat, 12) && memcmp(a->a + 12, compat, 4))) {
		memcpy(out->a, a->a + 12, 4);
		return 1;
	}
	if (a->a[0] == 0x20 && a->a[1] == 0x02) { /* 2002:AABB:CCDD::/48 */
		memcpy(out->a, a->a + 2, 4);
		return 1;
	}
	return 0;
}

const char *net_addr_forbidden(const struct net_addr *a, const struct omr_cidr *exc, int nexc,
			       const struct omr_cidr *pool)
{
	const char *why;
	struct net_addr inner;

	why = a->family == AF_INET ? in_table(v4, OMR_ARRAY_SIZE(v4), a)
				   : in_table(v6, OMR_ARRAY_SIZE(v6), a);
	if (!why && a->family == AF_INET6 && embedded_v4(a, &inner)) {
		why = net_addr_forbidden(&inner, exc, nexc, pool);
		if (why)
			return why;
	}
	if (a->family == AF_INET && !memcmp(a->a, "\xff\xff\xff\xff", 4))
		why = "reserved";
	if (!why && pool && omr_cidr_contains(pool, a->family, a->a))
		why = "pool";
	/* Exceptions open ranges, never loopback or the host itself. */
	if (why && strcmp(why, "loopback") && excepted(a, exc, nexc))
		why = NULL;
	if (!why && net_addr_is_host(a))
		why = "host";
	return why;
}

int net_addr_is_host(const struct net_addr *a)
{
	struct ifaddrs *ifa, *i;
	int found = 0;

	if (getifaddrs(&ifa) < 0)
		return 1; /* cannot tell: treat it as ours */
	for (i = ifa; i && !found; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != a->family)
			continue;
		if (a->family == AF_INET)
			found = !memcmp(&((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr, a->a, 4);
		else
			found = !memcmp(&((struct sockaddr_in6 *)(void *)i->ifa_addr)->sin6_addr, a->a, 16);
	}
	freeifaddrs(ifa);
	return found;
}

void net_addr_str(const struct net_addr *a, char *buf, size_t n)
{
	if (!inet_ntop(a->family, a->a, buf, (socklen_t)n))
		snprintf(buf, n, "?");
}
