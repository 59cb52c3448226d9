/* API tokens; see omnirun/acct/acct.h. */
#include <errno.h>
#include <sodium.h>
#include <string.h>

#include "acct-internal.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/base/util.h"

#define TOKEN_NAME_MAX 128

static int b32_only(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '2' && s[i] <= '7')))
			return 0;
	return 1;
}

int omr_token_create(struct omr_db *db, int64_t user_id, const char *name, char **token,
		     int64_t *id, struct omr_err **err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	unsigned char hash[crypto_hash_sha256_BYTES];
	char *t;
	DB_LOCKED(db);
	int rc, tries;

	if (!name)
		name = "";
	if (strlen(name) > TOKEN_NAME_MAX || !omr_utf8_valid(name, strlen(name)))
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "a token name is at most %d bytes "
				    "of UTF-8", TOKEN_NAME_MAX);
	for (const char *p = name; *p; p++)
		if ((unsigned char)*p < ' ' || *p == 0x7f)
			return omr_err_setx(err, OMR_E_USAGE, EINVAL, "a token name has no control "
					    "characters");
	if (omr_db_prep(db, "INSERT INTO tokens (user_id, name, prefix, hash, created_at) "
			"VALUES (?, ?, ?, ?, ?)", &st, err) < 0)
		return -1;
	t = sodium_malloc(OMR_TOKEN_LEN + 1);
	if (!t)
		return omr_err_setx(err, OMR_E_FAIL, ENOMEM, "out of memory");
	/* A prefix that exists already (1 in 32^12) is drawn again. */
	for (tries = 0; tries < 4; tries++) {
		memcpy(t, "omr_", 4);
		omr_acct_random_b32(t + 4, OMR_TOKEN_PREFIX_LEN + OMR_TOKEN_SECRET_LEN);
		crypto_hash_sha256(hash, (unsigned char *)t + 4 + OMR_TOKEN_PREFIX_LEN,
				   OMR_TOKEN_SECRET_LEN);
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, user_id);
		sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, t + 4, OMR_TOKEN_PREFIX_LEN, SQLITE_STATIC);
		sqlite3_bind_blob(st, 4, hash, sizeof(hash), SQLITE_STATIC);
		sqlite3_bind_int64(st, 5, omr_db_now());
		rc = sqlite3_step(st);
		if (rc != SQLITE_CONSTRAINT)
			break;
	}
	if (rc != SQLITE_DONE) {
		sodium_free(t);
		if (rc == SQLITE_CONSTRAINT)
			return omr_err_setx(err, OMR_E_NOT_FOUND, ENOENT, "no such user");
		return omr_db_fail(db, err, "tokens");
	}
	*id = sqlite3_last_insert_rowid(db->h);
	/* sodium_malloc'ed memory is guarded and locked, but callers free
	 * with free(): hand them a plain copy and wipe ours. */
	*token = omr_xstrdup(t);
	sodium_free(t);
	return 0;
}

int omr_token_check(struct omr_db *db, const char *token, struct omr_user *user,
		    int64_t *token_id, struct omr_err **err)
{
	/* Compared against when the prefix is unknown, so that both paths
	 * hash, fetch and compare the same amount. */
	static const unsigned char dummy[crypto_hash_sha256_BYTES] = { 0 };
	_cleanup_stmt_ sqlite3_stmt *st = NULL, *upd = NULL;
	unsigned char hash[crypto_hash_sha256_BYTES];
	const unsigned char *want = dummy;
	int found = 0, revoked = 1, same, rc;
	int64_t tid = 0, uid = 0, now = omr_db_now();
	DB_LOCKED(db);

	if (!token || strlen(token) != OMR_TOKEN_LEN || strncmp(token, "omr_", 4) ||
	    !b32_only(token + 4, OMR_TOKEN_LEN - 4))
		return omr_err_setx(err, OMR_E_DENIED, EACCES, "invalid token");
	if (omr_db_prep(db, "SELECT t.id, t.hash, t.revoked_at, u.id, u.email, u.admin, "
			"u.max_sandboxes, u.created_at FROM tokens t JOIN users u "
			"ON u.id = t.user_id WHERE t.prefix = ?", &st, err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, token + 4, OMR_TOKEN_PREFIX_LEN, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW && sqlite3_column_bytes(st, 1) == (int)sizeof(hash)) {
		found = 1;
		tid = sqlite3_column_int64(st, 0);
		want = sqlite3_column_blob(st, 1);
		revoked = sqlite3_column_type(st, 2) != SQLITE_NULL;
		uid = sqlite3_column_int64(st, 3);
	} else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		return omr_db_fail(db, err, "tokens");
	}
	crypto_hash_sha256(hash, (const unsigned char *)token + 4 + OMR_TOKEN_PREFIX_LEN,
			   OMR_TOKEN_SECRET_LEN);
	same = sodium_memcmp(hash, want, sizeof(hash)) == 0;
	sodium_memzero(hash, sizeof(hash));
	if (!found || revoked || !same)
		return omr_err_setx(err, OMR_E_DENIED, EACCES, "invalid token");
	memset(user, 0, sizeof(*user));
	user->id = uid;
	omr_strlcpy(user->email, omr_db_text(st, 4), sizeof(user->email));
	user->admin = sqlite3_column_int(st, 5);
	user->max_sandboxes = sqlite3_column_int64(st, 6);
	user->created_at = sqlite3_column_int64(st, 7);
	*token_id = tid;
	sqlite3_reset(st);
	/* At most one write per token and second; a busy database does
	 * not fail the request (the use is recorded next time). */
	if (omr_db_prep(db, "UPDATE tokens SET last_used_at = ?1 WHERE id = ?2 AND "
			"(last_used_at IS NULL OR last_used_at < ?1)", &upd, NULL) == 0) {
		sqlite3_bind_int64(upd, 1, now);
		sqlite3_bind_int64(upd, 2, tid);
		sqlite3_step(upd);
	}
	return 0;
}

int omr_token_revoke(struct omr_db *db, int64_t id, int64_t user_id, int64_t *owner,
		     struct omr_err **err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	DB_LOCKED(db);
	int rc;

	if (omr_db_prep(db, "UPDATE tokens SET revoked_at = ?1 WHERE id = ?2 AND revoked_at IS "
			"NULL AND (?3 = 0 OR user_id = ?3) RETURNING user_id", &st, err) < 0)
		return -1;
	sqlite3_bind_int64(st, 1, omr_db_now());
	sqlite3_bind_int64(st, 2, id);
	sqlite3_bind_int64(st, 3, user_id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return omr_err_setx(err, OMR_E_NOT_FOUND, ENOENT, "no such token %lld",
				    (long long)id);
	if (rc != SQLITE_ROW)
		return omr_db_fail(db, err, "tokens");
	if (owner)
		*owner = sqlite3_column_int64(st, 0);
	while (sqlite3_step(st) == SQLITE_ROW)
		;
	return 0;
}

int omr_token_list(struct omr_db *db, int64_t user_id, json_t **out, struct omr_err **err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	DB_LOCKED(db);
	json_t *arr;
	int rc;

	if (omr_db_prep(db, "SELECT t.id, t.name, t.prefix, t.created_at, t.last_used_at, "
			"u.id, u.email FROM tokens t JOIN users u ON u.id = t.user_id "
			"WHERE t.revoked_at IS NULL AND (?1 = 0 OR t.user_id = ?1) ORDER BY t.id",
			&st, err) < 0)
		return -1;
	sqlite3_bind_int64(st, 1, user_id);
	arr = json_array();
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		json_t *o = json_pack("{s:I, s:s, s:s+, s:I, s:o}", "id",
				      (json_int_t)sqlite3_column_int64(st, 0), "name",
				      omr_db_text(st, 1), "prefix", "omr_", omr_db_text(st, 2),
				      "createdAt", (json_int_t)sqlite3_column_int64(st, 3),
				      "lastUsedAt", sqlite3_column_type(st, 4) == SQLITE_NULL
				      ? json_null() : json_integer(sqlite3_column_int64(st, 4)));
		if (!user_id) {
			json_object_set_new(o, "userId", json_integer(sqlite3_column_int64(st, 5)));
			json_object_set_new(o, "email", json_string(omr_db_text(st, 6)));
		}
		json_array_append_new(arr, o);
	}
	if (rc != SQLITE_DONE) {
		json_decref(arr);
		return omr_db_fail(db, err, "tokens");
	}
	*out = arr;
	return 0;
}
