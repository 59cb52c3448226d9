/* The E2B-compatible listener's REST routes (doc/e2b.md): E2B's
 * sandboxes API mapped onto OmniRun's sandboxes, for the same users,
 * limits, history and audit as OmniRun's own API.  The envd routes
 * (commands and files inside a sandbox) are envd.c's; both share the
 * table below.  E2B's API is described by E2B's OpenAPI document, not by
 * doc/openapi.yaml, so --print-routes and the route test leave it out. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api-internal.h"
#include "envd-internal.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/base/ids.h"
#include "omnirun/base/log.h"
#include "omnirun/base/util.h"
#include "omnirun/client/sandbox.h"
#include "omnirun/state/expose.h"
#include "omnirun/state/record.h"

#define LIST_MAX 100

/* ---- shapes ---- */

/* A sandbox as E2B's SandboxDetail / ListedSandbox (new ref). */
/* E2B has one paused state: in memory (sbx-pause) or on disk (--persist). */
static int paused(const struct omr_sandbox *sb)
{
	return sb->state == OMR_SB_PAUSED || sb->state == OMR_SB_PERSISTED;
}

static json_t *e2b_sandbox_json(struct omr_api *a, const struct omr_sandbox *sb)
{
	char started[32], end[32];
	_cleanup_free_ char *m = omr_owner_metadata(a->db, sb->id);
	json_t *meta = m ? json_loads(m, 0, NULL) : NULL;

	omr_format_time(sb->created_at, started);
	omr_format_time(sb->expires_at, end);
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:o, s:s, s:s, s:s}",
			 "templateID", sb->template_name, "sandboxID", sb->id, "clientID",
			 "omnirun", "startedAt", started, "endAt", end, "cpuCount", sb->cpus,
			 "memoryMB", sb->memory_mb, "diskSizeMB", sb->disk_mb, "metadata",
			 json_is_object(meta) ? meta : (json_decref(meta), json_object()),
			 "state", paused(sb) ? "paused" : "running", "envdVersion",
			 OMR_ENVD_VERSION, "domain", a->c->api_domain);
}

/* What create and connect answer: the sandbox, the token envd calls
 * are to carry (the caller's own: they hold it already, and it is what
 * every envd call is authenticated and owned by), and the domain of
 * getHost(port): OmniRun's preview URLs'.  When its ports are protected
 * the same token is the trafficAccessToken a request to one of them
 * carries. */
static json_t *e2b_created_json(struct omr_api_req *r, const struct omr_sandbox *sb)
{
	const char *tok = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-API-KEY");
	struct omr_exposure e;
	json_t *j;

	j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "templateID", sb->template_name,
		      "sandboxID", sb->id, "clientID", "omnirun", "envdVersion", OMR_ENVD_VERSION,
		      "envdAccessToken", tok ? tok : "", "domain", r->api->c->api_domain);
	if (omr_expose_find(r->api->c, sb->id, OMR_EXPOSE_ALL, &e, NULL) == 0 &&
	    e.port == OMR_EXPOSE_ALL && e.protected_)
		json_object_set_new(j, "trafficAccessToken", json_string(tok ? tok : ""));
	return j;
}

/* ---- create ---- */

/* network: OmniRun takes allowPublicTraffic alone (*protect: 1 when
 * false); egress rules are E2B's firewall, which OmniRun does not
 * have.  Returns 0, or < 0 with the reply queued. */
static int network_opts(struct omr_api_req *r, json_t *b, int *protect)
{
	json_t *n = json_object_get(b, "network"), *pub;

	*protect = 0;
	if (!n || json_is_null(n))
		return 0;
	if (!json_is_object(n)) {
		omr_api_reply_error(r, 400, "bad_request", "network must be an object");
		return -1;
	}
	pub = json_object_get(n, "allowPublicTraffic");
	if (json_object_size(n) > (pub ? 1u : 0u)) {
		omr_api_reply_error(r, 501, "unsupported", "network rules other than "
				    "allowPublicTraffic are not supported by OmniRun");
		return -1;
	}
	if (pub && !json_is_boolean(pub)) {
		omr_api_reply_error(r, 400, "bad_request", "allowPublicTraffic must be a boolean");
		return -1;
	}
	*protect = json_is_false(pub);
	return 0;
}

/* A member E2B sends that OmniRun cannot honour: refused with a 501
 * rather than ignored.  "Empty" values (null, false, {}, []) are fine. */
static int refuse_if_set(struct omr_api_req *r, json_t *b, const char *key, const char *what)
{
	json_t *v = json_object_get(b, key);

	if (!v || json_is_null(v) || json_is_false(v) ||
	    ((json_is_object(v) || json_is_array(v)) && !json_object_size(v) && !json_array_size(v)))
		return 0;
	omr_api_reply_error(r, 501, "unsupported", "%s (%s) is not supported by OmniRun", what, key);
	return -1;
}

static enum MHD_Result e2b_create(struct omr_api_req *r)
{
	json_t *b = r->json, *v, *meta = json_object_get(b, "metadata");
	const char *name = json_string_value(json_object_get(b, "templateID"));
	_cleanup_free_ char *mapped = NULL;
	struct omr_create_opts o = { 0 };
	struct omr_sandbox sb;
	struct omr_exposure e;
	struct omr_err *err = NULL;
	const char *k;
	int protect;

	if (!name)
		return omr_api_reply_error(r, 400, "bad_request", "templateID must be a string");
	if (refuse_if_set(r, b, "envVars", "sandbox-wide environment variables") < 0 ||
	    refuse_if_set(r, b, "autoPause", "pausing on timeout") < 0 ||
	    refuse_if_set(r, b, "autoResume", "resuming on traffic") < 0 ||
	    refuse_if_set(r, b, "mcp", "the MCP gateway") < 0 ||
	    refuse_if_set(r, b, "volumeMounts", "volumes") < 0 ||
	    network_opts(r, b, &protect) < 0 ||
	    refuse_if_set(r, b, "iam", "workload identity") < 0)
		return MHD_YES;
	if (meta && !json_is_object(meta))
		return omr_api_reply_error(r, 400, "bad_request", "metadata must be an object");
	json_object_foreach(meta, k, v)
		if (!json_is_string(v))
			return omr_api_reply_error(r, 400, "bad_request", "metadata values are strings");
	if ((v = json_object_get(b, "timeout"))) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > (json_int_t)UINT32_MAX - 1)
			return omr_api_reply_error(r, 400, "bad_request", "timeout must be an integer "
						   "of seconds");
		o.timeout_s = (unsigned)json_integer_value(v);
	}
	/* E2B's default is online; OmniRun's is air-gapped, and only an
	 * explicit request turns the internet on. */
	o.internet = json_is_true(json_object_get(b, "allow_internet_access"));
	mapped = omr_config_e2b_template(r->api->c, name);
	o.template_name = mapped ? mapped : name;
	if (omr_api_sandbox_spawn(r, &o, meta, &sb) < 0)
		return MHD_YES;
	/* E2B offers every port of a sandbox at getHost(port), to anyone
	 * unless allowPublicTraffic is false: that is the owner's choice
	 * made at create, kept as an exposure of every port, which they see
	 * and may remove as any other (sbx-net, the exposures routes). */
	if (omr_expose_add(r->api->c, sb.id, OMR_EXPOSE_ALL, protect, &e, &err) < 0) {
		omr_sandbox_kill(r->api->c, sb.id, "killed", NULL);
		omr_owner_ended(r->api->db, sb.id, sb.created_at, "killed", -1, NULL);
		return omr_api_reply_err(r, &err);
	}
	omr_api_audit(r, "expose", sb.id, e.id);
	return omr_api_reply_json(r, 201, e2b_created_json(r, &sb));
}

/* ---- one sandbox ---- */

/* The caller's live sandbox :id into *sb; else a 404 is queued (E2B's
 * SDKs take a 404 for "not found or no longer running"). */
static int live_sandbox(struct omr_api_req *r, struct omr_sandbox *sb)
{
	const char *id = omr_api_own_sandbox(r);
	struct omr_err *err = NULL;

	if (!id)
		return -1;
	if (omr_sandbox_load(r->api->c, id, sb, &err) < 0)
		return omr_api_reply_err(r, &err), -1;
	if (sb->state == OMR_SB_STOPPED) {
		omr_api_reply_error(r, 404, "not_found", "sandbox '%s' has ended (%s)", id,
				    sb->end_reason);
		return -1;
	}
	return 0;
}

static enum MHD_Result e2b_get(struct omr_api_req *r)
{
	struct omr_sandbox sb;

	if (live_sandbox(r, &sb) < 0)
		return MHD_YES;
	return omr_api_reply_json(r, 200, e2b_sandbox_json(r->api, &sb));
}

/* The lifetime of a running sandbox cannot be changed in libcore yet
 * (issue 9 brings it as sbx-timeout): this is the one place to call it
 * from once it exists.  Until then the answer is a 501 that says so. */
/* E2B's timeout is the sandbox's remaining lifetime from now, as
 * sbx-timeout sets it (bounded by [sandbox] max_timeout). */
static int set_lifetime(struct omr_api_req *r, const struct omr_sandbox *sb, unsigned timeout_s)
{
	struct omr_err *err = NULL;

	if (omr_sandbox_set_timeout(r->api->c, sb->id, timeout_s, NULL, &err) < 0)
		return omr_api_reply_err(r, &err), -1;
	return 0;
}

/* The timeout member of r's body: 1 with *out, 0 when absent, < 0 with
 * a 400 queued. */
static int body_timeout(struct omr_api_req *r, unsigned *out)
{
	json_t *v = json_object_get(r->json, "timeout");

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) > (json_int_t)UINT32_MAX - 1) {
		omr_api_reply_error(r, 400, "bad_request", "timeout must be an integer of seconds");
		return -1;
	}
	*out = (unsigned)json_integer_value(v);
	return 1;
}

static enum MHD_Result e2b_timeout(struct omr_api_req *r)
{
	struct omr_sandbox sb;
	unsigned t = 0;
	int has;

	if (live_sandbox(r, &sb) < 0 || (has = body_timeout(r, &t)) < 0)
		return MHD_YES;
	if (!has)
		return omr_api_reply_error(r, 400, "bad_request", "timeout is missing");
	if (set_lifetime(r, &sb, t) < 0)
		return MHD_YES;
	omr_api_audit(r, "timeout", sb.id, NULL);
	return omr_api_reply_empty(r, 204);
}

/* Hands a live sandbox back as a create answers (with status), resuming
 * it first when it was paused or persisted; a timeout in the body sets
 * its lifetime.  must_be_paused: a running one is a 409 (E2B's older
 * resume route) instead of handed back (its connect). */
static enum MHD_Result wake(struct omr_api_req *r, int must_be_paused, unsigned status)
{
	struct omr_sandbox sb;
	struct omr_err *err = NULL;
	unsigned t = 0;
	int has;

	if (live_sandbox(r, &sb) < 0 || (has = body_timeout(r, &t)) < 0)
		return MHD_YES;
	if (must_be_paused && !paused(&sb))
		return omr_api_reply_error(r, 409, "conflict", "sandbox %s is not paused", sb.id);
	if (paused(&sb)) {
		if (omr_sandbox_resume(r->api->c, sb.id, NULL, &err) < 0 &&
		    omr_err_kind(err) != OMR_E_STATE) /* resumed meanwhile */
			return omr_api_reply_err(r, &err);
		omr_err_free(&err);
		omr_api_audit(r, "resume", sb.id, NULL);
		/* A persisted one comes back with a new lifetime and pids. */
		if (omr_sandbox_load(r->api->c, sb.id, &sb, &err) < 0)
			return omr_api_reply_err(r, &err);
	}
	if (has && set_lifetime(r, &sb, t) < 0)
		return MHD_YES;
	return omr_api_reply_json(r, status, e2b_created_json(r, &sb));
}

/* Connect, as E2B's: a paused (sbx-pause, an idle action of pause) or
 * persisted (sbx-pause --persist, E2B's pause) sandbox is resumed. */
static enum MHD_Result e2b_connect(struct omr_api_req *r)
{
	return wake(r, 0, 200);
}

/* E2B's pause keeps the sandbox's memory and files until a resume or a
 * connect, using nothing meanwhile: OmniRun's persist
 * (sbx-pause --persist).  409 when it is paused already. */
static enum MHD_Result e2b_pause(struct omr_api_req *r)
{
	struct omr_sandbox sb;
	struct omr_err *err = NULL;

	if (live_sandbox(r, &sb) < 0)
		return MHD_YES;
	if (paused(&sb))
		return omr_api_reply_error(r, 409, "conflict", "sandbox %s is paused already", sb.id);
	if (omr_sandbox_persist(r->api->c, sb.id, NULL, &err) < 0)
		return omr_api_reply_err(r, &err);
	omr_api_audit(r, "persist", sb.id, "E2B pause");
	return omr_api_reply_empty(r, 204);
}

/* E2B's older resume: as a connect, but a running sandbox is a 409, and
 * the answer a create's (201). */
static enum MHD_Result e2b_resume(struct omr_api_req *r)
{
	return wake(r, 1, 201);
}

/* E2B's kill of a sandbox that has ended is a 404 (kill() then answers
 * false); OmniRun's own DELETE takes it as done. */
static enum MHD_Result e2b_delete(struct omr_api_req *r)
{
	struct omr_sandbox sb;

	if (live_sandbox(r, &sb) < 0)
		return MHD_YES;
	return omr_api_sandbox_delete(r);
}

/* ---- list ---- */

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
	       c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Percent-decodes s in place ('+' is a space when plus). */
static void url_decode(char *s, int plus)
{
	char *o = s;

	for (; *s; s++) {
		if (*s == '%' && hexval(s[1]) >= 0 && hexval(s[2]) >= 0) {
			*o++ = (char)(hexval(s[1]) * 16 + hexval(s[2]));
			s += 2;
		} else {
			*o++ = plus && *s == '+' ? ' ' : *s;
		}
	}
	*o = 0;
}

/* Does the sandbox's metadata hold every k=v pair of the filter?  The
 * SDK encodes each key and value, then the pairs as a query string. */
static int metadata_matches(struct omr_api *a, const char *id, const char *filter)
{
	_cleanup_free_ char *m = omr_owner_metadata(a->db, id);
	json_t *meta = m ? json_loads(m, 0, NULL) : NULL;
	_cleanup_free_ char *f = omr_xstrdup(filter);
	int ok = 1;

	for (char *save = NULL, *pair = strtok_r(f, "&", &save); pair && ok;
	     pair = strtok_r(NULL, "&", &save)) {
		char *eq = strchr(pair, '=');
		const char *have;

		if (!eq)
			continue;
		*eq = 0;
		url_decode(pair, 1);
		url_decode(pair, 0);
		url_decode(eq + 1, 1);
		url_decode(eq + 1, 0);
		have = json_string_value(json_object_get(meta, pair));
		ok = have && !strcmp(have, eq + 1);
	}
	json_decref(meta);
	return ok;
}

static int by_created(const void *x, const void *y)
{
	const struct omr_sandbox *a = x, *b = y;

	if (a->created_at != b->created_at)
		return a->created_at < b->created_at ? -1 : 1;
	return strcmp(a->id, b->id);
}

/* GET /sandboxes (everything) and /v2/sandboxes (state, metadata, limit,
 * nextToken: the id after which the page starts; X-Next-Token says
 * where the next one does). */
static enum MHD_Result list(struct omr_api_req *r, int v2)
{
	const char *state = v2 ? omr_api_query(r, "state", NULL) : NULL;
	const char *meta = omr_api_query(r, "metadata", NULL);
	const char *next = v2 ? omr_api_query(r, "nextToken", NULL) : NULL;
	const char *lim = v2 ? omr_api_query(r, "limit", NULL) : NULL;
	struct omr_err *err = NULL;
	struct omr_sandbox *sbs;
	char **ids = NULL;
	size_t n = 0, cap, start = 0, shown;
	uint64_t limit = v2 ? LIST_MAX : SIZE_MAX;
	json_t *arr;

	if (lim && omr_parse_u64(lim, 1, LIST_MAX, &limit, "limit", &err) < 0)
		return omr_api_reply_err(r, &err);
	if (next && *next && !omr_id_valid(next))
		return omr_api_reply_error(r, 400, "bad_request", "nextToken is not a sandbox id");
	if (omr_owner_live(r->api->db, r->user.id, &ids, &err) < 0)
		return omr_api_reply_err(r, &err);
	for (cap = 0; ids[cap]; cap++)
		;
	sbs = omr_xcalloc(cap + 1, sizeof(*sbs));
	/* state: "running", "paused" or both, comma-separated. */
	for (size_t i = 0; ids[i]; i++) {
		struct omr_err *e = NULL;

		if (omr_sandbox_load(r->api->c, ids[i], &sbs[n], &e) < 0) {
			omr_err_free(&e);
			continue;
		}
		if (sbs[n].state == OMR_SB_STOPPED || (meta && !metadata_matches(r->api, ids[i], meta)))
			continue;
		if (state && !strstr(state, paused(&sbs[n]) ? "paused" : "running"))
			continue;
		n++;
	}
	omr_owner_ids_free(ids);
	qsort(sbs, n, sizeof(*sbs), by_created);
	if (next && *next) {
		while (start < n && strcmp(sbs[start].id, next))
			start++;
		start = start < n ? start + 1 : n;
	}
	arr = json_array();
	for (shown = 0; start + shown < n && shown < limit; shown++)
		json_array_append_new(arr, e2b_sandbox_json(r->api, &sbs[start + shown]));
	char *text = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(text), text,
								    MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(resp, "Content-Type", "application/json");
	if (start + shown < n)
		MHD_add_response_header(resp, "X-Next-Token", sbs[start + shown - 1].id);
	free(sbs);
	return omr_api_reply_response(r, 200, resp);
}

static enum MHD_Result e2b_list(struct omr_api_req *r)
{
	return list(r, 0);
}

static enum MHD_Result e2b_list_v2(struct omr_api_req *r)
{
	return list(r, 1);
}

/* ---- the table ---- */

#define ROW(m, p, h, b) { m, p, h, b, 0, NULL, NULL }
#define NI omr_api_not_implemented

const struct omr_api_route omr_api_e2b_route_table[] = {
	/* E2B's sandboxes API. */
	ROW("POST", "/sandboxes", e2b_create, OMR_BODY_JSON),
	ROW("POST", "/v2/sandboxes", e2b_create, OMR_BODY_JSON),
	ROW("GET", "/sandboxes", e2b_list, OMR_BODY_NONE),
	ROW("GET", "/v2/sandboxes", e2b_list_v2, OMR_BODY_NONE),
	ROW("GET", "/sandboxes/:id", e2b_get, OMR_BODY_NONE),
	ROW("DELETE", "/sandboxes/:id", e2b_delete, OMR_BODY_NONE),
	ROW("POST", "/sandboxes/:id/timeout", e2b_timeout, OMR_BODY_JSON),
	ROW("POST", "/sandboxes/:id/connect", e2b_connect, OMR_BODY_JSON),
	ROW("POST", "/v2/sandboxes/:id/connect", e2b_connect, OMR_BODY_JSON),
	ROW("POST", "/sandboxes/:id/pause", e2b_pause, OMR_BODY_NONE),
	ROW("POST", "/sandboxes/:id/resume", e2b_resume, OMR_BODY_JSON),
	/* envd, inside the sandbox named by E2b-Sandbox-Id (envd.c). */
	ROW("GET", "/health", omr_envd_health, OMR_BODY_NONE),
	ROW("GET", "/files", omr_envd_files_get, OMR_BODY_NONE),
	{ "POST", "/files", omr_envd_files_put_end, OMR_BODY_RAW, 0, omr_envd_files_put_begin,
	  omr_envd_files_put_abort },
	ROW("POST", "/process.Process/Start", omr_envd_start, OMR_BODY_CONNECT_STREAM),
	ROW("POST", "/process.Process/Connect", omr_envd_connect, OMR_BODY_CONNECT_STREAM),
	ROW("POST", "/process.Process/List", omr_envd_list, OMR_BODY_CONNECT),
	ROW("POST", "/process.Process/SendSignal", omr_envd_signal, OMR_BODY_CONNECT),
	ROW("POST", "/process.Process/SendInput", omr_envd_send_input, OMR_BODY_CONNECT),
	ROW("POST", "/process.Process/CloseStdin", omr_envd_close_stdin, OMR_BODY_CONNECT),
	ROW("POST", "/process.Process/Update", NI, OMR_BODY_CONNECT),
	ROW("POST", "/filesystem.Filesystem/Stat", omr_envd_stat, OMR_BODY_CONNECT),
	ROW("POST", "/filesystem.Filesystem/ListDir", omr_envd_listdir, OMR_BODY_CONNECT),
	ROW("POST", "/filesystem.Filesystem/MakeDir", omr_envd_mkdir, OMR_BODY_CONNECT),
	ROW("POST", "/filesystem.Filesystem/Move", omr_envd_move, OMR_BODY_CONNECT),
	ROW("POST", "/filesystem.Filesystem/Remove", omr_envd_remove, OMR_BODY_CONNECT),
	ROW("POST", "/filesystem.Filesystem/WatchDir", omr_envd_watch, OMR_BODY_CONNECT_STREAM),
	ROW("POST", "/filesystem.Filesystem/CreateWatcher", NI, OMR_BODY_CONNECT),
	ROW("POST", "/filesystem.Filesystem/GetWatcherEvents", NI, OMR_BODY_CONNECT),
	ROW("POST", "/filesystem.Filesystem/RemoveWatcher", NI, OMR_BODY_CONNECT),
};

const size_t omr_api_e2b_route_count = OMR_ARRAY_SIZE(omr_api_e2b_route_table);
