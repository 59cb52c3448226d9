/* Host names, allow-lists, address ranges and the address pool; see
 * omnirun/state/netconf.h. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "omnirun/base/util.h"
#include "omnirun/state/config.h"
#include "omnirun/state/netconf.h"
#include "omnirun/state/record.h"

/* Shown in errors: the input, escaped and cut short. */
static char *quoted(const char *in)
{
	char cut[68];
	size_t n = strlen(in);

	if (n > 60) {
		memcpy(cut, in, 60);
		memcpy(cut + 60, "...", 4);
	} else {
		memcpy(cut, in, n + 1);
	}
	return omr_str_escape_ctl(cut);
}

static int all_digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)s[i]))
			return 0;
	return 1;
}

int omr_host_normalize(const char *in, int wildcard, char out[OMR_HOST_MAX],
		       struct omr_err **err)
{
	const char *why = NULL;
	size_t n = strlen(in), i, label = 0, last_start = 0;
	char *q;
	int rc;

	if (n && in[n - 1] == '.')
		n--;
	if (n == 0)
		why = "empty";
	else if (n > OMR_HOST_MAX - 1)
		why = "longer than 253 bytes";
	if (!why) {
		size_t start = 0;
		if (wildcard && n > 2 && in[0] == '*' && in[1] == '.')
			start = 2;
		for (i = start; i < n && !why; i++) {
			unsigned char ch = (unsigned char)in[i];
			if (ch == '.') {
				if (label == 0)
					why = "has an empty label";
				else if (in[i - 1] == '-')
					why = "has a label that ends with '-'";
				label = 0;
				last_start = i + 1;
				continue;
			}
			if (!isalnum(ch) && ch != '-')
				why = ch == '*' ? "has a '*' that is not a leading \"*.\""
				      : ch == ':' || ch == '/' ? "is not a bare host name (no scheme, port or path)"
				      : "has a character other than letters, digits, '-' and '.'";
			else if (ch == '-' && label == 0)
				why = "has a label that starts with '-'";
			else if (++label > 63)
				why = "has a label longer than 63 bytes";
		}
		if (!why && label == 0)
			why = "has an empty label";
		else if (!why && in[n - 1] == '-')
			why = "has a label that ends with '-'";
		/* The last label of a host name is never all digits: that
		 * is an IPv4 address (or a number), and IP literals are
		 * never allowed by name. */
		if (!why && all_digits(in + last_start, n - last_start))
			why = "is an IP address, not a host name";
	}
	if (why) {
		q = quoted(in);
		rc = omr_err_setx(err, OMR_E_USAGE, EINVAL, "'%s' is not a valid host name: it %s", q, why);
		free(q);
		return rc;
	}
	for (i = 0; i < n; i++)
		out[i] = (char)tolower((unsigned char)in[i]);
	out[n] = 0;
	return 0;
}

/* Does entry (one item of a list, len bytes) match name? */
static int entry_match(const char *e, size_t len, const char *name)
{
	size_t nl = strlen(name);

	if (len > 2 && e[0] == '*' && e[1] == '.') {
		/* "*.x.y" matches "a.x.y" and "a.b.x.y", never "x.y". */
		size_t sl = len - 1; /* ".x.y" */
		return nl > sl && !memcmp(name + nl - sl, e + 1, sl);
	}
	return nl == len && !memcmp(name, e, len);
}

int omr_allow_match(const char *allow, const char *name)
{
	const char *p = allow;

	while (p && *p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (len && entry_match(p, len, name))
			return 1;
		p = comma ? comma + 1 : NULL;
	}
	return 0;
}

/* Index of entry in allow (exact text), or -1; *count gets the entries. */
static int find_entry(const char *allow, const char *entry, size_t *count)
{
	const char *p = allow;
	int idx = -1, i = 0;

	*count = 0;
	while (p && *p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (len == strlen(entry) && !memcmp(p, entry, len) && idx < 0)
			idx = i;
		i++;
		p = comma ? comma + 1 : NULL;
	}
	*count = (size_t)i;
	return idx;
}

int omr_allow_add(char allow[OMR_ALLOW_MAX], const char *entry, struct omr_err **err)
{
	char e[OMR_HOST_MAX];
	size_t count, have = strlen(allow);

	if (omr_host_normalize(entry, 1, e, err) < 0)
		return -EINVAL;
	if (find_entry(allow, e, &count) >= 0)
		return 0;
	if (count >= OMR_ALLOW_ENTRIES)
		return omr_err_setx(err, OMR_E_LIMIT, E2BIG, "an allow-list holds at most %d names",
				    OMR_ALLOW_ENTRIES);
	if (have + !!have + strlen(e) + 1 > OMR_ALLOW_MAX)
		return omr_err_setx(err, OMR_E_LIMIT, E2BIG, "an allow-list holds at most %d bytes",
				    OMR_ALLOW_MAX - 1);
	if (have)
		allow[have++] = ',';
	memcpy(allow + have, e, strlen(e) + 1);
	return 0;
}

int omr_allow_remove(char allow[OMR_ALLOW_MAX], const char *entry, struct omr_err **err)
{
	char e[OMR_HOST_MAX], out[OMR_ALLOW_MAX] = "";
	const char *p = allow;
	size_t o = 0;

	if (omr_host_normalize(entry, 1, e, err) < 0)
		return -EINVAL;
	while (p && *p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (len && !(len == strlen(e) && !memcmp(p, e, len))) {
			if (o)
				out[o++] = ',';
			memcpy(out + o, p, len);
			o += len;
		}
		p = comma ? comma + 1 : NULL;
	}
	out[o] = 0;
	memcpy(allow, out, o + 1);
	return 0;
}

int omr_cidr_parse(const char *s, struct omr_cidr *out)
{
	char buf[64];
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	unsigned max;

	memset(out, 0, sizeof(*out));
	if (alen == 0 || alen >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, alen);
	buf[alen] = 0;
	if (inet_pton(AF_INET, buf, out->addr) == 1)
		out->family = AF_INET, max = 32;
	else if (inet_pton(AF_INET6, buf, out->addr) == 1)
		out->family = AF_INET6, max = 128;
	else
		return -EINVAL;
	out->prefix = max;
	if (slash) {
		uint64_t v;
		if (omr_parse_u64(slash + 1, 0, max, &v, "prefix", NULL) < 0)
			return -EINVAL;
		out->prefix = (unsigned)v;
	}
	/* Keep only the network part, so that equal ranges compare equal. */
	for (unsigned bit = out->prefix; bit < max; bit++)
		out->addr[bit / 8] &= (uint8_t)~(0x80u >> (bit % 8));
	return 0;
}

int omr_cidr_contains(const struct omr_cidr *c, int family, const void *addr)
{
	const uint8_t *a = addr;
	unsigned full = c->prefix / 8, rest = c->prefix % 8;

	if (family != c->family)
		return 0;
	if (memcmp(a, c->addr, full))
		return 0;
	if (rest) {
		uint8_t mask = (uint8_t)(0xffu << (8 - rest));
		if ((a[full] & mask) != c->addr[full])
			return 0;
	}
	return 1;
}

int omr_cidr_list_parse(const char *s, struct omr_cidr **out, const char **bad)
{
	struct omr_cidr *v = NULL;
	int n = 0;
	const char *p = s;

	*out = NULL;
	while (*p) {
		size_t len;
		char item[64];

		p += strspn(p, ", \t");
		len = strcspn(p, ", \t");
		if (!len)
			break;
		if (len >= sizeof(item)) {
			*bad = p;
			free(v);
			return -EINVAL;
		}
		memcpy(item, p, len);
		item[len] = 0;
		v = omr_xrealloc(v, (size_t)(n + 1) * sizeof(*v));
		if (omr_cidr_parse(item, &v[n]) < 0) {
			*bad = p;
			free(v);
			return -EINVAL;
		}
		n++;
		p += len;
	}
	*out = v;
	return n;
}

int omr_net_gateway_of(const char *guest, char gw[OMR_ADDR4_MAX])
{
	struct in_addr a;
	uint32_t h;

	if (inet_pton(AF_INET, guest, &a) != 1)
		return -EINVAL;
	h = (ntohl(a.s_addr) & ~3u) | 1u;
	a.s_addr = htonl(h);
	return inet_ntop(AF_INET, &a, gw, OMR_ADDR4_MAX) ? 0 : -EINVAL;
}

int omr_pool_pick(const struct omr_config *c, const struct omr_sandbox *v, size_t n,
		  char guest[OMR_ADDR4_MAX], struct omr_err **err)
{
	const struct omr_cidr *pool = &c->net_pool;
	uint32_t base, slots;
	uint8_t *used;

	if (pool->family != AF_INET || pool->prefix > 30)
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "network.pool must be an IPv4 range of /30 or more");
	memcpy(&base, pool->addr, 4);
	base = ntohl(base);
	slots = 1u << ((30 - pool->prefix) > 24 ? 24 : (30 - pool->prefix));
	used = omr_xcalloc(slots, 1);
	for (size_t i = 0; i < n; i++) {
		struct in_addr a;
		uint32_t h;
		if (v[i].state == OMR_SB_STOPPED || !v[i].net_addr[0] ||
		    inet_pton(AF_INET, v[i].net_addr, &a) != 1)
			continue;
		h = ntohl(a.s_addr);
		if (h >= base && ((h - base) >> 2) < slots)
			used[(h - base) >> 2] = 1;
	}
	for (uint32_t s = 0; s < slots; s++) {
		struct in_addr a = { .s_addr = htonl(base + (s << 2) + 2) };
		if (used[s])
			continue;
		free(used);
		if (!inet_ntop(AF_INET, &a, guest, OMR_ADDR4_MAX))
			return omr_err_set(err, OMR_E_FAIL, errno, "inet_ntop");
		return 0;
	}
	free(used);
	return omr_err_setx(err, OMR_E_LIMIT, EADDRNOTAVAIL,
			    "the address pool is used up (%u sandboxes in network.pool /%u)", slots,
			    pool->prefix);
}
