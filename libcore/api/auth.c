/* /auth: the caller, API tokens, login by one-time code or magic link. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api-internal.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/base/log.h"
#include "omnirun/base/util.h"

enum MHD_Result omr_api_auth_me(struct omr_api_req *r)
{
	return omr_api_reply_json(r, 200, omr_user_json(r->api->c, &r->user));
}

enum MHD_Result omr_api_tokens_create(struct omr_api_req *r)
{
	static const char *const fields[] = { "name:s", NULL };
	struct omr_err *err = NULL;
	char *tok = NULL;
	int64_t id;
	enum MHD_Result rc;
	json_t *j;

	if (omr_api_check_fields(r, r->json, fields) < 0)
		return MHD_YES;
	if (omr_token_create(r->api->db, r->user.id,
			     json_string_value(json_object_get(r->json, "name")), &tok, &id, &err) < 0)
		return omr_api_reply_err(r, &err);
	omr_api_audit(r, "token_created", NULL, NULL);
	j = json_pack("{s:I, s:s, s:s}", "id", (json_int_t)id, "token", tok, "prefix", "");
	json_object_set_new(j, "prefix", json_stringn(tok, 4 + OMR_TOKEN_PREFIX_LEN));
	explicit_bzero(tok, strlen(tok));
	free(tok);
	rc = omr_api_reply_json(r, 201, j);
	return rc;
}

enum MHD_Result omr_api_tokens_list(struct omr_api_req *r)
{
	struct omr_err *err = NULL;
	json_t *l;

	if (omr_token_list(r->api->db, r->user.id, &l, &err) < 0)
		return omr_api_reply_err(r, &err);
	return omr_api_reply_json(r, 200, l);
}

enum MHD_Result omr_api_tokens_delete(struct omr_api_req *r)
{
	struct omr_err *err = NULL;
	uint64_t id;

	if (omr_parse_u64(r->params[0], 1, INT64_MAX, &id, "token id", NULL) < 0)
		return omr_api_reply_error(r, 404, "not_found", "no such token");
	if (omr_token_revoke(r->api->db, (int64_t)id, r->user.id, NULL, &err) < 0)
		return omr_api_reply_err(r, &err);
	omr_api_audit(r, "token_revoked", r->params[0], NULL);
	return omr_api_reply_empty(r, 204);
}

/* ---- login ---- */

/* Hands a message to the configured sendmail-compatible command (on its
 * stdin, never in argv) or writes it into the outbox directory. */
static int send_mail(const struct omr_config *c, const char *to, const char *msg)
{
	if (c->api_mail_outbox) {
		_cleanup_close_ int dfd = open(c->api_mail_outbox, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		char name[64];

		if (dfd < 0)
			return -errno;
		snprintf(name, sizeof(name), "%llu-%d.eml", (unsigned long long)omr_wall_ms(),
			 (int)(omr_now_ms() % 100000));
		return omr_write_file_atomic_at(dfd, name, msg, strlen(msg), 0600, NULL);
	}
	if (!c->api_mail_command)
		return -ENOSYS;
	int p[2];
	pid_t pid;
	int st;

	(void)to;
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -errno;
	}
	if (pid == 0) {
		if (omr_fd_move(p[0], 0) < 0)
			_exit(127);
		execl("/bin/sh", "sh", "-c", c->api_mail_command, (char *)NULL);
		_exit(127);
	}
	close(p[0]);
	omr_write_all(p[1], msg, strlen(msg));
	close(p[1]);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

enum MHD_Result omr_api_magic_request(struct omr_api_req *r)
{
	static const char *const fields[] = { "email:s", NULL };
	const char *email = json_string_value(json_object_get(r->json, "email"));
	struct omr_err *err = NULL;
	struct omr_user u;
	char code[7], *link = NULL;

	if (omr_api_check_fields(r, r->json, fields) < 0)
		return MHD_YES;
	if (!email)
		return omr_api_reply_error(r, 400, "bad_request", "email is missing");
	/* 202 whatever happens next: the answer tells nobody whether the
	 * address has an account, nor whether it was rate-limited. */
	if (omr_user_get(r->api->db, email, &u, &err) == 0 &&
	    omr_login_code_new(r->api->db, u.email, r->client, r->api->c->api_code_ttl_s, code,
			       &link, &err) == 0) {
		const char *host = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Host");
		_cleanup_free_ char *msg = omr_strdup_printf(
			"To: %s\nSubject: Your OmniRun login code\n"
			"Content-Type: text/plain; charset=utf-8\n\n"
			"Your login code is %s (valid %u minutes).\n\n"
			"Or open %s://%s/login#email=%s&code=%s\n",
			u.email, code, r->api->c->api_code_ttl_s / 60, r->api->tls ? "https" : "http",
			host ? host : "localhost", u.email, link);
		int rc = send_mail(r->api->c, u.email, msg);

		explicit_bzero(msg, strlen(msg));
		if (rc < 0)
			omr_log(OMR_LOG_ERR, "cannot send a login mail: %s", strerror(-rc));
		else
			omr_audit(r->api->db, u.id, "login_code_sent", NULL, r->client, NULL);
	} else if (err && omr_err_kind(err) == OMR_E_LIMIT) {
		omr_log(OMR_LOG_WARN, "login codes rate-limited for client %s", r->client);
	}
	omr_err_free(&err);
	free(link);
	explicit_bzero(code, sizeof(code));
	return omr_api_reply_json(r, 202, json_pack("{s:s}", "status", "sent if the account exists"));
}

enum MHD_Result omr_api_otp_verify(struct omr_api_req *r)
{
	static const char *const fields[] = { "email:s", "code:s", NULL };
	const char *email = json_string_value(json_object_get(r->json, "email"));
	const char *code = json_string_value(json_object_get(r->json, "code"));
	struct omr_err *err = NULL;
	struct omr_user u;
	char *tok = NULL;
	int64_t id;

	if (omr_api_check_fields(r, r->json, fields) < 0)
		return MHD_YES;
	if (!email || !code)
		return omr_api_reply_error(r, 400, "bad_request", "email and code are needed");
	/* A six-digit code, or the token of the mailed link. */
	int digits = strlen(code) == 6;
	if (omr_login_code_use(r->api->db, email, digits ? code : NULL, digits ? NULL : code,
			       &err) < 0 ||
	    omr_user_get(r->api->db, email, &u, &err) < 0) {
		omr_err_free(&err);
		return omr_api_reply_error(r, 401, "unauthorized", "invalid or expired code");
	}
	if (omr_token_create(r->api->db, u.id, "session", &tok, &id, &err) < 0)
		return omr_api_reply_err(r, &err);
	omr_audit(r->api->db, u.id, "login", NULL, r->client, NULL);
	r->authed = 1;
	r->user = u;
	_cleanup_free_ char *cookie = omr_strdup_printf(
		"omnirun_token=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=2592000%s", tok,
		r->api->tls ? "; Secure" : "");
	explicit_bzero(tok, strlen(tok));
	free(tok);
	json_t *j = omr_user_json(r->api->c, &u);
	char *text = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(text), text,
								    MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(resp, "Set-Cookie", cookie);
	MHD_add_response_header(resp, "Content-Type", "application/json");
	explicit_bzero(cookie, strlen(cookie));
	return omr_api_reply_response(r, 200, resp);
}
