/* DNS messages (RFC 1035), only as much as the responder and the stub
 * resolver need.  Every offset is checked against the message length;
 * compression pointers are followed a bounded number of times. */
#include <ctype.h>
#include <string.h>

#include "net-internal.h"

#define HDR 12
#define PTR_HOPS 16

static unsigned be16(const uint8_t *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* Skips a (possibly compressed) name at *off.  With out, also decodes it
 * as dotted text (lower-case).  Returns 0 or -1. */
static int read_name(const uint8_t *p, size_t n, size_t *off, char *out, size_t outmax)
{
	size_t o = *off, w = 0;
	int hops = 0, jumped = 0;

	for (;;) {
		unsigned l;
		if (o >= n)
			return -1;
		l = p[o];
		if ((l & 0xc0) == 0xc0) {
			if (o + 1 >= n || ++hops > PTR_HOPS)
				return -1;
			if (!jumped)
				*off = o + 2;
			jumped = 1;
			o = (l & 0x3f) << 8 | p[o + 1];
			continue;
		}
		if (l & 0xc0)
			return -1;
		o++;
		if (l == 0)
			break;
		if (o + l > n)
			return -1;
		if (out) {
			if (w + l + 2 > outmax)
				return -1;
			if (w)
				out[w++] = '.';
			for (unsigned i = 0; i < l; i++)
				out[w++] = (char)tolower(p[o + i]);
		}
		o += l;
	}
	if (!jumped)
		*off = o;
	if (out)
		out[w] = 0;
	return 0;
}

int net_dns_parse_query(const uint8_t *p, size_t n, struct net_dns_q *q)
{
	size_t off = HDR;
	char raw[OMR_HOST_MAX + 8];

	memset(q, 0, sizeof(*q));
	if (n < HDR)
		return -1;
	q->id = (uint16_t)be16(p);
	q->flags = (uint16_t)be16(p + 2);
	if ((q->flags & 0x8000) || be16(p + 4) != 1)
		return -1; /* a response, or not one question */
	if (read_name(p, n, &off, raw, sizeof(raw)) < 0 || off + 4 > n)
		return -1;
	q->qtype = (uint16_t)be16(p + off);
	q->qclass = (uint16_t)be16(p + off + 2);
	q->qend = off + 4;
	/* Names that are not host names (underscores, binary) are never
	 * on a list: they get REFUSED. */
	q->name_ok = raw[0] && omr_host_normalize(raw, 0, q->name, NULL) == 0;
	if (!q->name_ok)
		q->name[0] = 0;
	return 0;
}

size_t net_dns_answer(const uint8_t *p, const struct net_dns_q *q, int rcode,
		      const uint8_t *a4, uint32_t ttl, uint8_t *out, size_t outmax)
{
	size_t len = q->qend;

	if (len + 16 > outmax)
		return 0;
	memcpy(out, p, len);
	/* QR, opcode 0, AA, RD copied, RA; no authority or additional. */
	put16(out + 2, 0x8000 | 0x0400 | (q->flags & 0x0100) | 0x0080 | (unsigned)(rcode & 0xf));
	put16(out + 4, 1);
	put16(out + 6, a4 ? 1 : 0);
	put16(out + 8, 0);
	put16(out + 10, 0);
	if (a4) {
		put16(out + len, 0xc000 | HDR);  /* the question's name */
		put16(out + len + 2, NET_DNS_T_A);
		put16(out + len + 4, 1);
		out[len + 6] = (uint8_t)(ttl >> 24);
		out[len + 7] = (uint8_t)(ttl >> 16);
		out[len + 8] = (uint8_t)(ttl >> 8);
		out[len + 9] = (uint8_t)ttl;
		put16(out + len + 10, 4);
		memcpy(out + len + 12, a4, 4);
		len += 16;
	}
	return len;
}

size_t net_dns_build_query(uint16_t id, const char *name, uint16_t qtype, uint8_t *out,
			   size_t outmax)
{
	size_t o = HDR, nl = strlen(name);
	const char *s = name;

	if (HDR + nl + 2 + 4 > outmax)
		return 0;
	memset(out, 0, HDR);
	put16(out, id);
	put16(out + 2, 0x0100); /* RD */
	put16(out + 4, 1);
	while (*s) {
		size_t l = strcspn(s, ".");
		if (l == 0 || l > 63)
			return 0;
		out[o++] = (uint8_t)l;
		memcpy(out + o, s, l);
		o += l;
		s += l + (s[l] == '.');
	}
	out[o++] = 0;
	put16(out + o, qtype);
	put16(out + o + 2, 1);
	return o + 4;
}

int net_dns_parse_answer(const uint8_t *p, size_t n, uint16_t id, struct net_addr *addrs,
			 int max, uint32_t *ttl)
{
	size_t off = HDR;
	unsigned qd, an, flags;
	int cnt = 0;

	*ttl = UINT32_MAX;
	if (n < HDR || be16(p) != id)
		return -1;
	flags = be16(p + 2);
	if (!(flags & 0x8000))
		return -1;
	if ((flags & 0xf) != NET_DNS_RCODE_NOERROR)
		return (flags & 0xf) == NET_DNS_RCODE_NXDOMAIN ? 0 : -2;
	qd = be16(p + 4);
	an = be16(p + 6);
	for (unsigned i = 0; i < qd; i++) {
		if (read_name(p, n, &off, NULL, 0) < 0 || off + 4 > n)
			return -1;
		off += 4;
	}
	for (unsigned i = 0; i < an; i++) {
		unsigned type, cls, rdlen;
		uint32_t t;
		if (read_name(p, n, &off, NULL, 0) < 0 || off + 10 > n)
			return -1;
		type = be16(p + off);
		cls = be16(p + off + 2);
		t = be32(p + off + 4);
		rdlen = be16(p + off + 8);
		off += 10;
		if (off + rdlen > n)
			return -1;
		if (cls == 1 && cnt < max &&
		    ((type == NET_DNS_T_A && rdlen == 4) || (type == NET_DNS_T_AAAA && rdlen == 16))) {
			addrs[cnt].family = type == NET_DNS_T_A ? AF_INET : AF_INET6;
			memset(addrs[cnt].a, 0, 16);
			memcpy(addrs[cnt].a, p + off, rdlen);
			cnt++;
			if (t < *ttl)
				*ttl = t;
		}
		off += rdlen;
	}
	return cnt;
}
