/* What the egress proxy reads before it dials: the SNI of a TLS
 * ClientHello, the Host of an HTTP request head.  Pure functions over
 * untrusted bytes: every length is checked against what is there. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net-internal.h"

#define TLS_RECORD_MAX 16384 + 256   /* plaintext plus slack some stacks use */
#define EXT_SNI 0x0000
#define EXT_ECH 0xfe0d               /* encrypted_client_hello */

static unsigned be16(const uint8_t *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

/* Normalizes a name that came from the guest; an IP literal or a bad name
 * is refused with a reason. */
static enum net_parse take_name(const char *s, size_t len, char name[OMR_HOST_MAX],
				const char **reason)
{
	char buf[OMR_HOST_MAX + 2];
	uint8_t tmp[16];

	if (len == 0 || len >= sizeof(buf)) {
		*reason = len ? "name too long" : "empty name";
		return NET_P_REFUSE;
	}
	memcpy(buf, s, len);
	buf[len] = 0;
	if (memchr(s, 0, len)) {
		*reason = "bad name";
		return NET_P_REFUSE;
	}
	if (inet_pton(AF_INET, buf, tmp) == 1 || inet_pton(AF_INET6, buf, tmp) == 1 ||
	    (buf[0] == '[')) {
		*reason = "IP literal";
		return NET_P_REFUSE;
	}
	if (omr_host_normalize(buf, 0, name, NULL) < 0) {
		/* "1.2.3.4." and "0x7f.1" style names end in digits too. */
		const char *dot = strrchr(buf, '.');
		*reason = dot && dot[1] >= '0' && dot[1] <= '9' ? "IP literal" : "bad name";
		return NET_P_REFUSE;
	}
	return NET_P_OK;
}

/* The ClientHello body (after the 4-byte handshake header). */
static enum net_parse client_hello_body(const uint8_t *b, size_t len, char name[OMR_HOST_MAX],
					const char **reason)
{
	size_t off = 2 + 32, l, end;
	const uint8_t *sni = NULL;
	size_t sni_len = 0;
	int ech = 0, nsni = 0;

	*reason = "malformed ClientHello";
	if (len < off + 1)
		return NET_P_BAD;
	l = b[off];                                /* session id */
	if (l > 32 || off + 1 + l + 2 > len)
		return NET_P_BAD;
	off += 1 + l;
	l = be16(b + off);                         /* cipher suites */
	if (l < 2 || (l & 1) || off + 2 + l + 1 > len)
		return NET_P_BAD;
	off += 2 + l;
	l = b[off];                                /* compression methods */
	if (l < 1 || off + 1 + l > len)
		return NET_P_BAD;
	off += 1 + l;
	if (off == len) {
		*reason = "no SNI";
		return NET_P_REFUSE;
	}
	if (off + 2 > len)
		return NET_P_BAD;
	end = off + 2 + be16(b + off);
	if (end > len)
		return NET_P_BAD;
	off += 2;
	while (off < end) {
		unsigned type, elen;
		if (off + 4 > end)
			return NET_P_BAD;
		type = be16(b + off);
		elen = be16(b + off + 2);
		off += 4;
		if (off + elen > end)
			return NET_P_BAD;
		if (type == EXT_ECH) {
			ech = 1;
		} else if (type == EXT_SNI) {
			size_t p = off, lend;
			if (sni || elen < 2 || 2 + be16(b + p) != elen)
				return NET_P_BAD;
			lend = off + elen;
			p += 2;
			while (p < lend) {
				unsigned nt, nl;
				if (p + 3 > lend)
					return NET_P_BAD;
				nt = b[p];
				nl = be16(b + p + 1);
				if (p + 3 + nl > lend)
					return NET_P_BAD;
				if (nt == 0) {
					nsni++;
					sni = b + p + 3;
					sni_len = nl;
				}
				p += 3 + nl;
			}
			if (!sni)
				sni = b + off; /* seen, but no host_name entry */
		}
		off += elen;
	}
	if (ech) {
		*reason = "Encrypted Client Hello";
		return NET_P_REFUSE;
	}
	if (nsni == 0) {
		*reason = "no SNI";
		return NET_P_REFUSE;
	}
	if (nsni > 1) {
		*reason = "several SNI names";
		return NET_P_REFUSE;
	}
	return take_name((const char *)sni, sni_len, name, reason);
}

enum net_parse net_parse_client_hello(const uint8_t *p, size_t n, size_t max,
				      char name[OMR_HOST_MAX], const char **reason)
{
	uint8_t *hs = NULL;
	size_t pos = 0, hlen = 0;
	enum net_parse rc = NET_P_MORE;

	*reason = "not a TLS ClientHello";
	if (n >= 1 && p[0] != 0x16)
		return NET_P_BAD;
	hs = malloc(n ? n : 1);
	if (!hs) {
		*reason = "out of memory";
		return NET_P_BAD;
	}
	/* Reassemble the handshake bytes of whole records: a ClientHello may
	 * span records, and records may span segments. */
	while (pos + 5 <= n) {
		size_t rlen = be16(p + pos + 3);
		if (p[pos] != 0x16 || p[pos + 1] != 3 || rlen == 0 || rlen > TLS_RECORD_MAX) {
			rc = NET_P_BAD;
			goto out;
		}
		if (pos + 5 + rlen > n)
			break;
		memcpy(hs + hlen, p + pos + 5, rlen);
		hlen += rlen;
		pos += 5 + rlen;
		if (hlen >= 4) {
			size_t mlen = (size_t)hs[1] << 16 | (size_t)hs[2] << 8 | hs[3];
			if (hs[0] != 1) {
				rc = NET_P_BAD;
				goto out;
			}
			if (mlen + 4 > max) {
				*reason = "ClientHello too large";
				rc = NET_P_REFUSE;
				goto out;
			}
			if (hlen >= 4 + mlen) {
				rc = client_hello_body(hs + 4, mlen, name, reason);
				goto out;
			}
		}
	}
	if (n >= max) {
		*reason = "ClientHello too large";
		rc = NET_P_REFUSE;
	}
out:
	free(hs);
	return rc;
}

static const uint8_t *find_crlfcrlf(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 4 <= n; i++)
		if (p[i] == '\r' && !memcmp(p + i, "\r\n\r\n", 4))
			return p + i;
	return NULL;
}

/* Trims spaces and tabs around [*s, *s + *len). */
static void trim(const char **s, size_t *len)
{
	while (*len && (**s == ' ' || **s == '\t'))
		(*s)++, (*len)--;
	while (*len && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
		(*len)--;
}

/* host[:port] -> host, or NULL for a bad port or an IPv6 literal. */
static int split_port(const char *s, size_t len, size_t *hostlen)
{
	const char *colon = memrchr(s, ':', len);

	*hostlen = len;
	if (!colon)
		return 0;
	for (const char *d = colon + 1; d < s + len; d++)
		if (*d < '0' || *d > '9')
			return -1;
	if (colon + 1 == s + len || colon - s == 0)
		return -1;
	*hostlen = (size_t)(colon - s);
	return 0;
}

enum net_parse net_parse_http_head(const uint8_t *p, size_t n, size_t max,
				   char name[OMR_HOST_MAX], const char **reason)
{
	const uint8_t *end;
	const char *s = (const char *)p, *line, *eol, *host = NULL, *auth = NULL;
	size_t hostlen = 0, authlen = 0, mlen, hl;
	int nhost = 0;

	*reason = "not an HTTP request";
	if (n >= 1 && p[0] == 0x16) {
		*reason = "TLS on the HTTP port";
		return NET_P_REFUSE;
	}
	if (n >= 1 && (p[0] < 'A' || p[0] > 'Z'))
		return NET_P_BAD;
	end = find_crlfcrlf(p, n < max ? n : max);
	if (!end) {
		if (n >= max) {
			*reason = "request head too large";
			return NET_P_REFUSE;
		}
		return NET_P_MORE;
	}
	/* Request line: METHOD SP TARGET SP HTTP/1.x */
	eol = memmem(s, (size_t)((const char *)end - s) + 2, "\r\n", 2);
	mlen = strcspn(s, " \r");
	if (!eol || s[mlen] != ' ')
		return NET_P_BAD;
	if (mlen == 7 && !memcmp(s, "CONNECT", 7)) {
		*reason = "CONNECT";
		return NET_P_REFUSE;
	}
	{
		const char *t = s + mlen + 1, *sp = memchr(t, ' ', (size_t)(eol - t));
		if (!sp || (size_t)(eol - sp - 1) < 8 || memcmp(sp + 1, "HTTP/1.", 7))
			return NET_P_BAD;
		if ((size_t)(sp - t) > 7 && !strncasecmp(t, "http://", 7))
			auth = t + 7;
		else if ((size_t)(sp - t) > 8 && !strncasecmp(t, "https://", 8))
			auth = t + 8;
		if (auth) {
			authlen = strcspn(auth, "/?# ");
			if ((size_t)(sp - auth) < authlen)
				authlen = (size_t)(sp - auth);
		}
	}
	for (line = eol + 2; line < (const char *)end + 2; line = eol + 2) {
		const char *colon;
		eol = memmem(line, (size_t)((const char *)end + 2 - line), "\r\n", 2);
		if (!eol)
			break;
		if (eol == line)
			break;
		if (*line == ' ' || *line == '\t')
			return NET_P_BAD; /* obsolete line folding: refuse to guess */
		colon = memchr(line, ':', (size_t)(eol - line));
		if (!colon)
			return NET_P_BAD;
		if (colon - line == 4 && !strncasecmp(line, "host", 4)) {
			nhost++;
			host = colon + 1;
			hostlen = (size_t)(eol - host);
			trim(&host, &hostlen);
		}
	}
	if (nhost != 1) {
		*reason = nhost ? "several Host headers" : "no Host header";
		return NET_P_REFUSE;
	}
	if (hostlen && host[0] == '[') {
		*reason = "IP literal";
		return NET_P_REFUSE;
	}
	if (split_port(host, hostlen, &hl) < 0) {
		*reason = "bad Host header";
		return NET_P_REFUSE;
	}
	if (auth) {
		size_t al;
		if (memchr(auth, '@', authlen) || split_port(auth, authlen, &al) < 0 || al != hl ||
		    strncasecmp(auth, host, hl)) {
			*reason = "Host header and request URI disagree";
			return NET_P_REFUSE;
		}
	}
	return take_name(host, hl, name, reason);
}
