/* Exposures: /sandboxes/:id/exposures, and the preview URLs
 * (PORT-SANDBOXID.DOMAIN) that the shim routes by their Host header to
 * that port in the guest, through a forward on the agent channel
 * (omnirun/client/forward.h): no network route into the guest is used.
 *
 * A preview request is proxied on its connection's own thread
 * (MHD_USE_THREAD_PER_CONNECTION), so it may block: the request goes to
 * the guest as HTTP/1.0 with "Connection: close" (the guest's answer then
 * ends at its EOF and is never chunked), its body as it arrives; the
 * answer's head is read and checked, its body streamed back as the guest
 * sends it.  A WebSocket handshake goes as HTTP/1.1 with its Upgrade
 * headers; when the guest answers 101, the client's connection is handed
 * over (MHD_create_response_for_upgrade) and a thread splices it with the
 * forward until either side closes.
 *
 * Both listeners route preview hosts: the E2B one for getHost(port)
 * (doc/e2b.md), whose sandboxes have an exposure of every port, and for
 * E2B's E2b-Sandbox-Id and E2b-Sandbox-Port headers naming a port other
 * than envd's. */
#include <errno.h>
#include <stdarg.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api-internal.h"
#include "envd-internal.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/base/io.h"
#include "omnirun/base/log.h"
#include "omnirun/base/util.h"
#include "omnirun/client/forward.h"
#include "omnirun/state/expose.h"

#define HEAD_MAX (64u * 1024u)      /* a request's or an answer's head */
#define CHUNK 65536

/* ---- the routes ---- */

enum MHD_Result omr_api_exposures_create(struct omr_api_req *r)
{
	static const char *const fields[] = { "port:i", "protected:b", "public:b", NULL };
	const char *id = omr_api_own_sandbox(r);
	json_t *port = json_object_get(r->json, "port"), *pub, *prot;
	struct omr_err *err = NULL;
	struct omr_exposure e;
	int protect;

	if (!id || omr_api_check_fields(r, r->json, fields) < 0)
		return MHD_YES;
	if (!port || json_integer_value(port) < 1 || json_integer_value(port) > 65535)
		return omr_api_reply_error(r, 400, "bad_request", "port must be an integer in 1..65535");
	prot = json_object_get(r->json, "protected");
	pub = json_object_get(r->json, "public");
	/* Public unless the caller asks otherwise, in either spelling. */
	protect = json_is_true(prot) || json_is_false(pub);
	if (prot && pub && json_is_true(prot) == json_is_true(pub))
		return omr_api_reply_error(r, 400, "bad_request", "protected and public disagree");
	if (omr_expose_add(r->api->c, id, (unsigned)json_integer_value(port), protect, &e, &err) < 0)
		return omr_api_reply_err(r, &err);
	omr_api_audit(r, "expose", id, e.id);
	return omr_api_reply_json(r, 201, omr_expose_json(r->api->c, id, &e));
}

enum MHD_Result omr_api_exposures_list(struct omr_api_req *r)
{
	const char *id = omr_api_own_sandbox(r);
	struct omr_err *err = NULL;
	json_t *a;

	if (!id)
		return MHD_YES;
	if (!(a = omr_expose_list_json(r->api->c, id, &err)))
		return omr_api_reply_err(r, &err);
	return omr_api_reply_json(r, 200, a);
}

enum MHD_Result omr_api_exposures_delete(struct omr_api_req *r)
{
	const char *id = omr_api_own_sandbox(r), *eid = r->params[1];
	struct omr_err *err = NULL;

	if (!id)
		return MHD_YES;
	if (!omr_expose_id_valid(eid))
		return omr_api_reply_error(r, 404, "not_found", "no such exposure");
	if (omr_expose_remove(r->api->c, id, eid, &err) < 0)
		return omr_api_reply_err(r, &err);
	omr_api_audit(r, "unexpose", id, eid);
	return omr_api_reply_empty(r, 204);
}

/* ---- preview URLs ---- */

struct preview {
	int fd;                 /* the forward, -1 once handed on */
	int upgrade;            /* a WebSocket handshake */
	int failed;             /* the guest stopped taking the body */
	char *rest;             /* answer bytes read past its head */
	size_t rest_len, rest_off;
	int64_t left;           /* Content-Length still to come, -1: to EOF */
};

static void preview_free(struct omr_api_req *r)
{
	struct preview *p = r->ctx;

	if (!p)
		return;
	if (p->fd >= 0)
		close(p->fd);
	free(p->rest);
	free(p);
	r->ctx = NULL;
}

/* The sandbox and port a request is for: its Host header's preview
 * name; on the E2B listener also the E2b-Sandbox-Id and E2b-Sandbox-Port
 * headers when the port is not envd's (the SDK's calls to a server of
 * its own in the guest, runCode's, go there with E2B_SANDBOX_URL set).
 * Returns 0, or -1 for a request of the listener's own routes. */
static int preview_target(struct omr_api *a, struct MHD_Connection *conn, char id[OMR_ID_MAX],
			  unsigned *port)
{
	const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
	const char *sid, *sport;
	uint64_t p;

	if (omr_expose_host_parse(host, a->c->api_domain, id, port, NULL) == 0)
		return 0;
	if (!a->e2b)
		return -1;
	sid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "E2b-Sandbox-Id");
	sport = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "E2b-Sandbox-Port");
	if (!sid || !sport || omr_parse_u64(sport, 1, 65535, &p, "port", NULL) < 0 ||
	    p == OMR_ENVD_PORT || strlen(sid) >= OMR_ID_MAX || !omr_id_valid(sid))
		return -1;
	omr_strlcpy(id, sid, OMR_ID_MAX);
	*port = (unsigned)p;
	return 0;
}

int omr_api_preview_match(struct omr_api *a, struct MHD_Connection *conn)
{
	char id[OMR_ID_MAX];
	unsigned port;

	return preview_target(a, conn, id, &port) == 0;
}

static int hop_by_hop(const char *k)
{
	static const char *const names[] = { "connection", "keep-alive", "proxy-connection",
					     "proxy-authorization", "te", "trailer",
					     "transfer-encoding", "upgrade" };

	for (size_t i = 0; i < OMR_ARRAY_SIZE(names); i++)
		if (!strcasecmp(k, names[i]))
			return 1;
	return 0;
}

struct head {
	char *buf;
	size_t len;
	int overflow;
	int strip_auth;
	/* E2B's SDKs send the owner's OmniRun token in these (runCode's
	 * calls even to a public port): the guest never gets it. */
	int strip_e2b;
};

static void head_add(struct head *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void head_add(struct head *h, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		abort();
	if (h->len + (size_t)n > HEAD_MAX) {
		h->overflow = 1;
	} else {
		h->buf = omr_xrealloc(h->buf, h->len + (size_t)n + 1);
		memcpy(h->buf + h->len, s, (size_t)n + 1);
		h->len += (size_t)n;
	}
	free(s);
}

static enum MHD_Result copy_header(void *cls, enum MHD_ValueKind kind, const char *k,
				   const char *v)
{
	struct head *h = cls;

	(void)kind;
	/* Header values come from the client's request: a CR or LF in them
	 * would let it smuggle a request to the guest. */
	if (!k || !v || strpbrk(k, "\r\n") || strpbrk(v, "\r\n") || hop_by_hop(k) ||
	    !strcasecmp(k, "x-forwarded-for") || !strcasecmp(k, "x-forwarded-host") ||
	    !strcasecmp(k, "x-forwarded-proto") || !strcasecmp(k, "expect") ||
	    (h->strip_auth && !strcasecmp(k, "authorization")) ||
	    (h->strip_e2b && (!strcasecmp(k, "x-api-key") || !strcasecmp(k, "x-access-token") ||
			      !strcasecmp(k, "e2b-traffic-access-token"))))
		return MHD_YES;
	head_add(h, "%s: %s\r\n", k, v);
	return MHD_YES;
}

/* The request's head, as the guest gets it. */
static char *request_head(struct omr_api_req *r, struct preview *p, int strip_auth,
			  size_t *len)
{
	struct head h = { .strip_auth = strip_auth, .strip_e2b = strip_auth || r->api->e2b };
	const char *host = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Host");
	const char *target = r->raw_uri ? r->raw_uri : r->url;

	if (strpbrk(target, "\r\n ") || strpbrk(r->method, "\r\n "))
		return NULL;
	head_add(&h, "%s %s HTTP/1.%d\r\n", r->method, target, p->upgrade ? 1 : 0);
	MHD_get_connection_values(r->conn, MHD_HEADER_KIND, copy_header, &h);
	if (p->upgrade) {
		head_add(&h, "Connection: Upgrade\r\nUpgrade: websocket\r\n");
	} else {
		head_add(&h, "Connection: close\r\n");
	}
	head_add(&h, "X-Forwarded-For: %s\r\nX-Forwarded-Proto: %s\r\nX-Forwarded-Host: %s\r\n\r\n",
		 r->client, r->api->tls ? "https" : "http", host ? host : "");
	if (h.overflow) {
		free(h.buf);
		return NULL;
	}
	*len = h.len;
	return h.buf;
}

static int header_has_token(struct MHD_Connection *c, const char *name, const char *token)
{
	const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
	size_t n = strlen(token);

	for (; v && *v; v++)
		if (!strncasecmp(v, token, n) && (v[n] == 0 || v[n] == ',' || v[n] == ' '))
			return 1;
	return 0;
}

static void conn_in_request(struct omr_api_req *r, int upgraded)
{
	if (!r->cs)
		return;
	pthread_mutex_lock(&r->api->conns_lock);
	r->cs->in_request = 1;
	r->cs->phase_ms = omr_now_ms();
	if (upgraded)
		r->cs->upgraded = 1;
	pthread_mutex_unlock(&r->api->conns_lock);
}

/* The first call: find the exposure, check the caller when it is
 * protected, open the forward and send the head.  Returns 0, or < 0 with
 * the reply queued. */
static int preview_open(struct omr_api_req *r)
{
	const struct omr_config *c = r->api->c;
	char id[OMR_ID_MAX];
	unsigned port;
	struct omr_exposure e;
	struct omr_err *err = NULL;
	const char *te = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Transfer-Encoding");
	_cleanup_free_ char *head = NULL;
	struct preview *p;
	size_t len = 0;
	int rc;

	conn_in_request(r, 0);
	if (preview_target(r->api, r->conn, id, &port) < 0 ||
	    omr_expose_find(c, id, port, &e, NULL) < 0) {
		omr_api_reply_error(r, 404, "not_found", "no such preview");
		return -1;
	}
	if (e.protected_) {
		if (omr_api_authenticate(r) < 0)
			return -1;
		/* Another user's preview is no different from none. */
		if (omr_owner_of(r->api->db, id) != r->user.id) {
			omr_api_reply_error(r, 404, "not_found", "no such preview");
			return -1;
		}
	}
	/* The guest gets HTTP/1.0, whose bodies have a length. */
	if (te && strcasecmp(te, "identity")) {
		omr_api_reply_error(r, 411, "length_required",
				    "a preview takes request bodies with a Content-Length");
		return -1;
	}
	p = omr_xcalloc(1, sizeof(*p));
	p->fd = -1;
	p->left = -1;
	r->ctx = p;
	r->ctx_free = preview_free;
	p->upgrade = !strcmp(r->method, "GET") &&
		     header_has_token(r->conn, "Connection", "upgrade") &&
		     header_has_token(r->conn, "Upgrade", "websocket");
	if (!(head = request_head(r, p, e.protected_, &len))) {
		omr_api_reply_error(r, 400, "bad_request", "the request's head is malformed or too large");
		return -1;
	}
	p->fd = omr_forward_open(c, id, port, &err);
	if (p->fd < 0) {
		omr_api_reply_error(r, 502, "bad_gateway", "%s", err->msg);
		omr_err_free(&err);
		return -1;
	}
	if ((rc = omr_write_all(p->fd, head, len)) < 0) {
		omr_api_reply_error(r, 502, "bad_gateway", "the guest closed the connection");
		return -1;
	}
	return 0;
}

/* Reads the guest's answer head (up to the blank line) into *out,
 * starting with what an earlier head left in p->rest; the bytes after it
 * are kept in p->rest.  Returns its length, or -1. */
static ssize_t read_answer_head(struct preview *p, char **out)
{
	char *buf = omr_xmalloc(HEAD_MAX + 1), *end;
	size_t have = 0;

	if (p->rest) {
		have = p->rest_len - p->rest_off; /* < HEAD_MAX: it came from buf */
		memcpy(buf, p->rest + p->rest_off, have);
		free(p->rest);
		p->rest = NULL;
		p->rest_len = p->rest_off = 0;
	}
	for (;;) {
		ssize_t n;
		if ((end = memmem(buf, have, "\r\n\r\n", 4))) {
			size_t hl = (size_t)(end - buf) + 4;
			p->rest_len = have - hl;
			p->rest = omr_xmalloc(p->rest_len + 1);
			memcpy(p->rest, buf + hl, p->rest_len);
			buf[hl - 2] = 0; /* the head, with its last CRLF */
			*out = buf;
			return (ssize_t)hl;
		}
		if (have == HEAD_MAX)
			break;
		n = read(p->fd, buf + have, HEAD_MAX - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		have += (size_t)n;
	}
	free(buf);
	return -1;
}

static ssize_t body_read(void *cls, uint64_t pos, char *out, size_t max)
{
	struct preview *p = cls;
	ssize_t n;

	(void)pos;
	if (p->left >= 0 && (uint64_t)max > (uint64_t)p->left)
		max = (size_t)p->left;
	if (max == 0 && p->left == 0)
		return MHD_CONTENT_READER_END_OF_STREAM;
	if (p->rest_off < p->rest_len) {
		size_t k = p->rest_len - p->rest_off < max ? p->rest_len - p->rest_off : max;
		memcpy(out, p->rest + p->rest_off, k);
		p->rest_off += k;
		n = (ssize_t)k;
	} else {
		/* Blocking is this connection's thread's to do. */
		do
			n = read(p->fd, out, max);
		while (n < 0 && errno == EINTR);
	}
	if (n > 0) {
		if (p->left > 0)
			p->left -= n;
		return n;
	}
	/* Short of the length it announced: the client must not take it
	 * for the whole answer. */
	return p->left > 0 || n < 0 ? MHD_CONTENT_READER_END_WITH_ERROR
				    : MHD_CONTENT_READER_END_OF_STREAM;
}

static void body_free(void *cls)
{
	struct preview *p = cls;

	if (p->fd >= 0)
		close(p->fd);
	free(p->rest);
	free(p);
}

/* ---- WebSocket: after the 101, bytes both ways ---- */

struct tunnel {
	int fd;                       /* the forward */
	MHD_socket sock;              /* the client's */
	struct MHD_UpgradeResponseHandle *urh;
	char *rest;                   /* guest bytes read past its head */
	size_t rest_len;
	char *extra;                  /* client bytes MHD read past the head */
	size_t extra_len;
};

static int put_all(int fd, const char *b, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static void *tunnel_main(void *arg)
{
	struct tunnel *t = arg;
	char buf[CHUNK];
	int up_open = 1, down_open = 1;

	if (put_all(t->sock, t->rest, t->rest_len) < 0 || put_all(t->fd, t->extra, t->extra_len) < 0)
		up_open = down_open = 0;
	while (up_open || down_open) {
		struct pollfd pf[2] = { { .fd = up_open ? (int)t->sock : -1, .events = POLLIN },
					{ .fd = down_open ? t->fd : -1, .events = POLLIN } };
		if (poll(pf, 2, -1) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < 2; i++) {
			int from = i == 0 ? (int)t->sock : t->fd, to = i == 0 ? t->fd : (int)t->sock;
			int *open_ = i == 0 ? &up_open : &down_open;
			ssize_t n;
			if (!pf[i].revents)
				continue;
			n = recv(from, buf, sizeof(buf), 0);
			if (n > 0 && put_all(to, buf, (size_t)n) == 0)
				continue;
			/* EOF (or a failure) on one side is a half-close on
			 * the other; both closed is the end. */
			*open_ = 0;
			shutdown(to, SHUT_WR);
			if (n < 0)
				up_open = down_open = 0;
		}
	}
	close(t->fd);
	MHD_upgrade_action(t->urh, MHD_UPGRADE_ACTION_CLOSE);
	free(t->rest);
	free(t->extra);
	free(t);
	return NULL;
}

static void on_upgrade(void *cls, struct MHD_Connection *conn, void *req_cls,
		       const char *extra_in, size_t extra_in_size, MHD_socket sock,
		       struct MHD_UpgradeResponseHandle *urh)
{
	struct tunnel *t = cls;
	pthread_attr_t attr;
	pthread_t th;

	(void)conn;
	(void)req_cls;
	t->sock = sock;
	t->urh = urh;
	if (extra_in_size) {
		t->extra = omr_xmalloc(extra_in_size);
		memcpy(t->extra, extra_in, extra_in_size);
		t->extra_len = extra_in_size;
	}
	/* Never block MHD's thread: with TLS it relays the socket itself. */
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	if (pthread_create(&th, &attr, tunnel_main, t) != 0) {
		close(t->fd);
		MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
		free(t->rest);
		free(t->extra);
		free(t);
	}
	pthread_attr_destroy(&attr);
}

/* ---- the answer ---- */

/* The Content-Length of an answer head: >= 0, -1 for none, -2 for a
 * malformed one. */
static int64_t content_length(const char *head)
{
	const char *l = head;
	uint64_t n;

	while ((l = strstr(l, "\r\n"))) {
		l += 2;
		if (!strncasecmp(l, "content-length:", 15)) {
			char num[24];
			size_t k;
			l += 15;
			l += strspn(l, " \t");
			k = strcspn(l, "\r\n \t");
			if (k == 0 || k >= sizeof(num))
				return -2;
			memcpy(num, l, k);
			num[k] = 0;
			return omr_parse_u64(num, 0, INT64_MAX, &n, "length", NULL) < 0 ? -2 : (int64_t)n;
		}
	}
	return -1;
}

static int add_headers(struct MHD_Response *resp, char *head, int upgrade, int64_t *length)
{
	char *save = NULL, *line = strtok_r(head, "\r\n", &save);

	*length = -1;
	for (line = strtok_r(NULL, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save)) {
		char *colon = strchr(line, ':'), *v;
		if (!colon || colon == line)
			return -1;
		*colon = 0;
		for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
			;
		if (!strcasecmp(line, "content-length")) {
			uint64_t n;
			if (omr_parse_u64(v, 0, INT64_MAX, &n, "length", NULL) < 0)
				return -1;
			*length = (int64_t)n;
			continue;
		}
		/* MHD writes Connection itself; the Upgrade of a 101 is ours
		 * to pass on. */
		if (hop_by_hop(line) && !(upgrade && !strcasecmp(line, "upgrade")))
			continue;
		MHD_add_response_header(resp, line, v);
	}
	return 0;
}

static enum MHD_Result preview_answer(struct omr_api_req *r)
{
	struct preview *p = r->ctx;
	_cleanup_free_ char *head = NULL;
	struct MHD_Response *resp;
	unsigned status;
	int64_t length;
	char *copy;

	/* The guest's side of the request is complete; HTTP/1.0 needs no
	 * half-close (and some servers take one for a hang-up). */
	for (;;) {
		if (read_answer_head(p, &head) < 0 ||
		    sscanf(head, "HTTP/1.%*1[01] %3u", &status) != 1 || status < 100 || status > 599)
			return omr_api_reply_error(r, 502, "bad_gateway", "the guest's answer is not "
						   "HTTP (or its head is over 64 KiB)");
		/* Interim answers (100 Continue...) are the guest's business
		 * with us; the client gets the final one. */
		if (status >= 200 || status == 101)
			break;
		free(head);
		head = NULL;
	}
	copy = omr_xstrdup(head);
	if (p->upgrade && status == 101) {
		struct tunnel *t = omr_xcalloc(1, sizeof(*t));
		t->fd = p->fd;
		t->rest = p->rest;
		t->rest_len = p->rest_len;
		resp = MHD_create_response_for_upgrade(on_upgrade, t);
		if (!resp || add_headers(resp, copy, 1, &length) < 0) {
			free(copy);
			free(t);
			if (resp)
				MHD_destroy_response(resp);
			return omr_api_reply_error(r, 502, "bad_gateway", "the guest's 101 is malformed");
		}
		/* The tunnel owns the forward now, and the connection is no
		 * longer the watchdog's to time out. */
		p->fd = -1;
		p->rest = NULL;
		free(copy);
		conn_in_request(r, 1);
		return omr_api_reply_response(r, 101, resp);
	}
	if (status == 101) {
		free(copy);
		return omr_api_reply_error(r, 502, "bad_gateway", "the guest switched protocols unasked");
	}
	/* Known length: MHD sends it and stops there; else the answer ends
	 * at the guest's EOF (chunked toward HTTP/1.1 clients). */
	length = content_length(head);
	if (length == -2) {
		free(copy);
		return omr_api_reply_error(r, 502, "bad_gateway", "the guest's Content-Length is malformed");
	}
	p->left = length;
	resp = MHD_create_response_from_callback(length >= 0 ? (uint64_t)length : MHD_SIZE_UNKNOWN,
						 CHUNK, body_read, p, body_free);
	if (!resp) {
		free(copy);
		return MHD_NO;
	}
	if (add_headers(resp, copy, 0, &length) < 0) {
		free(copy);
		/* Destroying the response frees p (body_free). */
		r->ctx = NULL;
		MHD_destroy_response(resp);
		return omr_api_reply_error(r, 502, "bad_gateway", "the guest's answer head is malformed");
	}
	free(copy);
	/* The response owns p from here (body_free). */
	r->ctx = NULL;
	return omr_api_reply_response(r, status, resp);
}

enum MHD_Result omr_api_preview_hook(struct omr_api_req *r, const char *upload_data,
				     size_t *upload_data_size)
{
	struct preview *p = r->ctx;

	if (r->status)
		goto drop; /* answered already */
	if (!p) {
		if (preview_open(r) < 0)
			goto drop;
		return MHD_YES;
	}
	if (*upload_data_size) {
		/* The body, as it comes; a guest that stopped reading gets
		 * nothing more, and answers (or not) what it has. */
		if (!p->failed && omr_write_all(p->fd, upload_data, *upload_data_size) < 0)
			p->failed = 1;
		*upload_data_size = 0;
		return MHD_YES;
	}
	return preview_answer(r);
drop:
	*upload_data_size = 0;
	return MHD_YES;
}
