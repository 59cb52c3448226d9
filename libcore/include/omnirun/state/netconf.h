/* The network policy as data (DESIGN.md §6): host names and allow-lists,
 * address ranges, and the per-sandbox /30 taken from the configured pool.
 * Kept in state/ because the record, the config and sbx-create need it;
 * the net area enforces it. */
#ifndef OMNIRUN_STATE_NETCONF_H
#define OMNIRUN_STATE_NETCONF_H

#include <stddef.h>
#include <stdint.h>

#include "omnirun/base/err.h"

#define OMR_HOST_MAX 254        /* a host name and its NUL */
#define OMR_ALLOW_MAX 4096      /* an allow-list as text (the record's field) */
#define OMR_ALLOW_ENTRIES 64    /* entries in one allow-list */
#define OMR_ADDR4_MAX 16        /* "255.255.255.255" and its NUL */

struct omr_config;
struct omr_sandbox;

/* Lower-cases a host name, drops one trailing dot and checks it: labels
 * of letters, digits and inner hyphens, 1-63 bytes each, 253 in all, not
 * an IP address.  With wildcard, a leading "*." is allowed (it matches
 * any name below the rest, not the rest itself).  Returns 0, or < 0 with a
 * usage error that quotes the input. */
int omr_host_normalize(const char *in, int wildcard, char out[OMR_HOST_MAX],
		       struct omr_err **err);

/* 1 if name (already normalized) is on allow, a comma-separated list of
 * normalized entries. */
int omr_allow_match(const char *allow, const char *name);

/* Edits an allow-list in place: entry (normalized here) is added if absent
 * or removed if present.  -E2BIG (a limit error) past OMR_ALLOW_ENTRIES or
 * OMR_ALLOW_MAX. */
int omr_allow_add(char allow[OMR_ALLOW_MAX], const char *entry, struct omr_err **err);
int omr_allow_remove(char allow[OMR_ALLOW_MAX], const char *entry, struct omr_err **err);

/* An address range, IPv4 or IPv6. */
struct omr_cidr {
	int family;          /* AF_INET or AF_INET6 */
	uint8_t addr[16];    /* network byte order; IPv4 in the first 4 */
	unsigned prefix;
};
/* Parses "A.B.C.D/N", "X::Y/N" or a bare address (a host route).  Returns
 * 0 or -EINVAL. */
int omr_cidr_parse(const char *s, struct omr_cidr *out);
/* 1 if addr (4 or 16 bytes as family says) lies in c. */
int omr_cidr_contains(const struct omr_cidr *c, int family, const void *addr);
/* Parses a comma- or space-separated list into a malloc'ed array.
 * Returns the count (>= 0) or -EINVAL with *bad pointing into s. */
int omr_cidr_list_parse(const char *s, struct omr_cidr **out, const char **bad);

/* The guest and gateway of the /30 whose guest address is guest (dotted
 * quad): gateway = .1, guest = .2 of the /30.  Returns 0 or -EINVAL. */
int omr_net_gateway_of(const char *guest, char gw[OMR_ADDR4_MAX]);

/* Picks the lowest /30 of the config's pool that none of the n records in
 * v (the live ones count) uses, and writes its guest address.  Returns 0,
 * or < 0 with a limit error when the pool is used up. */
int omr_pool_pick(const struct omr_config *c, const struct omr_sandbox *v, size_t n,
		  char guest[OMR_ADDR4_MAX], struct omr_err **err);

#endif
