/* Unit tests for the net area's pure parts: host names and allow-lists
 * (state/netconf.c), the SNI and Host parsers (net/parse.c), DNS messages
 * (net/dnsmsg.c) and forbidden addresses (net/addr.c).  TAP. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../libcore/net/net-internal.h"
#include "omnirun/state/netconf.h"

#include "tap.h"

static void host(const char *in, int wild, const char *want)
{
	char out[OMR_HOST_MAX];
	struct omr_err *e = NULL;
	int rc = omr_host_normalize(in, wild, out, &e);

	if (want)
		is_str(rc == 0 ? out : e->msg, want, "host '%s' normalized", in);
	else
		ok(rc < 0 && e && omr_err_kind(e) == OMR_E_USAGE, "host '%s' refused (%s)", in,
		   e ? e->msg : "accepted");
	omr_err_free(&e);
}

static void test_hosts(void)
{
	char allow[OMR_ALLOW_MAX] = "";
	char long_label[80];

	host("A.Test", 0, "a.test");
	host("a.test.", 0, "a.test");
	host("*.example.com", 1, "*.example.com");
	host("*.example.com", 0, NULL);
	host("a.*.com", 1, NULL);
	host("1.2.3.4", 0, NULL);
	host("::1", 0, NULL);
	host("http://a.test", 0, NULL);
	host("a.test:443", 0, NULL);
	host("a..test", 0, NULL);
	host("-a.test", 0, NULL);
	host("a-.test", 0, NULL);
	host("a_b.test", 0, NULL);
	host("", 0, NULL);
	memset(long_label, 'x', 64);
	strcpy(long_label + 64, ".test");
	host(long_label, 0, NULL);

	ok(omr_allow_add(allow, "a.test", NULL) == 0 && omr_allow_add(allow, "*.Wild.test", NULL) == 0 &&
	   omr_allow_add(allow, "a.test", NULL) == 0 && !strcmp(allow, "a.test,*.wild.test"),
	   "allow-list built without duplicates: %s", allow);
	ok(omr_allow_match(allow, "a.test"), "exact name matches");
	ok(!omr_allow_match(allow, "b.a.test"), "a name below an exact entry does not");
	ok(!omr_allow_match(allow, "aa.test"), "a longer name does not");
	ok(omr_allow_match(allow, "x.wild.test") && omr_allow_match(allow, "y.x.wild.test"),
	   "wildcard matches names below it");
	ok(!omr_allow_match(allow, "wild.test") && !omr_allow_match(allow, "xwild.test"),
	   "wildcard does not match its base or a suffix");
	ok(omr_allow_remove(allow, "A.TEST", NULL) == 0 && !strcmp(allow, "*.wild.test"),
	   "remove: %s", allow);
	ok(omr_allow_remove(allow, "*.wild.test", NULL) == 0 && !strcmp(allow, ""), "remove last");
	for (int i = 0; i < OMR_ALLOW_ENTRIES; i++) {
		char name[32];
		snprintf(name, sizeof(name), "h%d.test", i);
		omr_allow_add(allow, name, NULL);
	}
	{
		struct omr_err *e = NULL;
		ok(omr_allow_add(allow, "one-too-many.test", &e) < 0 && omr_err_kind(e) == OMR_E_LIMIT,
		   "the allow-list is bounded");
		omr_err_free(&e);
	}
}

/* ---- ClientHello ---- */

static size_t put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
	return 2;
}

/* A ClientHello with the given extensions, split into records of rec. */
static size_t hello(uint8_t *out, const char *sni, int nsni, int ech, size_t pad, size_t rec)
{
	static uint8_t body[40000], hs[40004];
	size_t b = 0, ext_at, o = 0, len;

	b += put16(body + b, 0x0303);
	memset(body + b, 7, 32);
	b += 32;
	body[b++] = 0;
	b += put16(body + b, 2);
	b += put16(body + b, 0x1301);
	body[b++] = 1;
	body[b++] = 0;
	ext_at = b;
	b += 2;
	if (sni) {
		size_t l = strlen(sni), list = (size_t)nsni * (l + 3);
		b += put16(body + b, 0);
		b += put16(body + b, list + 2);
		b += put16(body + b, list);
		for (int i = 0; i < nsni; i++) {
			body[b++] = 0;
			b += put16(body + b, l);
			memcpy(body + b, sni, l);
			b += l;
		}
	}
	if (ech) {
		b += put16(body + b, 0xfe0d);
		b += put16(body + b, 1);
		body[b++] = 0;
	}
	if (pad) {
		b += put16(body + b, 0x15);
		b += put16(body + b, pad);
		memset(body + b, 0, pad);
		b += pad;
	}
	put16(body + ext_at, b - ext_at - 2);
	hs[0] = 1;
	hs[1] = (uint8_t)(b >> 16);
	hs[2] = (uint8_t)(b >> 8);
	hs[3] = (uint8_t)b;
	memcpy(hs + 4, body, b);
	len = b + 4;
	for (size_t d = 0; d < len;) {
		size_t k = len - d > rec ? rec : len - d;
		out[o++] = 0x16;
		out[o++] = 3;
		out[o++] = 1;
		o += put16(out + o, k);
		memcpy(out + o, hs + d, k);
		o += k;
		d += k;
	}
	return o;
}

static void test_client_hello(void)
{
	static uint8_t buf[50000];
	char name[OMR_HOST_MAX];
	const char *why;
	size_t n;
	int more = 1;

	n = hello(buf, "A.test", 1, 0, 0, 16384);
	ok(net_parse_client_hello(buf, n, NET_HEAD_MAX, name, &why) == NET_P_OK &&
	   !strcmp(name, "a.test"), "SNI read and normalized");
	for (size_t k = 0; k < n && more; k++)
		more = net_parse_client_hello(buf, k, NET_HEAD_MAX, name, &why) == NET_P_MORE;
	ok(more, "every prefix of a ClientHello asks for more");
	n = hello(buf, "a.test", 1, 0, 0, 7);
	ok(net_parse_client_hello(buf, n, NET_HEAD_MAX, name, &why) == NET_P_OK,
	   "a ClientHello spread over 7-byte records");
	n = hello(buf, "a.test", 1, 0, 16400, 16384);
	ok(n > 16384 && net_parse_client_hello(buf, n, NET_HEAD_MAX, name, &why) == NET_P_OK,
	   "a 16 KiB ClientHello over two records (%zu bytes)", n);
	n = hello(buf, "a.test", 1, 0, 33000, 16384);
	ok(net_parse_client_hello(buf, n, NET_HEAD_MAX, name, &why) == NET_P_REFUSE &&
	   strstr(why, "too large"), "a ClientHello over the bound is refused (%s)", why);
	n = hello(buf, NULL, 0, 0, 0, 16384);
	ok(net_parse_client_hello(buf, n, NET_HEAD_MAX, name, &why) == NET_P_REFUSE &&
	   !strcmp(why, "no SNI"), "no SNI refused");
	n = hello(buf, "a.test", 1, 1, 0, 16384);
	ok(net_parse_client_hello(buf, n, NET_HEAD_MAX, name, &why) == NET_P_REFUSE &&
	   strstr(why, "Encrypted"), "ECH refused");
	n = hello(buf, "a.test", 2, 0, 0, 16384);
	ok(net_parse_client_hello(buf, n, NET_HEAD_MAX, name, &why) == NET_P_REFUSE,
	   "two SNI names refused");
	n = hello(buf, "198.51.100.2", 1, 0, 0, 16384);
	ok(net_parse_client_hello(buf, n, NET_HEAD_MAX, name, &why) == NET_P_REFUSE &&
	   !strcmp(why, "IP literal"), "IP literal SNI refused (%s)", why);
	n = hello(buf, "a.test", 1, 0, 0, 16384);
	buf[5 + 4 + 34 + 1] = 0xff; /* cipher suites length past the end */
	ok(net_parse_client_hello(buf, n, NET_HEAD_MAX, name, &why) == NET_P_BAD, "malformed");
	ok(net_parse_client_hello((const uint8_t *)"GET / HTTP/1.1\r\n", 16, NET_HEAD_MAX, name,
				  &why) == NET_P_BAD, "HTTP on the TLS port is not a ClientHello");
}

static enum net_parse http(const char *s, char name[OMR_HOST_MAX], const char **why)
{
	return net_parse_http_head((const uint8_t *)s, strlen(s), NET_HEAD_MAX, name, why);
}

static void test_http(void)
{
	char name[OMR_HOST_MAX];
	const char *why = "";

	ok(http("GET / HTTP/1.1\r\nHost: A.test:80\r\n\r\n", name, &why) == NET_P_OK &&
	   !strcmp(name, "a.test"), "Host read, port dropped");
	ok(http("GET / HTTP/1.1\r\nHost: a.test\r\n", name, &why) == NET_P_MORE, "head not ended");
	ok(http("CONNECT a.test:443 HTTP/1.1\r\nHost: a.test\r\n\r\n", name, &why) == NET_P_REFUSE &&
	   !strcmp(why, "CONNECT"), "CONNECT refused");
	ok(http("GET / HTTP/1.1\r\nHost: a.test\r\nhost: b.test\r\n\r\n", name, &why) == NET_P_REFUSE,
	   "two Host headers refused");
	ok(http("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", name, &why) == NET_P_REFUSE, "no Host refused");
	ok(http("GET / HTTP/1.1\r\nHost: 198.51.100.2\r\n\r\n", name, &why) == NET_P_REFUSE &&
	   !strcmp(why, "IP literal"), "IP literal Host refused");
	ok(http("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", name, &why) == NET_P_REFUSE,
	   "IPv6 literal Host refused");
	ok(http("GET http://b.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n", name, &why) == NET_P_REFUSE,
	   "absolute URI that disagrees with Host refused");
	ok(http("GET http://a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n", name, &why) == NET_P_OK,
	   "absolute URI that agrees");
	ok(http("GET / HTTP/1.1\r\nHost: a.test\r\n folded\r\n\r\n", name, &why) == NET_P_BAD,
	   "obsolete line folding is malformed");
	ok(http("\x16\x03\x01\x00\x05hello", name, &why) == NET_P_REFUSE, "TLS on the HTTP port refused");
}

static void test_dns(void)
{
	uint8_t q[512], a[512];
	struct net_dns_q dq;
	struct net_addr addrs[4];
	uint32_t ttl;
	uint8_t gw[4] = { 10, 0, 0, 1 };
	size_t n = net_dns_build_query(0x1234, "A.Test", NET_DNS_T_A, q, sizeof(q)), an;

	ok(n > 12 && net_dns_parse_query(q, n, &dq) == 0 && dq.name_ok &&
	   !strcmp(dq.name, "a.test") && dq.qtype == NET_DNS_T_A, "query built and parsed");
	an = net_dns_answer(q, &dq, NET_DNS_RCODE_NOERROR, gw, 5, a, sizeof(a));
	ok(net_dns_parse_answer(a, an, 0x1234, addrs, 4, &ttl) == 1 && addrs[0].family == AF_INET &&
	   !memcmp(addrs[0].a, gw, 4) && ttl == 5, "answer with the gateway's address");
	an = net_dns_answer(q, &dq, NET_DNS_RCODE_REFUSED, NULL, 0, a, sizeof(a));
	ok((a[3] & 0xf) == NET_DNS_RCODE_REFUSED && net_dns_parse_answer(a, an, 0x1234, addrs, 4, &ttl) == -2,
	   "REFUSED");
	ok(net_dns_parse_answer(a, an, 0x9999, addrs, 4, &ttl) == -1, "another id is ignored");
	q[12] = 0xc0; /* a pointer loop in the question */
	q[13] = 12;
	ok(net_dns_parse_query(q, n, &dq) < 0, "compression loop refused");
	ok(net_dns_parse_query(q, 5, &dq) < 0, "short message refused");
}

static const char *why(const char *s)
{
	struct net_addr a = { 0 };

	if (inet_pton(AF_INET, s, a.a) == 1)
		a.family = AF_INET;
	else if (inet_pton(AF_INET6, s, a.a) == 1)
		a.family = AF_INET6;
	return net_addr_forbidden(&a, NULL, 0, NULL);
}

static void test_addrs(void)
{
	static const struct { const char *a, *why; } t[] = {
		{ "127.0.0.1", "loopback" }, { "10.1.2.3", "private" }, { "172.20.0.1", "private" },
		{ "192.168.1.1", "private" }, { "100.64.0.1", "cgnat" }, { "169.254.1.1", "link-local" },
		{ "169.254.169.254", "metadata" }, { "224.0.0.1", "multicast" },
		{ "255.255.255.255", "reserved" }, { "0.0.0.0", "reserved" }, { "::1", "loopback" },
		{ "fe80::1", "link-local" }, { "fd00::1", "private" }, { "ff02::1", "multicast" },
		{ "::ffff:127.0.0.1", "loopback" }, { "::ffff:10.0.0.1", "private" },
		{ "64:ff9b::a00:1", "private" }, { "2002:a00:1::", "private" },
		{ "fd00:ec2::254", "metadata" }, { "198.51.100.2", NULL }, { "2001:db8::2", NULL },
		{ "8.8.8.8", NULL },
	};
	struct omr_cidr exc;
	struct net_addr a = { .family = AF_INET };

	for (size_t i = 0; i < OMR_ARRAY_SIZE(t); i++) {
		is_str(why(t[i].a), t[i].why, "%s is %s", t[i].a, t[i].why ? t[i].why : "allowed");
	}
	omr_cidr_parse("10.1.0.0/16", &exc);
	inet_pton(AF_INET, "10.1.2.3", a.a);
	ok(!net_addr_forbidden(&a, &exc, 1, NULL), "an exception lifts a private range");
	inet_pton(AF_INET, "127.0.0.1", a.a);
	omr_cidr_parse("127.0.0.0/8", &exc);
	ok(net_addr_forbidden(&a, &exc, 1, NULL) != NULL, "never loopback, exception or not");
}

int main(void)
{
	test_hosts();
	test_client_hello();
	test_http();
	test_dns();
	test_addrs();
	return done_testing();
}
