/* The HTTP server: libmicrohttpd, routing, authentication, body limits,
 * the request rate, slow clients, the request log; see
 * omnirun/api/api.h.
 *
 * One thread per connection (MHD_USE_THREAD_PER_CONNECTION, bounded by
 * [api] max_connections): a handler calls libcore, which blocks (a boot
 * takes seconds, a command as long as it runs), and a blocked handler
 * must hold up nobody else.  A pool of threads each polling many
 * connections would let one slow call stall every connection of its
 * thread. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api-internal.h"
#include "envd-internal.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/base/json.h"
#include "omnirun/base/ids.h"
#include "omnirun/base/log.h"
#include "omnirun/base/util.h"
#include "omnirun/state/record.h"

/* A slow body: under this many bytes a second, once [api]
 * connection_timeout has passed, the client is dropped. */
#define MIN_BODY_RATE 1024
#define THREAD_STACK (512 * 1024)
/* Room for a request line and headers well past what we accept (a 64 KiB
 * query gets our JSON 400, not MHD's own page). */
#define CONN_MEMORY (256 * 1024)

/* ---- replies ---- */

enum MHD_Result omr_api_reply_response(struct omr_api_req *r, unsigned status,
				       struct MHD_Response *resp)
{
	enum MHD_Result rc;

	if (!resp)
		return MHD_NO;
	r->status = (int)status;
	/* A handler may have run far longer than the idle timeout (a boot,
	 * a command): MHD would take the connection for idle and drop the
	 * answer.  Setting the timeout from 0 restarts its clock. */
	MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
	MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT,
				  (unsigned)r->api->c->api_conn_timeout_s);
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	rc = MHD_queue_response(r->conn, status, resp);
	MHD_destroy_response(resp);
	return rc;
}

enum MHD_Result omr_api_reply_json(struct omr_api_req *r, unsigned status, json_t *body)
{
	char *text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
	struct MHD_Response *resp;
	size_t n;

	json_decref(body);
	if (!text)
		text = omr_xstrdup("{\"error\":\"out of memory\",\"code\":\"fail\"}");
	n = strlen(text);
	text = omr_xrealloc(text, n + 2);
	text[n++] = '\n';
	text[n] = 0;
	resp = MHD_create_response_from_buffer(n, text, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "application/json");
	return omr_api_reply_response(r, status, resp);
}

enum omr_api_style omr_api_style(const struct omr_api_req *r)
{
	const char *p = r->url ? r->url : "";

	if (!r->api->e2b)
		return OMR_STYLE_OMNIRUN;
	if (r->route && r->route->body == OMR_BODY_CONNECT_STREAM)
		return OMR_STYLE_CONNECT_STREAM;
	if (r->route && r->route->body == OMR_BODY_CONNECT)
		return OMR_STYLE_CONNECT;
	/* An envd method we do not know is still a Connect call. */
	if (!r->route && !r->hooked &&
	    (!strncmp(p, "/process.", 9) || !strncmp(p, "/filesystem.", 12)))
		return OMR_STYLE_CONNECT;
	return OMR_STYLE_E2B;
}

/* Connect's code for an error: from our code where it says more than
 * the status, else from the status (connectrpc.com/docs/protocol). */
static const char *connect_code(unsigned status, const char *code)
{
	static const struct { const char *ours, *theirs; } by_code[] = {
		{ "not_running", "failed_precondition" }, { "already_exists", "already_exists" },
		{ "timeout", "deadline_exceeded" }, { "boot_failed", "unavailable" },
		{ "too_large", "resource_exhausted" }, { "limit_reached", "resource_exhausted" },
	};
	for (size_t i = 0; i < OMR_ARRAY_SIZE(by_code); i++)
		if (code && !strcmp(code, by_code[i].ours))
			return by_code[i].theirs;
	switch (status) {
	case 400: return "invalid_argument";
	case 401: return "unauthenticated";
	case 403: return "permission_denied";
	case 404: return "not_found";
	case 409: return "aborted";
	case 429: return "resource_exhausted";
	case 501: return "unimplemented";
	case 503: return "unavailable";
	case 504: return "deadline_exceeded";
	default: return "internal";
	}
}

json_t *omr_api_error_body(const struct omr_api_req *r, unsigned status, const char *code,
			   const char *msg)
{
	switch (omr_api_style(r)) {
	case OMR_STYLE_E2B:
		return json_pack("{s:i, s:s}", "code", (int)status, "message", msg);
	case OMR_STYLE_CONNECT:
	case OMR_STYLE_CONNECT_STREAM:
		return json_pack("{s:s, s:s}", "code", connect_code(status, code), "message", msg);
	default:
		return json_pack("{s:s, s:s}", "error", msg, "code", code);
	}
}

/* A Connect stream that fails before its first message: 200 and the
 * end-of-stream message carrying the error, as the protocol has it. */
static enum MHD_Result reply_stream_error(struct omr_api_req *r, json_t *error)
{
	json_t *end = json_pack("{s:o}", "error", error);
	char *text = json_dumps(end, JSON_COMPACT);
	size_t n = strlen(text);
	uint8_t *buf = omr_xmalloc(n + 5);
	struct MHD_Response *resp;

	json_decref(end);
	omr_connect_envelope(buf, OMR_CONNECT_END_STREAM, n);
	memcpy(buf + 5, text, n);
	free(text);
	resp = MHD_create_response_from_buffer(n + 5, buf, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(buf);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "application/connect+json");
	return omr_api_reply_response(r, 200, resp);
}

enum MHD_Result omr_api_reply_error(struct omr_api_req *r, unsigned status, const char *code,
				    const char *fmt, ...)
{
	char *msg = NULL;
	va_list ap;
	json_t *j;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	j = omr_api_error_body(r, status, code, msg ? msg : "error");
	free(msg);
	if (omr_api_style(r) == OMR_STYLE_CONNECT_STREAM) {
		r->status = (int)status; /* for the log: the wire says 200 */
		enum MHD_Result rc = reply_stream_error(r, j);
		r->status = (int)status;
		return rc;
	}
	return omr_api_reply_json(r, status, j);
}

enum MHD_Result omr_api_reply_err(struct omr_api_req *r, struct omr_err **err)
{
	const struct omr_err_kind_info *k = omr_err_kind_info(omr_err_kind(*err));
	_cleanup_free_ char *msg = omr_str_escape_line(*err && (*err)->msg ? (*err)->msg : "failed");
	unsigned status = (unsigned)k->http_status;
	enum MHD_Result rc;

	/* Our own failures say little: their detail is for the log. */
	if (status >= 500 && status != 501) {
		omr_log(OMR_LOG_WARN, "%s %s: %s", r->method, r->route ? r->route->path : "?", msg);
	}
	rc = omr_api_reply_error(r, status, k->name, "%s", msg);
	omr_err_free(err);
	return rc;
}

enum MHD_Result omr_api_reply_empty(struct omr_api_req *r, unsigned status)
{
	return omr_api_reply_response(
		r, status, MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT));
}

enum MHD_Result omr_api_not_implemented(struct omr_api_req *r)
{
	return omr_api_reply_error(r, 501, "unsupported", "%s %s is not implemented yet",
				   r->method, r->route->path);
}

/* ---- helpers for handlers ---- */

static int type_ok(char t, json_t *v)
{
	switch (t) {
	case 's': return json_is_string(v);
	case 'i': return json_is_integer(v) && json_integer_value(v) >= 0;
	case 'b': return json_is_boolean(v);
	case 'o': return json_is_object(v);
	case 'a': return json_is_array(v);
	default: return 1;
	}
}

static const char *type_name(char t)
{
	switch (t) {
	case 's': return "a string";
	case 'i': return "an integer >= 0";
	case 'b': return "a boolean";
	case 'o': return "an object";
	case 'a': return "an array";
	default: return "anything";
	}
}

int omr_api_check_fields(struct omr_api_req *r, json_t *o, const char *const *fields)
{
	json_t *unknown = json_array(), *wrong = json_array();
	const char *k;
	json_t *v;

	json_object_foreach(o, k, v) {
		size_t kl = strlen(k);
		const char *const *f;

		for (f = fields; *f; f++)
			if (!strncmp(*f, k, kl) && (*f)[kl] == ':')
				break;
		if (!*f) {
			if (json_array_size(unknown) < 32)
				json_array_append_new(unknown, omr_json_text(k, kl));
		} else if (!type_ok((*f)[kl + 1], v)) {
			_cleanup_free_ char *m = omr_strdup_printf("%s must be %s", k,
								   type_name((*f)[kl + 1]));
			json_array_append_new(wrong, json_string(m));
		}
	}
	if (!json_array_size(unknown) && !json_array_size(wrong)) {
		json_decref(unknown);
		json_decref(wrong);
		return 0;
	}
	{
		char u[1024] = "";
		size_t i;
		json_t *x;

		json_array_foreach(unknown, i, x)
			snprintf(u + strlen(u), sizeof(u) - strlen(u), "%s%s", i ? ", " : "",
				 json_string_value(x));
		_cleanup_free_ char *w = json_array_size(wrong) ?
			omr_xstrdup(json_string_value(json_array_get(wrong, 0))) : NULL;
		_cleanup_free_ char *msg = json_array_size(unknown) ?
			omr_strdup_printf("unknown fields: %s", u) : omr_xstrdup(w);
		json_t *body = json_pack("{s:s, s:s}", "error", msg, "code", "bad_request");

		if (json_array_size(unknown))
			json_object_set(body, "unknownFields", unknown);
		if (json_array_size(wrong))
			json_object_set(body, "invalidFields", wrong);
		json_decref(unknown);
		json_decref(wrong);
		omr_api_reply_json(r, 400, body);
	}
	return -1;
}

const char *omr_api_query(struct omr_api_req *r, const char *name, int *has_nul)
{
	const char *v = NULL;
	size_t n = 0;

	if (has_nul)
		*has_nul = 0;
	if (MHD_lookup_connection_value_n(r->conn, MHD_GET_ARGUMENT_KIND, name, strlen(name), &v,
					  &n) != MHD_YES)
		return NULL;
	if (v && strlen(v) != n && has_nul)
		*has_nul = 1;
	return v ? v : "";
}

int omr_api_client_fd(struct omr_api_req *r)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	return ci ? ci->connect_fd : -1;
}

const char *omr_api_own_sandbox(struct omr_api_req *r)
{
	const char *id = r->params[0];

	if (r->signed_ok && id && omr_id_valid(id))
		return id;
	if (!id || !omr_id_valid(id) || omr_owner_of(r->api->db, id) != r->user.id) {
		_cleanup_free_ char *q = omr_str_quote_short(id ? id : "", 64);
		omr_api_reply_error(r, 404, "not_found", "no such sandbox '%s'", q);
		return NULL;
	}
	return id;
}

void omr_api_audit(struct omr_api_req *r, const char *action, const char *target,
		   const char *detail)
{
	struct omr_err *err = NULL;

	if (omr_audit(r->api->db, r->user.id, action, target, detail, &err) < 0) {
		omr_log(OMR_LOG_ERR, "audit %s: %s", action, err->msg);
		omr_err_free(&err);
	}
}

static char *camel_key(const char *k)
{
	char *out = omr_xmalloc(strlen(k) + 1), *o = out;

	for (const char *p = k; *p; p++) {
		if (*p == '_' && p[1] && p != k) {
			p++;
			*o++ = (*p >= 'a' && *p <= 'z') ? (char)(*p - 'a' + 'A') : *p;
		} else {
			*o++ = *p;
		}
	}
	*o = 0;
	return out;
}

json_t *omr_api_camel(json_t *o)
{
	if (json_is_object(o)) {
		json_t *n = json_object(), *v;
		const char *k;

		json_object_foreach(o, k, v) {
			_cleanup_free_ char *ck = camel_key(k);
			json_object_set_new(n, ck, omr_api_camel(v));
		}
		return n;
	}
	if (json_is_array(o)) {
		json_t *n = json_array(), *v;
		size_t i;

		json_array_foreach(o, i, v)
			json_array_append_new(n, omr_api_camel(v));
		return n;
	}
	return json_incref(o);
}

/* ---- routing ---- */

/* Does path match pattern?  Params (":x" segments) are copied to p. */
static int match(const char *pattern, const char *path, char **p)
{
	int np = 0;

	while (*pattern && *path) {
		if (*pattern != '/' || *path != '/')
			return 0;
		pattern++, path++;
		size_t pl = strcspn(pattern, "/"), sl = strcspn(path, "/");
		if (*pattern == ':') {
			if (sl == 0 || np == OMR_API_MAX_PARAMS)
				return 0;
			if (p)
				p[np] = strndup(path, sl);
			np++;
		} else if (pl != sl || strncmp(pattern, path, sl)) {
			goto no;
		}
		pattern += pl, path += sl;
	}
	if (!*pattern && !*path)
		return 1;
no:
	for (int i = 0; p && i < np; i++) {
		free(p[i]);
		p[i] = NULL;
	}
	return 0;
}

json_t *omr_api_routes(void)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < omr_api_route_count; i++) {
		const struct omr_api_route *rt = &omr_api_route_table[i];
		char path[256], *o = path;

		/* :id is {id} in OpenAPI. */
		for (const char *s = rt->path; *s && o < path + sizeof(path) - 2; s++) {
			if (*s == ':') {
				size_t n = strcspn(s + 1, "/");
				o += snprintf(o, (size_t)(path + sizeof(path) - o), "{%.*s}", (int)n, s + 1);
				s += n;
			} else {
				*o++ = *s;
			}
		}
		*o = 0;
		json_array_append_new(arr, json_pack("{s:s, s:s}", "method", rt->method, "path", path));
	}
	return arr;
}

/* Finds the route of r; queues 404 or 405 when there is none. */
static int route(struct omr_api_req *r)
{
	_cleanup_free_ char *path = NULL;
	char allow[128] = "";
	size_t n = strcspn(r->url, "?");

	path = strndup(r->url, n);
	/* One trailing slash is forgiven: /sandboxes/ is /sandboxes. */
	if (n > 1 && path[n - 1] == '/')
		path[n - 1] = 0;
	for (size_t i = 0; i < r->api->nroutes; i++) {
		const struct omr_api_route *rt = &r->api->routes[i];

		if (!match(rt->path, path, NULL))
			continue;
		if (strcmp(rt->method, r->method)) {
			if (!strstr(allow, rt->method) && strlen(allow) + strlen(rt->method) + 3 < sizeof(allow))
				snprintf(allow + strlen(allow), sizeof(allow) - strlen(allow), "%s%s",
					 *allow ? ", " : "", rt->method);
			continue;
		}
		match(rt->path, path, r->params);
		r->route = rt;
		return 0;
	}
	/* E2B's SDKs call routes OmniRun does not serve (templates,
	 * snapshots, volumes...): they are told so plainly. */
	if (r->api->e2b) {
		_cleanup_free_ char *q = omr_str_quote_short(path, 80);
		omr_api_reply_error(r, 501, "unsupported", "%s %s is not supported by OmniRun's "
				    "E2B endpoint (doc/e2b.md)", r->method, q);
		return -1;
	}
	if (*allow) {
		json_t *j = omr_api_error_body(r, 405, "bad_request", "method not allowed");
		char *text = json_dumps(j, JSON_COMPACT);
		struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(text), text,
									    MHD_RESPMEM_MUST_FREE);
		json_decref(j);
		MHD_add_response_header(resp, "Allow", allow);
		MHD_add_response_header(resp, "Content-Type", "application/json");
		omr_api_reply_response(r, 405, resp);
		return -1;
	}
	omr_api_reply_error(r, 404, "not_found", "no such route");
	return -1;
}

/* ---- authentication and the request rate ---- */

struct omr_api_bucket {
	int64_t token_id;
	double tokens;
	uint64_t at_ms;
};

/* Token bucket per token: [api] rate a second, [api] rate_burst at once.
 * Returns 0, or the seconds to wait. */
static unsigned rate_take(struct omr_api *a, int64_t token_id)
{
	struct omr_api_bucket *b;
	uint64_t now = omr_now_ms();
	double rate = a->c->api_rate, burst = a->c->api_rate_burst;
	unsigned wait = 0;

	pthread_mutex_lock(&a->rate_lock);
	/* Open addressing on the token id; a full table forgets everything
	 * (at worst a burst more for everyone), bounded memory always. */
	size_t i = (size_t)token_id % a->nbuckets, tries = 0;
	while (a->buckets[i].token_id && a->buckets[i].token_id != token_id && tries < a->nbuckets)
		i = (i + 1) % a->nbuckets, tries++;
	if (tries == a->nbuckets) {
		memset(a->buckets, 0, a->nbuckets * sizeof(*a->buckets));
		i = (size_t)token_id % a->nbuckets;
	}
	b = &a->buckets[i];
	if (b->token_id != token_id) {
		b->token_id = token_id;
		b->tokens = burst;
		b->at_ms = now;
	}
	b->tokens += (double)(now - b->at_ms) * rate / 1000.0;
	if (b->tokens > burst)
		b->tokens = burst;
	b->at_ms = now;
	if (b->tokens >= 1.0)
		b->tokens -= 1.0;
	else
		wait = (unsigned)((1.0 - b->tokens) / rate) + 1;
	pthread_mutex_unlock(&a->rate_lock);
	return wait;
}

/* The token of the request: the Authorization header's bearer, else the
 * session cookie. */
static const char *presented_token(struct omr_api_req *r)
{
	const char *h;

	/* E2B's SDKs send the API key in X-API-KEY and, on envd calls, the
	 * envdAccessToken the create gave them (the same token) in
	 * X-Access-Token; their Authorization header names a guest user. */
	if (r->api->e2b) {
		h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-API-KEY");
		if (!h)
			h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Access-Token");
		/* A request to a protected port (getHost) carries the
		 * trafficAccessToken the create answered. */
		if (!h && r->hooked)
			h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
							"e2b-traffic-access-token");
		return h;
	}
	h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);

	if (h) {
		if (strncasecmp(h, "Bearer ", 7))
			return NULL;
		h += 7;
		while (*h == ' ')
			h++;
		return h;
	}
	return MHD_lookup_connection_value(r->conn, MHD_COOKIE_KIND, "omnirun_token");
}

static int authenticate(struct omr_api_req *r)
{
	const char *tok = presented_token(r);
	struct omr_err *err = NULL;
	unsigned wait;

	if (!tok) {
		omr_api_reply_error(r, 401, "unauthorized", r->api->e2b ?
				    "missing token: send X-API-KEY: omr_..." :
				    "missing token: send Authorization: Bearer omr_...");
		return -1;
	}
	if (omr_token_check(r->api->db, tok, &r->user, &r->token_id, &err) < 0) {
		if (omr_err_kind(err) == OMR_E_DENIED)
			omr_api_reply_error(r, 401, "unauthorized", "invalid or revoked token");
		else
			omr_api_reply_err(r, &err);
		omr_err_free(&err);
		return -1;
	}
	r->authed = 1;
	wait = rate_take(r->api, r->token_id);
	if (wait) {
		json_t *j = omr_api_error_body(r, 429, "limit_reached", "request rate limit reached");
		char *text = json_dumps(j, JSON_COMPACT), ra[16];
		struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(text), text,
									    MHD_RESPMEM_MUST_FREE);
		json_decref(j);
		snprintf(ra, sizeof(ra), "%u", wait);
		MHD_add_response_header(resp, "Retry-After", ra);
		MHD_add_response_header(resp, "Content-Type", "application/json");
		omr_api_reply_response(r, 429, resp);
		return -1;
	}
	return 0;
}

int omr_api_authenticate(struct omr_api_req *r)
{
	return authenticate(r);
}

/* ---- the request's life ---- */

/* The request target as the client sent it (MHD gives handlers the path
 * without its query): kept per thread, one connection per thread, from
 * MHD's URI callback to the request's first call; a thread that ends
 * before that frees it (the key's destructor). */
static pthread_key_t uri_key;
static pthread_once_t uri_once = PTHREAD_ONCE_INIT;

static void uri_key_make(void)
{
	if (pthread_key_create(&uri_key, free) != 0)
		abort();
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
	(void)cls;
	(void)conn;
	pthread_once(&uri_once, uri_key_make);
	free(pthread_getspecific(uri_key));
	pthread_setspecific(uri_key, strdup(uri));
	return NULL;
}

static void peer_of(struct MHD_Connection *conn, char *out, size_t n)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci ? ci->client_addr : NULL;

	snprintf(out, n, "?");
	if (sa && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)n);
	else if (sa && sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)n);
}

static struct omr_api_req *req_new(struct omr_api *a, struct MHD_Connection *conn,
				   const char *method, const char *url)
{
	struct omr_api_req *r = omr_xcalloc(1, sizeof(*r));
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	r->api = a;
	r->conn = conn;
	r->method = method;
	r->url = url;
	r->t0 = omr_now_ms();
	r->sink_fd = -1;
	r->cs = ci ? ci->socket_context : NULL;
	pthread_once(&uri_once, uri_key_make);
	r->raw_uri = pthread_getspecific(uri_key);
	pthread_setspecific(uri_key, NULL);
	peer_of(conn, r->client, sizeof(r->client));
	return r;
}

static void req_free(struct omr_api_req *r)
{
	if (r->ctx_free)
		r->ctx_free(r);
	if (r->sink_fd >= 0)
		close(r->sink_fd);
	for (int i = 0; i < OMR_API_MAX_PARAMS; i++)
		free(r->params[i]);
	free(r->raw_uri);
	free(r->body);
	json_decref(r->json);
	free(r);
}

/* The first call: the headers are in. */
static enum MHD_Result on_headers(struct omr_api_req *r)
{
	const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
						     MHD_HTTP_HEADER_CONTENT_LENGTH);
	uint64_t len = 0;

	if (r->cs) {
		pthread_mutex_lock(&r->api->conns_lock);
		r->cs->in_request = 1;
		pthread_mutex_unlock(&r->api->conns_lock);
	}
	if (route(r) < 0)
		return MHD_YES;
	if (!r->route->public && authenticate(r) < 0)
		return MHD_YES;
	if (cl && omr_parse_u64(cl, 0, UINT64_MAX, &len, "length", NULL) < 0)
		len = 0;
	switch (r->route->body) {
	case OMR_BODY_JSON:
	case OMR_BODY_CONNECT:
	case OMR_BODY_CONNECT_STREAM:
		r->body_max = (size_t)r->api->c->api_max_body_kb << 10;
		if (len > r->body_max)
			return omr_api_reply_error(r, 413, "too_large", "request body over %u KiB",
						   r->api->c->api_max_body_kb);
		break;
	case OMR_BODY_RAW:
		if (len > (uint64_t)r->api->c->api_max_upload_mb << 20)
			return omr_api_reply_error(r, 413, "too_large", "upload over %u MiB",
						   r->api->c->api_max_upload_mb);
		if (r->cs) {
			pthread_mutex_lock(&r->api->conns_lock);
			r->cs->streaming_body = 1;
			r->cs->phase_ms = omr_now_ms();
			pthread_mutex_unlock(&r->api->conns_lock);
		}
		return r->route->begin(r);
	default:
		break;
	}
	return MHD_YES;
}

/* A chunk of body. */
static void on_body(struct omr_api_req *r, const char *data, size_t n)
{
	if (r->cs) {
		pthread_mutex_lock(&r->api->conns_lock);
		r->cs->body_bytes += n;
		pthread_mutex_unlock(&r->api->conns_lock);
	}
	switch (r->route->body) {
	case OMR_BODY_JSON:
	case OMR_BODY_CONNECT:
	case OMR_BODY_CONNECT_STREAM:
		if (r->too_large || r->body_len + n > r->body_max) {
			r->too_large = 1;
			return;
		}
		r->body = omr_xrealloc(r->body, r->body_len + n + 1);
		memcpy(r->body + r->body_len, data, n);
		r->body_len += n;
		r->body[r->body_len] = 0;
		return;
	case OMR_BODY_RAW:
		r->sink_bytes += n;
		if (r->sink_bytes > (uint64_t)r->api->c->api_max_upload_mb << 20)
			r->too_large = 1;
		/* A sink that stopped (the transfer failed) takes nothing
		 * more; the rest of the body is read and dropped. */
		if (r->on_chunk && !r->sink_failed && !r->too_large) {
			if (r->on_chunk(r, data, n) < 0)
				r->sink_failed = 1;
		} else if (r->sink_fd >= 0 && !r->sink_failed && !r->too_large &&
			   omr_write_all(r->sink_fd, data, n) < 0) {
			r->sink_failed = 1;
		}
		return;
	default:
		return;
	}
}

/* The JSON of a Connect stream request: one message in one envelope,
 * uncompressed.  Returns 0 (r->body then holds the JSON alone) or < 0
 * with the reply queued. */
static int connect_unwrap(struct omr_api_req *r)
{
	uint8_t flags;
	uint32_t len;

	if (omr_connect_envelope_parse((const uint8_t *)r->body, r->body_len, &flags, &len) < 0 ||
	    flags != 0 || (size_t)len != r->body_len - 5) {
		omr_api_reply_error(r, 400, "bad_request", "the body is not one uncompressed "
				    "Connect envelope");
		return -1;
	}
	memmove(r->body, r->body + 5, len);
	r->body_len = len;
	r->body[len] = 0;
	return 0;
}

static enum MHD_Result on_complete(struct omr_api_req *r)
{
	enum omr_api_body kind = r->route->body;
	json_error_t je;

	r->done = 1;
	if (kind == OMR_BODY_JSON || kind == OMR_BODY_CONNECT || kind == OMR_BODY_CONNECT_STREAM) {
		if (r->too_large)
			return omr_api_reply_error(r, 413, "too_large", "request body over %u KiB",
						   r->api->c->api_max_body_kb);
		if (kind == OMR_BODY_CONNECT_STREAM && connect_unwrap(r) < 0)
			return MHD_YES;
		if (r->body_len) {
			r->json = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &je);
			if (!r->json)
				return omr_api_reply_error(r, 400, "bad_request", "malformed JSON: %s (at %d:%d)",
							   je.text, je.line, je.column);
		} else {
			r->json = json_object();
		}
		if (!json_is_object(r->json))
			return omr_api_reply_error(r, 400, "bad_request", "the body must be a JSON object");
	}
	if (r->route->body == OMR_BODY_RAW && r->too_large)
		return omr_api_reply_error(r, 413, "too_large", "upload over %u MiB",
					   r->api->c->api_max_upload_mb);
	return r->route->handler(r);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version,
				  const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	struct omr_api *a = cls;
	struct omr_api_req *r = *con_cls;

	(void)version;
	if (!r) {
		r = req_new(a, conn, method, url);
		*con_cls = r;
		if (a->host_match && a->host_match(a, conn)) {
			r->hooked = 1;
			return a->host_hook(r, upload_data, upload_data_size);
		}
		return on_headers(r);
	}
	if (r->hooked)
		return a->host_hook(r, upload_data, upload_data_size);
	if (*upload_data_size) {
		if (!r->status)
			on_body(r, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (r->status)
		return MHD_YES; /* answered already (an early error) */
	return on_complete(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct omr_api *a = cls;
	struct omr_api_req *r = *con_cls;

	(void)conn;
	if (!r)
		return;
	if (!r->done && r->route && r->route->abort && toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
		r->route->abort(r);
	/* Never the URL's query, a header, a body: the route names what was
	 * asked, the user who asked. */
	omr_log(OMR_LOG_DEBUG, "request ends: termination code %d, body done %d", (int)toe, r->done);
	omr_log(OMR_LOG_INFO, "%s %s %d %llu ms user=%lld%s", r->method,
		r->route ? r->route->path : r->hooked ? "(preview)" : "(none)",
		r->status, (unsigned long long)(omr_now_ms() - r->t0),
		r->authed ? (long long)r->user.id : 0LL,
		toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" :
		toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ? " (timed out)" : " (aborted)");
	if (r->cs) {
		pthread_mutex_lock(&a->conns_lock);
		r->cs->in_request = 0;
		r->cs->streaming_body = 0;
		r->cs->body_bytes = 0;
		r->cs->phase_ms = omr_now_ms();
		pthread_mutex_unlock(&a->conns_lock);
	}
	req_free(r);
	*con_cls = NULL;
}

/* ---- slow clients ---- */

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			  enum MHD_ConnectionNotificationCode code)
{
	struct omr_api *a = cls;
	struct omr_api_conn *cs = *socket_context;

	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
		cs = omr_xcalloc(1, sizeof(*cs));
		cs->fd = ci ? ci->connect_fd : -1;
		cs->phase_ms = omr_now_ms();
		pthread_mutex_lock(&a->conns_lock);
		cs->next = a->conns;
		if (a->conns)
			a->conns->prev = cs;
		a->conns = cs;
		pthread_mutex_unlock(&a->conns_lock);
		*socket_context = cs;
		return;
	}
	if (!cs)
		return;
	/* Out of the list before MHD closes the socket: the watchdog never
	 * shuts down an fd that has become someone else's. */
	pthread_mutex_lock(&a->conns_lock);
	if (cs->prev)
		cs->prev->next = cs->next;
	else
		a->conns = cs->next;
	if (cs->next)
		cs->next->prev = cs->prev;
	pthread_mutex_unlock(&a->conns_lock);
	free(cs);
	*socket_context = NULL;
}

/* MHD's own timeout is for idle connections: a client that sends a byte
 * a second is never idle.  So headers must be complete within [api]
 * connection_timeout, and an upload must keep MIN_BODY_RATE on average
 * after it; a client that does not is shut down (its thread then sees
 * the socket fail and cleans up as for any hang-up). */
static void *watchdog(void *p)
{
	struct omr_api *a = p;
	uint64_t limit = (uint64_t)a->c->api_conn_timeout_s * 1000;

	while (__atomic_load_n(&a->watchdog_run, __ATOMIC_ACQUIRE)) {
		uint64_t now = omr_now_ms();

		pthread_mutex_lock(&a->conns_lock);
		for (struct omr_api_conn *cs = a->conns; cs; cs = cs->next) {
			uint64_t age = now - cs->phase_ms;
			int slow = 0;

			if (cs->upgraded)
				continue;
			if (!cs->in_request && age > limit)
				slow = 1; /* headers not in */
			else if (cs->streaming_body && age > limit &&
				 cs->body_bytes * 1000 < age * MIN_BODY_RATE)
				slow = 1;
			if (slow && cs->fd >= 0) {
				shutdown(cs->fd, SHUT_RDWR);
				cs->fd = -1;
			}
		}
		pthread_mutex_unlock(&a->conns_lock);
		usleep(250000);
	}
	return NULL;
}

/* ---- start and stop ---- */

static int parse_listen(const char *s, struct sockaddr_storage *ss, struct omr_err **err)
{
	_cleanup_free_ char *host = NULL;
	const char *colon = strrchr(s, ':');
	uint64_t port;

	memset(ss, 0, sizeof(*ss));
	if (!colon || omr_parse_u64(colon + 1, 0, 65535, &port, "port", NULL) < 0)
		goto bad;
	host = strndup(s, (size_t)(colon - s));
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		host[strlen(host) - 1] = 0;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host + 1, &s6->sin6_addr) != 1)
			goto bad;
		return 0;
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	s4->sin_family = AF_INET;
	s4->sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
		goto bad;
	return 0;
bad:
	return omr_err_setx(err, OMR_E_USAGE, EINVAL, "invalid listen address '%s': "
			    "ADDR:PORT or [ADDR6]:PORT", s);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];
	size_t n;

	(void)cls;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n && buf[n - 1] == '\n')
		buf[--n] = 0;
	omr_log(OMR_LOG_DEBUG, "microhttpd: %s", buf);
}

static int start(const struct omr_config *c, const char *listen, int e2b, struct omr_api **out,
		 struct omr_err **err)
{
	struct omr_api *a = omr_xcalloc(1, sizeof(*a));
	struct sockaddr_storage ss;
	unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
			 MHD_USE_ERROR_LOG | MHD_USE_POLL | MHD_ALLOW_UPGRADE;

	a->c = c;
	a->e2b = e2b;
	a->routes = e2b ? omr_api_e2b_route_table : omr_api_route_table;
	a->nroutes = e2b ? omr_api_e2b_route_count : omr_api_route_count;
	pthread_mutex_init(&a->conns_lock, NULL);
	pthread_mutex_init(&a->rate_lock, NULL);
	a->nbuckets = 4096;
	a->buckets = omr_xcalloc(a->nbuckets, sizeof(*a->buckets));
	if (!listen)
		listen = e2b ? c->e2b_listen : c->api_listen;
	if (!listen) {
		omr_err_setx(err, OMR_E_USAGE, EINVAL, "no address to listen on");
		goto fail;
	}
	if (parse_listen(listen, &ss, err) < 0)
		goto fail;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if (!c->api_tls_cert != !c->api_tls_key) {
		omr_err_setx(err, OMR_E_USAGE, EINVAL, "[api] tls_cert and tls_key go together");
		goto fail;
	}
	if (c->api_tls_cert) {
		if (omr_read_file_at(AT_FDCWD, c->api_tls_cert, 1 << 20, &a->cert, NULL, err) < 0 ||
		    omr_read_file_at(AT_FDCWD, c->api_tls_key, 1 << 20, &a->key, NULL, err) < 0)
			goto fail;
		flags |= MHD_USE_TLS;
		a->tls = 1;
	}
	if (omr_db_open(c, NULL, &a->db, err) < 0)
		goto fail;
	/* What state says is live is what the shim serves: a restart finds
	 * every sandbox again, ended ones become history. */
	omr_owner_sync(a->db, c, 0, NULL);
	/* Preview URLs (DESIGN.md §6), on both listeners: E2B's getHost()
	 * names the E2B one (E2B_SANDBOX_URL), OmniRun's its own. */
	a->host_match = omr_api_preview_match;
	a->host_hook = omr_api_preview_hook;
	a->watchdog_run = 1;
	if (pthread_create(&a->watchdog, NULL, watchdog, a) != 0) {
		a->watchdog_run = 0;
		omr_err_setx(err, OMR_E_FAIL, EAGAIN, "cannot start a thread");
		goto fail;
	}
	a->d = MHD_start_daemon(
		flags, 0, NULL, NULL, on_request, a,
		MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)c->api_threads,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)c->api_conn_timeout_s,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY,
		MHD_OPTION_THREAD_STACK_SIZE, (size_t)THREAD_STACK,
		MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, a,
		MHD_OPTION_NOTIFY_CONNECTION, on_connection, a,
		MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL,
		MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
		a->tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, a->cert,
		MHD_OPTION_HTTPS_MEM_KEY, a->key,
		MHD_OPTION_END);
	if (!a->d) {
		omr_err_set(err, errno == EADDRINUSE ? OMR_E_STATE : OMR_E_FAIL, errno,
			    "cannot listen on %s", listen);
		goto fail;
	}
	{
		const union MHD_DaemonInfo *di = MHD_get_daemon_info(a->d, MHD_DAEMON_INFO_BIND_PORT);
		a->port = di ? di->port : 0;
	}
	*out = a;
	return 0;
fail:
	omr_api_stop(a);
	return -1;
}

int omr_api_start(const struct omr_config *c, const char *listen, struct omr_api **out,
		  struct omr_err **err)
{
	return start(c, listen, 0, out, err);
}

int omr_api_start_e2b(const struct omr_config *c, const char *listen, struct omr_api **out,
		      struct omr_err **err)
{
	return start(c, listen, 1, out, err);
}

unsigned omr_api_port(const struct omr_api *a)
{
	return a->port;
}

void omr_api_stop(struct omr_api *a)
{
	if (!a)
		return;
	if (a->d)
		MHD_stop_daemon(a->d);
	if (a->watchdog_run) {
		__atomic_store_n(&a->watchdog_run, 0, __ATOMIC_RELEASE);
		pthread_join(a->watchdog, NULL);
	}
	omr_db_close(a->db);
	if (a->key)
		explicit_bzero(a->key, strlen(a->key));
	free(a->key);
	free(a->cert);
	free(a->buckets);
	pthread_mutex_destroy(&a->conns_lock);
	pthread_mutex_destroy(&a->rate_lock);
	free(a);
}

/* ---- two routes of the server itself ---- */

enum MHD_Result omr_api_healthz(struct omr_api_req *r)
{
	return omr_api_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

enum MHD_Result omr_api_openapi(struct omr_api_req *r)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(
		strlen(omr_api_openapi_json), (void *)omr_api_openapi_json, MHD_RESPMEM_PERSISTENT);

	MHD_add_response_header(resp, "Content-Type", "application/json");
	return omr_api_reply_response(r, 200, resp);
}
