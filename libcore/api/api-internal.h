/* What the files of the api area share: the request, the route table,
 * replies.  Routes of other issues (exposures, signed URLs, vault, LLM)
 * are added as rows of omr_api_route_table (routes.c) and handlers here. */
#ifndef OMNIRUN_API_INTERNAL_H
#define OMNIRUN_API_INTERNAL_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdint.h>

#include "omnirun/acct/acct.h"
#include "omnirun/api/api.h"

struct omr_api_req;
typedef enum MHD_Result (*omr_api_handler)(struct omr_api_req *r);

enum omr_api_body {
	OMR_BODY_NONE = 0,  /* a body is ignored */
	OMR_BODY_JSON,      /* a JSON object, at most [api] max_body_kb */
	OMR_BODY_RAW,       /* streamed to the route's sink (files) */
	/* The E2B listener's envd routes speak the Connect protocol
	 * (doc/e2b.md): a unary call's body is a JSON object as for
	 * OMR_BODY_JSON; a server-streaming call's is one enveloped JSON
	 * message (a flag byte, a 4-byte big-endian length).  Their errors
	 * are Connect errors, a stream's in its end-of-stream message. */
	OMR_BODY_CONNECT,
	OMR_BODY_CONNECT_STREAM,
};

/* How a request's errors are shaped. */
enum omr_api_style {
	OMR_STYLE_OMNIRUN = 0,  /* {"error", "code": "snake_case"} */
	OMR_STYLE_E2B,          /* E2B's REST: {"code": STATUS, "message"} */
	OMR_STYLE_CONNECT,      /* {"code": "connect_code", "message"} */
	OMR_STYLE_CONNECT_STREAM, /* 200 and an end-of-stream message */
};

struct omr_api_route {
	const char *method;
	const char *path;           /* "/sandboxes/:id/commands" */
	omr_api_handler handler;    /* called once the body is in */
	enum omr_api_body body;
	int public;                 /* no token needed */
	/* OMR_BODY_RAW: begin is called once the headers are in (after
	 * authentication); it either queues a reply (an error) or sets
	 * r->sink_fd, where the body's bytes are then written; abort is
	 * called when the client goes away before the end. */
	omr_api_handler begin;
	void (*abort)(struct omr_api_req *r);
};

extern const struct omr_api_route omr_api_route_table[];
extern const size_t omr_api_route_count;

#define OMR_API_MAX_PARAMS 4

/* The state of one connection, for the slow-client watchdog. */
struct omr_api_conn {
	struct omr_api_conn *prev, *next;
	int fd;
	uint64_t phase_ms;      /* when the current request began */
	int in_request;         /* headers are in: the handler has it */
	uint64_t body_bytes;    /* of the upload in progress */
	int streaming_body;
	int upgraded;           /* handed over (a WebSocket through a
				   preview URL): no longer MHD's or ours to
				   time out */
};

struct omr_api {
	const struct omr_config *c;
	/* What this listener serves: OmniRun's API, or E2B's (e2b.c) with
	 * its own table, tokens in X-API-KEY and X-Access-Token, and
	 * E2B-shaped errors. */
	const struct omr_api_route *routes;
	size_t nroutes;
	int e2b;
	struct MHD_Daemon *d;
	struct omr_db *db;
	unsigned port;
	int tls;
	char *cert, *key;
	/* Requests that host_match accepts (a preview URL's Host,
	 * PORT-ID.DOMAIN, or E2B's port headers) go to host_hook, every call of them, before any
	 * routing or authentication: the exposures' port-forwarding. */
	int (*host_match)(struct omr_api *a, struct MHD_Connection *conn);
	enum MHD_Result (*host_hook)(struct omr_api_req *r, const char *upload_data,
				     size_t *upload_data_size);
	/* Slow clients: the watchdog thread and the live connections. */
	pthread_t watchdog;
	int watchdog_run;
	pthread_mutex_t conns_lock;
	struct omr_api_conn *conns;
	/* Per-token request rate. */
	pthread_mutex_t rate_lock;
	struct omr_api_bucket *buckets;
	size_t nbuckets;
};

struct omr_api_req {
	struct omr_api *api;
	struct MHD_Connection *conn;
	struct omr_api_conn *cs;
	const char *method, *url;
	const struct omr_api_route *route;
	char *params[OMR_API_MAX_PARAMS];
	uint64_t t0;
	int status;                 /* of the reply queued, 0 before */
	int hooked;                 /* host_hook has it */
	int authed;
	struct omr_user user;
	int64_t token_id;
	char client[64];            /* the peer's address */
	/* the body */
	char *body;
	size_t body_len, body_max;
	int too_large;
	json_t *json;               /* parsed OMR_BODY_JSON body */
	int sink_fd;                /* OMR_BODY_RAW: where bytes go, or -1 */
	int sink_failed;            /* the sink stopped taking bytes */
	uint64_t sink_bytes;
	int done;                   /* the body is complete */
	char *raw_uri;              /* the request target as sent (query
				   included), for previews */
	int signed_ok;              /* a signed URL vouched for params[0]
				   (its owner is r->user) */
	/* OMR_BODY_RAW: when set, takes the body's bytes instead of sink_fd
	 * (a multipart upload's parser); < 0 stops taking them. */
	int (*on_chunk)(struct omr_api_req *r, const char *data, size_t n);
	void *ctx;                  /* the route's own state */
	void (*ctx_free)(struct omr_api_req *r);
};

/* The shape r's errors take (its listener and route). */
enum omr_api_style omr_api_style(const struct omr_api_req *r);
/* An error body of that shape (new ref); for status-specific headers. */
json_t *omr_api_error_body(const struct omr_api_req *r, unsigned status, const char *code,
			   const char *msg);

/* Replies (each returns what MHD_queue_response returned). */
enum MHD_Result omr_api_reply_json(struct omr_api_req *r, unsigned status, json_t *body);
enum MHD_Result omr_api_reply_error(struct omr_api_req *r, unsigned status, const char *code,
				    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* The reply for a libcore error: its kind's HTTP status and message. */
enum MHD_Result omr_api_reply_err(struct omr_api_req *r, struct omr_err **err);
enum MHD_Result omr_api_reply_empty(struct omr_api_req *r, unsigned status);
enum MHD_Result omr_api_reply_response(struct omr_api_req *r, unsigned status,
				       struct MHD_Response *resp);
enum MHD_Result omr_api_not_implemented(struct omr_api_req *r);

/* Checks a JSON object's members against fields ("name:T", T one of s
 * string, i integer >= 0, b boolean, o object, a array, n null or
 * anything); a member not listed or of the wrong type is a 400 that
 * names them all.  Returns 0, or < 0 with the reply queued. */
int omr_api_check_fields(struct omr_api_req *r, json_t *o, const char *const *fields);

/* The query argument name (exact bytes: NULs are refused), or NULL. */
const char *omr_api_query(struct omr_api_req *r, const char *name, int *has_nul);

/* The sandbox :id of the request if it is the caller's (else a 404 is
 * queued and NULL returned: another user's id is no different from one
 * that never existed). */
const char *omr_api_own_sandbox(struct omr_api_req *r);

/* The fd of the client's socket (to notice a hang-up), or -1. */
int omr_api_client_fd(struct omr_api_req *r);

/* snake_case keys of o (recursively) in camelCase: a new reference. */
json_t *omr_api_camel(json_t *o);
/* A sandbox record as the API shows it (new ref). */
struct omr_sandbox;
json_t *omr_api_sandbox_json(struct omr_api *a, const struct omr_sandbox *sb);

/* Audits an action of the caller; a failure is logged, not returned
 * (the action has happened). */
void omr_api_audit(struct omr_api_req *r, const char *action, const char *target,
		   const char *detail);

/* Authenticates r by its token (for routes that decide late whether
 * they need one).  Returns 0, or < 0 with the reply (401, 429) queued. */
int omr_api_authenticate(struct omr_api_req *r);

/* Exposures (expose.c): routes, and the preview URLs' Host routing. */
enum MHD_Result omr_api_exposures_create(struct omr_api_req *r);
enum MHD_Result omr_api_exposures_list(struct omr_api_req *r);
enum MHD_Result omr_api_exposures_delete(struct omr_api_req *r);
int omr_api_preview_match(struct omr_api *a, struct MHD_Connection *conn);
enum MHD_Result omr_api_preview_hook(struct omr_api_req *r, const char *upload_data,
				     size_t *upload_data_size);
/* Uploads (files.c), for every route that takes one: a transfer
 * thread writing what is sent on omr_api_put_fd to path in sandbox id.
 * start returns NULL with a reply queued; finish (sent: the bytes
 * written) returns 0, or < 0 with the reply queued. */
struct omr_api_put;
struct omr_api_put *omr_api_put_start(struct omr_api_req *r, const char *id, const char *path,
				      int mode);
int omr_api_put_fd(struct omr_api_put *p);
const char *omr_api_put_path(struct omr_api_put *p);
int omr_api_put_finish(struct omr_api_req *r, struct omr_api_put *p, uint64_t sent);
void omr_api_put_abort(struct omr_api_put *p);
void omr_api_put_free(struct omr_api_put *p);
/* The checked guest path of the path query argument; NULL with a 400
 * queued. */
const char *omr_api_req_path(struct omr_api_req *r);

/* Signed file URLs (signed.c). */
enum MHD_Result omr_api_files_sign(struct omr_api_req *r);
enum MHD_Result omr_api_signed_get(struct omr_api_req *r);
enum MHD_Result omr_api_signed_put_begin(struct omr_api_req *r);

/* Route handlers (sandboxes.c, commands.c, files.c, auth.c). */
enum MHD_Result omr_api_sandbox_create(struct omr_api_req *r);
enum MHD_Result omr_api_sandbox_list(struct omr_api_req *r);
enum MHD_Result omr_api_sandbox_get(struct omr_api_req *r);
enum MHD_Result omr_api_sandbox_delete(struct omr_api_req *r);
enum MHD_Result omr_api_sandbox_history(struct omr_api_req *r);
enum MHD_Result omr_api_sandbox_fork(struct omr_api_req *r);
enum MHD_Result omr_api_sandbox_pause(struct omr_api_req *r);
enum MHD_Result omr_api_sandbox_resume(struct omr_api_req *r);
enum MHD_Result omr_api_sandbox_timeout(struct omr_api_req *r);
enum MHD_Result omr_api_commands_run(struct omr_api_req *r);
enum MHD_Result omr_api_commands_list(struct omr_api_req *r);
enum MHD_Result omr_api_files_get(struct omr_api_req *r);
enum MHD_Result omr_api_files_delete(struct omr_api_req *r);
enum MHD_Result omr_api_files_put_begin(struct omr_api_req *r);
enum MHD_Result omr_api_files_put_end(struct omr_api_req *r);
void omr_api_files_put_abort(struct omr_api_req *r);
enum MHD_Result omr_api_auth_me(struct omr_api_req *r);
enum MHD_Result omr_api_tokens_create(struct omr_api_req *r);
enum MHD_Result omr_api_tokens_list(struct omr_api_req *r);
enum MHD_Result omr_api_tokens_delete(struct omr_api_req *r);
enum MHD_Result omr_api_magic_request(struct omr_api_req *r);
enum MHD_Result omr_api_otp_verify(struct omr_api_req *r);
enum MHD_Result omr_api_healthz(struct omr_api_req *r);
enum MHD_Result omr_api_openapi(struct omr_api_req *r);

/* Creates a sandbox for the caller under their limit: claims a place,
 * boots, binds it to them, attaches metadata (an object, may be NULL)
 * and audits.  Returns 0 with *sb filled, or < 0 with the reply queued. */
struct omr_create_opts;
int omr_api_sandbox_spawn(struct omr_api_req *r, const struct omr_create_opts *o,
			  json_t *metadata, struct omr_sandbox *sb);

/* The E2B listener (e2b.c, envd.c, doc/e2b.md). */
extern const struct omr_api_route omr_api_e2b_route_table[];
extern const size_t omr_api_e2b_route_count;
/* The sandbox an envd call names in its E2b-Sandbox-Id header, if it is
 * the caller's (it becomes params[0]); else NULL with a 404 queued. */
const char *omr_api_e2b_sandbox(struct omr_api_req *r);

#endif
