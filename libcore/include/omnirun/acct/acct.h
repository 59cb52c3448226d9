/* Accounts (DESIGN.md §7): users, API tokens, who owns which sandbox,
 * per-user limits, history and the audit log, in SQLite at
 * $state_dir/omnirun.db (WAL: readers never block the writer, and a
 * kill -9 in the middle of a write loses at most that transaction).
 *
 * One struct omr_db is one connection; its calls are serialized by a
 * mutex of its own, so threads may share it.  Several processes (the
 * shim, sbx-user, sbx-create) use the file at once: writes take SQLite's
 * lock and wait for it (busy_timeout). */
#ifndef OMNIRUN_ACCT_H
#define OMNIRUN_ACCT_H

#include <jansson.h>
#include <stdint.h>

#include "omnirun/base/err.h"
#include "omnirun/state/config.h"

struct omr_db;

/* A token: "omr_" + OMR_TOKEN_PREFIX_LEN + OMR_TOKEN_SECRET_LEN characters
 * of lowercase base32.  The prefix is public (it names the token in
 * lists); the secret is stored only as its SHA-256. */
#define OMR_TOKEN_PREFIX_LEN 12
#define OMR_TOKEN_SECRET_LEN 40
#define OMR_TOKEN_LEN (4 + OMR_TOKEN_PREFIX_LEN + OMR_TOKEN_SECRET_LEN)
#define OMR_EMAIL_MAX 254
/* users.max_sandboxes: no override (the config's), or no limit at all. */
#define OMR_LIMIT_DEFAULT (-1)
#define OMR_LIMIT_NONE (-2)

struct omr_user {
	int64_t id;
	char email[OMR_EMAIL_MAX + 1];
	int admin;
	int64_t max_sandboxes;   /* OMR_LIMIT_DEFAULT, OMR_LIMIT_NONE or N */
	int64_t created_at;
};

/* Opens (creating it 0600, and its schema) the database of c, or path
 * when not NULL.  Returns 0 or < 0. */
int omr_db_open(const struct omr_config *c, const char *path, struct omr_db **out,
		struct omr_err **err);
void omr_db_close(struct omr_db *db);
/* The path of c's database (malloc'ed). */
char *omr_db_path(const struct omr_config *c);

/* --- users --- */

/* Lowercases email into out after checking it looks like one (one '@',
 * no spaces nor control characters, at most OMR_EMAIL_MAX bytes).
 * Returns 0 or -EINVAL (usage). */
int omr_email_normalize(const char *email, char out[OMR_EMAIL_MAX + 1], struct omr_err **err);
/* Adds a user; an existing one is a state error (-EEXIST). */
int omr_user_add(struct omr_db *db, const char *email, int admin, struct omr_user *out,
		 struct omr_err **err);
/* The user with that email, made when missing (the operator account). */
int omr_user_ensure(struct omr_db *db, const char *email, int admin, int64_t limit,
		    struct omr_user *out, struct omr_err **err);
int omr_user_get(struct omr_db *db, const char *email, struct omr_user *out,
		 struct omr_err **err);
int omr_user_get_id(struct omr_db *db, int64_t id, struct omr_user *out, struct omr_err **err);
/* [{id, email, admin, maxSandboxes, createdAt, tokens, liveSandboxes}] */
int omr_user_list(struct omr_db *db, json_t **out, struct omr_err **err);
int omr_user_set_limit(struct omr_db *db, const char *email, int64_t limit,
		       struct omr_err **err);
int omr_user_set_admin(struct omr_db *db, const char *email, int admin, struct omr_err **err);
/* Deletes the user and every trace of them: tokens, ownership, history,
 * audit entries, login codes. */
int omr_user_rm(struct omr_db *db, const char *email, struct omr_err **err);
/* The user's concurrent sandbox limit: < 0 for none. */
int64_t omr_user_limit(const struct omr_config *c, const struct omr_user *u);
/* The user as JSON {id, email, admin, maxSandboxes, createdAt} (new ref). */
json_t *omr_user_json(const struct omr_config *c, const struct omr_user *u);

/* --- tokens --- */

/* Makes a token for user_id.  *token (malloc'ed, NUL-terminated, to be
 * zeroed and freed by the caller) is the only copy of the secret there
 * will ever be; *id gets the token's id. */
int omr_token_create(struct omr_db *db, int64_t user_id, const char *name, char **token,
		     int64_t *id, struct omr_err **err);
/* Checks a presented token: found by its prefix, the SHA-256 of its
 * secret compared in constant time; the work is the same whether the
 * prefix exists or not.  A revoked or unknown token is denied.  Records
 * the use (at most one write per token and second).  Fills *user and
 * *token_id.  Returns 0 or < 0 (denied). */
int omr_token_check(struct omr_db *db, const char *token, struct omr_user *user,
		    int64_t *token_id, struct omr_err **err);
/* Revokes token id; when user_id > 0 only one of theirs (else not
 * found).  Effective for the next request.  *owner gets its user's id. */
int omr_token_revoke(struct omr_db *db, int64_t id, int64_t user_id, int64_t *owner,
		     struct omr_err **err);
/* [{id, name, prefix, createdAt, lastUsedAt, userId, email}] of one user
 * (user_id > 0) or all, revoked ones left out. */
int omr_token_list(struct omr_db *db, int64_t user_id, json_t **out, struct omr_err **err);

/* --- sandboxes: ownership, the per-user limit, history --- */

/* Claims a place for a new sandbox of user u, in one transaction: the
 * user's live sandboxes (checked against their records first, so that
 * one that ended on its own no longer counts) plus the claims in
 * progress are counted, and past the user's limit the claim fails with
 * kind limit ("concurrent sandbox limit reached").  Concurrent claims,
 * in any process, are serialized by SQLite's write lock.  *claim gets
 * the claim's id for omr_owner_bind or omr_owner_release. */
int omr_owner_claim(struct omr_db *db, const struct omr_config *c, const struct omr_user *u,
		    int64_t *claim, struct omr_err **err);
/* The same for n places at once (a fork's children): all or none. */
int omr_owner_claim_n(struct omr_db *db, const struct omr_config *c, const struct omr_user *u,
		      unsigned n, int64_t *claims, struct omr_err **err);
/* Turns a claim into the ownership of sandbox id (template, created). */
int omr_owner_bind(struct omr_db *db, int64_t claim, const char *id, const char *tmpl,
		   int64_t created_at, struct omr_err **err);
/* Attaches metadata (JSON text, at most 16 KiB) to sandbox id, and
 * reads it back (malloc'ed, or NULL when there is none). */
int omr_owner_set_metadata(struct omr_db *db, const char *id, const char *json_text,
			   struct omr_err **err);
char *omr_owner_metadata(struct omr_db *db, const char *id);
/* Gives a claim up (the create failed). */
void omr_owner_release(struct omr_db *db, int64_t claim);
/* The owner's id of sandbox id, or 0 when it has none. */
int64_t omr_owner_of(struct omr_db *db, const char *id);
/* The ids of user_id's sandboxes not known to have ended
 * (NULL-terminated, malloc'ed, free with omr_argv_free-like free of each
 * then of the vector: omr_owner_ids_free). */
int omr_owner_live(struct omr_db *db, int64_t user_id, char ***ids, struct omr_err **err);
void omr_owner_ids_free(char **ids);
/* Marks sandbox id ended (reason, CPU seconds or < 0 when unknown). */
int omr_owner_ended(struct omr_db *db, const char *id, int64_t ended_at, const char *reason,
		    double cpu_s, struct omr_err **err);
/* Records a live sandbox's CPU seconds so far (the history's figure when
 * its end is only noticed later). */
void omr_owner_cpu(struct omr_db *db, const char *id, double cpu_s);
/* Brings ownership rows up to date with the records: a sandbox whose
 * record says stopped, or that has no record, has ended; claims older
 * than the longest possible boot are dropped (their creator died); rows
 * ended more than [api] history_days ago are deleted.  user_id 0: all. */
int omr_owner_sync(struct omr_db *db, const struct omr_config *c, int64_t user_id,
		   struct omr_err **err);
/* [{sandboxId, template, createdAt, endedAt, endReason, cpuSeconds}] of
 * the user, newest first (live ones have endedAt null). */
int omr_history_list(struct omr_db *db, int64_t user_id, json_t **out, struct omr_err **err);

/* --- audit log (append-only: the schema refuses updates and deletes
 * of a user's entries while the user exists) --- */

/* Appends an entry; failures are returned, never hidden: an action that
 * cannot be audited should not happen.  target and detail may be NULL. */
int omr_audit(struct omr_db *db, int64_t user_id, const char *action, const char *target,
	      const char *detail, struct omr_err **err);
/* [{at, userId, email, action, target, detail}] of one user (user_id >
 * 0) or all, oldest first. */
int omr_audit_list(struct omr_db *db, int64_t user_id, json_t **out, struct omr_err **err);

/* --- login codes (magic link / one-time code) --- */

/* Makes a one-time code for email (6 digits) and a link token, valid
 * ttl_s; per email at most 5 codes an hour and per client address 20
 * (kind limit past it).  The code replaces any earlier one of that
 * email.  *code (7 bytes) and *link (malloc'ed) get them. */
int omr_login_code_new(struct omr_db *db, const char *email, const char *client, unsigned ttl_s,
		       char code[7], char **link, struct omr_err **err);
/* Checks a code (or a link token when code is NULL) for email: single
 * use, not expired, at most 5 wrong tries per code.  Returns 0 and
 * deletes it, or < 0 (denied). */
int omr_login_code_use(struct omr_db *db, const char *email, const char *code,
		       const char *link, struct omr_err **err);

#endif
