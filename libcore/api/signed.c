/* Signed file URLs over HTTP: POST /sandboxes/:id/files/sign makes one
 * (omnirun/api/sign.h); GET and POST /files/signed/:id use one, without
 * a bearer token: the signature is the credential, checked before
 * anything else, and the transfer is then the files routes' own, on
 * behalf of the sandbox's owner. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api-internal.h"
#include "omnirun/api/sign.h"
#include "omnirun/base/ids.h"
#include "omnirun/base/util.h"

/* Where signed URLs point: [api] public_url, else the scheme and Host
 * this request came with (a Host that is not a plain host[:port] falls
 * back to a relative URL).  Malloc'ed or NULL. */
static char *base_url(struct omr_api_req *r)
{
	const char *host = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Host");

	if (r->api->c->api_public_url)
		return omr_xstrdup(r->api->c->api_public_url);
	if (!host || !*host || strlen(host) > 255 ||
	    strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") !=
		    strlen(host))
		return omr_xstrdup("");
	return omr_strdup_printf("%s://%s", r->api->tls ? "https" : "http", host);
}

enum MHD_Result omr_api_files_sign(struct omr_api_req *r)
{
	static const char *const fields[] = { "path:s", "op:s", "ttl:i", NULL };
	const char *id = omr_api_own_sandbox(r);
	const char *path = json_string_value(json_object_get(r->json, "path"));
	const char *opname = json_string_value(json_object_get(r->json, "op"));
	json_t *ttl = json_object_get(r->json, "ttl");
	struct omr_signed_url u;
	struct omr_err *err = NULL;
	char when[32], *base;
	int op, rc;
	json_t *j;

	if (!id || omr_api_check_fields(r, r->json, fields) < 0)
		return MHD_YES;
	if (!path)
		return omr_api_reply_error(r, 400, "bad_request", "path is required");
	if ((op = omr_sign_op_parse(opname ? opname : "read")) < 0)
		return omr_api_reply_error(r, 400, "bad_request", "op is read or write");
	/* An expiry is mandatory: no ttl is no URL. */
	if (!ttl || json_integer_value(ttl) < 1)
		return omr_api_reply_error(r, 400, "bad_request", "ttl (seconds, 1 or more) is required");
	base = base_url(r);
	rc = omr_sign_url(r->api->c, (enum omr_sign_op)op, id, path, json_integer_value(ttl),
			  (int64_t)(omr_wall_ms() / 1000), base, &u, &err);
	free(base);
	if (rc < 0)
		return omr_api_reply_err(r, &err);
	omr_format_time(u.expires_at, when);
	j = json_pack("{s:s, s:s, s:s, s:s, s:I}", "url", u.url, "path", u.path, "op",
		      omr_sign_op_name((enum omr_sign_op)op), "expiresAt", when, "expiresAtUnix",
		      (json_int_t)u.expires_at);
	omr_api_audit(r, "file_sign", id, omr_sign_op_name((enum omr_sign_op)op));
	omr_signed_url_free(&u);
	return omr_api_reply_json(r, 201, j);
}

/* Checks the request's signature for op; on success the request acts
 * for the sandbox's owner.  Returns 0, or < 0 with the reply queued
 * (403 for any bad signature). */
static int signed_check(struct omr_api_req *r, enum omr_sign_op op)
{
	const char *id = r->params[0], *pattern = omr_api_query(r, "pattern", NULL);
	int nul = 0;
	const char *path = omr_api_query(r, "path", &nul);
	struct omr_sign_claim cl = {
		.op = omr_api_query(r, "op", NULL),
		.path = pattern ? pattern : path,
		.exp = omr_api_query(r, "exp", NULL),
		.kid = omr_api_query(r, "kid", NULL),
		.sig = omr_api_query(r, "sig", NULL),
	};
	struct omr_err *err = NULL;
	int64_t owner;

	if (nul) {
		omr_api_reply_error(r, 400, "bad_request", "a path holds no NUL byte");
		return -1;
	}
	if (omr_api_query(r, "list", NULL)) {
		omr_api_reply_error(r, 400, "bad_request", "a signed URL reads files, not listings");
		return -1;
	}
	if (omr_sign_verify(r->api->c, &cl, op, id, path, (int64_t)(omr_wall_ms() / 1000), &err) < 0) {
		omr_api_reply_err(r, &err);
		return -1;
	}
	owner = omr_owner_of(r->api->db, id);
	if (owner <= 0) {
		/* Signed for a sandbox that is gone. */
		omr_api_reply_error(r, 404, "not_found", "no such sandbox");
		return -1;
	}
	r->user.id = owner;
	r->authed = 1;
	r->signed_ok = 1;
	return 0;
}

enum MHD_Result omr_api_signed_get(struct omr_api_req *r)
{
	if (signed_check(r, OMR_SIGN_READ) < 0)
		return MHD_YES;
	return omr_api_files_get(r);
}

enum MHD_Result omr_api_signed_put_begin(struct omr_api_req *r)
{
	if (signed_check(r, OMR_SIGN_WRITE) < 0)
		return MHD_YES;
	return omr_api_files_put_begin(r);
}
