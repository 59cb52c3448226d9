/* /sandboxes: create, list, status, terminate, history. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api-internal.h"
#include "omnirun/state/fork.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/base/log.h"
#include "omnirun/base/util.h"
#include "omnirun/client/sandbox.h"
#include "omnirun/state/netconf.h"
#include "omnirun/state/record.h"

json_t *omr_api_sandbox_json(struct omr_api *a, const struct omr_sandbox *sb)
{
	json_t *net = omr_sandbox_network_json(sb);
	char created[32], expires[32], ended[32];
	json_t *j;

	omr_format_time(sb->created_at, created);
	omr_format_time(sb->expires_at, expires);
	json_object_set(net, "allowDomains", json_object_get(net, "allow"));
	json_object_set_new(net, "sniProxy",
			    json_boolean(!strcmp(json_string_value(json_object_get(net, "mode")),
						 "allow-list")));
	j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:n, s:o, s:{s:i, s:i, s:i, s:i}, s:i, s:i, s:s}",
		      "sandboxId", sb->id, "template", sb->template_name, "state",
		      omr_sandbox_shown_state(a->c, sb), "createdAt", created, "expiresAt", expires,
		      "publicKey", "network", net, "resources", "cpu", sb->cpus, "memoryMb",
		      sb->memory_mb, "diskMb", sb->disk_mb, "processes", sb->processes, "timeout",
		      sb->timeout_s, "idleTimeout",
		      sb->idle_timeout_s, "accel", sb->accel);
	{
		_cleanup_free_ char *m = omr_owner_metadata(a->db, sb->id);
		json_t *mj = m ? json_loads(m, 0, NULL) : NULL;
		json_object_set_new(j, "metadata", mj ? mj : json_object());
	}
	json_object_set_new(j, "idleAction",
			    json_string(sb->idle_action[0] ? sb->idle_action : "kill"));
	if (sb->forked_from[0])
		json_object_set_new(j, "forkedFrom", json_string(sb->forked_from));
	if (!strcmp(sb->pool, "claimed"))
		json_object_set_new(j, "fromPool", json_true());
	if (sb->state == OMR_SB_STOPPED) {
		omr_format_time(sb->ended_at, ended);
		json_object_set_new(j, "endedAt", json_string(ended));
		json_object_set_new(j, "endReason", json_string(sb->end_reason));
	}
	return j;
}

static const char *const create_fields[] = {
	"template:s", "timeout:i", "idleTimeout:i", "idleAction:s", "cpu:i", "memoryMb:i",
	"diskMb:i", "processes:i", "internet:b", "sniProxy:b", "allowDomains:a",
	"vaultInject:n", "env:o", "metadata:o", "persistent:b", "network:o", NULL,
};

/* Fills o from the body; queues a reply and returns < 0 on bad input. */
static int create_opts(struct omr_api_req *r, json_t *b, struct omr_create_opts *o,
		       const char **allow, size_t *nallow)
{
	static const char *const net_fields[] = { "allow:a", "internet:b", NULL };
	json_t *v, *list = json_object_get(b, "allowDomains"), *net = json_object_get(b, "network");
	const char *action = json_string_value(json_object_get(b, "idleAction"));
	size_t i;

	if (omr_api_check_fields(r, b, create_fields) < 0)
		return -1;
	if (net && omr_api_check_fields(r, net, net_fields) < 0)
		return -1;
	/* What other issues bring: said plainly, never ignored. */
	if ((v = json_object_get(b, "vaultInject")) && !json_is_null(v) && !json_is_false(v) &&
	    !(json_is_array(v) && !json_array_size(v)))
		return omr_api_not_implemented(r), -1;
	if (action) {
		struct omr_err *e = NULL;
		/* kill, pause and persist pass, anything else 400. */
		if (omr_idle_action_check(action, &e) < 0)
			return omr_api_reply_err(r, &e), -1;
		o->idle_action = action;
	}
	/* A persistent sandbox is frozen to disk when idle (sbx-pause
	 * --persist), never killed for it. */
	if (json_is_true(json_object_get(b, "persistent"))) {
		if (action && strcmp(action, "persist"))
			return omr_api_reply_error(r, 400, "bad_request", "a persistent sandbox persists "
						   "when idle: idleAction must be persist"), -1;
		o->idle_action = "persist";
	}
	if (json_object_size(json_object_get(b, "env")))
		return omr_api_reply_error(r, 501, "unsupported", "sandbox-wide env is not "
					   "implemented yet: pass env with each command"), -1;
	o->template_name = json_string_value(json_object_get(b, "template"));
#define U32(k, dst) do { json_t *x_ = json_object_get(b, k); \
	if (x_ && json_integer_value(x_) > (json_int_t)UINT32_MAX - 1) \
		return omr_api_reply_error(r, 400, "bad_request", "%s is too large", k), -1; \
	if (x_) dst = (unsigned)json_integer_value(x_); } while (0)
	U32("cpu", o->cpus);
	U32("memoryMb", o->memory_mb);
	U32("diskMb", o->disk_mb);
	U32("timeout", o->timeout_s);
	U32("processes", o->processes);
	if (json_object_get(b, "idleTimeout")) {
		unsigned it = 0;
		U32("idleTimeout", it);
		o->idle_timeout_s = it ? it : UINT32_MAX;
	}
#undef U32
	o->internet = json_is_true(json_object_get(b, "internet")) ||
		      json_is_true(json_object_get(net, "internet"));
	if (json_object_get(net, "allow"))
		list = json_object_get(net, "allow");
	if (json_array_size(list) > OMR_ALLOW_ENTRIES)
		return omr_api_reply_error(r, 400, "bad_request", "at most %d allowDomains",
					   OMR_ALLOW_ENTRIES), -1;
	json_array_foreach(list, i, v) {
		if (!json_is_string(v))
			return omr_api_reply_error(r, 400, "bad_request", "allowDomains holds strings"), -1;
		allow[(*nallow)++] = json_string_value(v);
	}
	o->allow = allow;
	o->nallow = *nallow;
	if (json_is_true(json_object_get(b, "sniProxy")) && !*nallow)
		return omr_api_reply_error(r, 400, "bad_request", "sniProxy needs allowDomains"), -1;
	return 0;
}

int omr_api_sandbox_spawn(struct omr_api_req *r, const struct omr_create_opts *o,
			  json_t *metadata, struct omr_sandbox *sb)
{
	struct omr_err *err = NULL;
	int64_t claim;

	/* The place is claimed before the boot, in one transaction: four
	 * creates at once for a user with three places get one 429. */
	if (omr_owner_claim(r->api->db, r->api->c, &r->user, &claim, &err) < 0)
		return omr_api_reply_err(r, &err), -1;
	if (omr_sandbox_create(r->api->c, o, sb, &err) < 0) {
		omr_owner_release(r->api->db, claim);
		return omr_api_reply_err(r, &err), -1;
	}
	if (omr_owner_bind(r->api->db, claim, sb->id, sb->template_name, sb->created_at, &err) < 0) {
		omr_sandbox_kill(r->api->c, sb->id, "killed", NULL);
		return omr_api_reply_err(r, &err), -1;
	}
	if (metadata) {
		_cleanup_free_ char *m = json_dumps(metadata, JSON_COMPACT);
		if (omr_owner_set_metadata(r->api->db, sb->id, m, &err) < 0) {
			omr_sandbox_kill(r->api->c, sb->id, "killed", NULL);
			omr_owner_ended(r->api->db, sb->id, sb->created_at, "killed", -1, NULL);
			return omr_api_reply_err(r, &err), -1;
		}
	}
	omr_api_audit(r, "create", sb->id, sb->template_name);
	return 0;
}

enum MHD_Result omr_api_sandbox_create(struct omr_api_req *r)
{
	struct omr_create_opts o = { 0 };
	const char *allow[OMR_ALLOW_ENTRIES];
	size_t nallow = 0;
	struct omr_sandbox sb;

	if (create_opts(r, r->json, &o, allow, &nallow) < 0 ||
	    omr_api_sandbox_spawn(r, &o, json_object_get(r->json, "metadata"), &sb) < 0)
		return MHD_YES;
	return omr_api_reply_json(r, 201, omr_api_sandbox_json(r->api, &sb));
}

enum MHD_Result omr_api_sandbox_list(struct omr_api_req *r)
{
	struct omr_err *err = NULL;
	char **ids = NULL;
	json_t *arr;

	if (omr_owner_live(r->api->db, r->user.id, &ids, &err) < 0)
		return omr_api_reply_err(r, &err);
	arr = json_array();
	for (size_t i = 0; ids[i]; i++) {
		struct omr_sandbox sb;
		struct omr_err *e = NULL;

		if (omr_sandbox_load(r->api->c, ids[i], &sb, &e) < 0) {
			omr_err_free(&e);
			continue;
		}
		if (sb.state == OMR_SB_STOPPED) /* ended since: history now */
			continue;
		json_array_append_new(arr, omr_api_sandbox_json(r->api, &sb));
	}
	omr_owner_ids_free(ids);
	return omr_api_reply_json(r, 200, arr);
}

enum MHD_Result omr_api_sandbox_get(struct omr_api_req *r)
{
	const char *id = omr_api_own_sandbox(r);
	struct omr_err *err = NULL;
	struct omr_sandbox sb;

	if (!id)
		return MHD_YES;
	if (omr_sandbox_load(r->api->c, id, &sb, &err) < 0)
		return omr_api_reply_err(r, &err);
	return omr_api_reply_json(r, 200, omr_api_sandbox_json(r->api, &sb));
}

enum MHD_Result omr_api_sandbox_delete(struct omr_api_req *r)
{
	const char *id = omr_api_own_sandbox(r);
	struct omr_err *err = NULL;
	struct omr_sandbox sb;

	if (!id)
		return MHD_YES;
	/* The CPU figure while the VMM still runs, for the history. */
	omr_owner_sync(r->api->db, r->api->c, r->user.id, NULL);
	if (omr_sandbox_kill(r->api->c, id, "killed", &err) < 0)
		return omr_api_reply_err(r, &err);
	if (omr_sandbox_load(r->api->c, id, &sb, NULL) == 0 && sb.state == OMR_SB_STOPPED)
		omr_owner_ended(r->api->db, id, sb.ended_at, sb.end_reason, -1, NULL);
	omr_api_audit(r, "destroy", id, NULL);
	return omr_api_reply_empty(r, 204);
}

enum MHD_Result omr_api_sandbox_history(struct omr_api_req *r)
{
	struct omr_err *err = NULL;
	json_t *h;

	if (omr_owner_sync(r->api->db, r->api->c, r->user.id, &err) < 0 ||
	    omr_history_list(r->api->db, r->user.id, &h, &err) < 0)
		return omr_api_reply_err(r, &err);
	return omr_api_reply_json(r, 200, h);
}

/* --- pause, resume, timeout (issue 9): what sbx-pause, sbx-resume and
 * sbx-timeout do, for the caller's own sandboxes --- */

/* Answers with the sandbox as it is now (200), once op succeeded. */
static enum MHD_Result lifecycle_reply(struct omr_api_req *r, const char *id, int rc,
				       struct omr_err **err, const char *action, const char *detail)
{
	struct omr_sandbox sb;

	if (rc < 0)
		return omr_api_reply_err(r, err);
	omr_api_audit(r, action, id, detail);
	if (omr_sandbox_load(r->api->c, id, &sb, err) < 0)
		return omr_api_reply_err(r, err);
	return omr_api_reply_json(r, 200, omr_api_sandbox_json(r->api, &sb));
}

enum MHD_Result omr_api_sandbox_pause(struct omr_api_req *r)
{
	static const char *const fields[] = { "persist:b", NULL };
	const char *id = omr_api_own_sandbox(r);
	struct omr_err *err = NULL;
	int rc;

	if (!id || omr_api_check_fields(r, r->json, fields) < 0)
		return MHD_YES;
	if (json_is_true(json_object_get(r->json, "persist"))) {
		rc = omr_sandbox_persist(r->api->c, id, NULL, &err);
		return lifecycle_reply(r, id, rc, &err, "persist", NULL);
	}
	rc = omr_sandbox_pause(r->api->c, id, NULL, &err);
	return lifecycle_reply(r, id, rc, &err, "pause", NULL);
}

enum MHD_Result omr_api_sandbox_resume(struct omr_api_req *r)
{
	static const char *const fields[] = { NULL };
	const char *id = omr_api_own_sandbox(r);
	struct omr_err *err = NULL;
	json_t *out = NULL;
	int rc;

	if (!id || omr_api_check_fields(r, r->json, fields) < 0)
		return MHD_YES;
	rc = omr_sandbox_resume(r->api->c, id, &out, &err);
	if (rc == 0 && json_object_get(out, "clock_error"))
		omr_log(OMR_LOG_WARN, "resume %s: guest clock not set: %s", id,
			json_string_value(json_object_get(out, "clock_error")));
	json_decref(out);
	return lifecycle_reply(r, id, rc, &err, "resume", NULL);
}

enum MHD_Result omr_api_sandbox_timeout(struct omr_api_req *r)
{
	static const char *const fields[] = { "timeout:i", NULL };
	const char *id = omr_api_own_sandbox(r);
	json_t *v = r->json ? json_object_get(r->json, "timeout") : NULL;
	_cleanup_free_ char *detail = NULL;
	struct omr_err *err = NULL;
	int rc;

	if (!id || omr_api_check_fields(r, r->json, fields) < 0)
		return MHD_YES;
	if (!v)
		return omr_api_reply_error(r, 400, "bad_request", "timeout (seconds from now) is "
					   "required");
	rc = omr_sandbox_set_timeout(r->api->c, id, (uint64_t)json_integer_value(v), NULL, &err);
	detail = omr_strdup_printf("%lld s", (long long)json_integer_value(v));
	return lifecycle_reply(r, id, rc, &err, "timeout", detail);
}

/* --- fork (issue 9): what sbx-fork does, for the caller's own sandbox;
 * the children are the caller's, with the source's metadata --- */

enum MHD_Result omr_api_sandbox_fork(struct omr_api_req *r)
{
	static const char *const fields[] = { "count:i", NULL };
	const char *id = omr_api_own_sandbox(r);
	json_t *v = r->json ? json_object_get(r->json, "count") : NULL;
	json_int_t n = v ? json_integer_value(v) : 1;
	struct omr_sandbox kids[OMR_FORK_MAX];
	int64_t claims[OMR_FORK_MAX];
	_cleanup_free_ char *meta = NULL;
	struct omr_err *err = NULL;
	json_t *out;

	if (!id || omr_api_check_fields(r, r->json, fields) < 0)
		return MHD_YES;
	if (n < 1 || n > OMR_FORK_MAX)
		return omr_api_reply_error(r, 400, "bad_request", "count must be between 1 and %d",
					   OMR_FORK_MAX);
	/* All the places at once, before anything starts: a user with one
	 * place left gets a 429 for two, not one child. */
	if (omr_owner_claim_n(r->api->db, r->api->c, &r->user, (unsigned)n, claims, &err) < 0)
		return omr_api_reply_err(r, &err);
	if (omr_sandbox_fork(r->api->c, id, (unsigned)n, NULL, NULL, kids, &err) < 0) {
		for (json_int_t i = 0; i < n; i++)
			omr_owner_release(r->api->db, claims[i]);
		return omr_api_reply_err(r, &err);
	}
	meta = omr_owner_metadata(r->api->db, id);
	for (json_int_t i = 0; i < n; i++) {
		if (omr_owner_bind(r->api->db, claims[i], kids[i].id, kids[i].template_name,
				   kids[i].created_at, &err) < 0 ||
		    (meta && omr_owner_set_metadata(r->api->db, kids[i].id, meta, &err) < 0)) {
			for (json_int_t k = 0; k < n; k++) {
				omr_sandbox_kill(r->api->c, kids[k].id, "killed", NULL);
				omr_owner_ended(r->api->db, kids[k].id, kids[k].created_at, "killed", -1,
						NULL);
			}
			return omr_api_reply_err(r, &err);
		}
		omr_api_audit(r, "fork", kids[i].id, id);
	}
	out = json_array();
	for (json_int_t i = 0; i < n; i++)
		json_array_append_new(out, omr_api_sandbox_json(r->api, &kids[i]));
	return omr_api_reply_json(r, 201, out);
}
