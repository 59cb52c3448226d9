/* Users; see omnirun/acct/acct.h. */
#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "acct-internal.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/base/util.h"

int omr_email_normalize(const char *email, char out[OMR_EMAIL_MAX + 1], struct omr_err **err)
{
	size_t n = email ? strlen(email) : 0;
	const char *at = email ? strchr(email, '@') : NULL;

	if (!n || n > OMR_EMAIL_MAX || !at || at == email || !at[1] || strchr(at + 1, '@'))
		goto bad;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)email[i];
		if (ch <= ' ' || ch == 0x7f || ch == '"' || ch == '\\' || ch == '<' || ch == '>' ||
		    ch == ',' || ch == ';')
			goto bad;
		out[i] = (char)tolower(ch);
	}
	out[n] = 0;
	return 0;
bad:;
	_cleanup_free_ char *q = omr_str_quote_short(email ? email : "", 80);
	return omr_err_setx(err, OMR_E_USAGE, EINVAL, "invalid email address '%s'", q);
}

static void user_row(sqlite3_stmt *st, struct omr_user *u)
{
	memset(u, 0, sizeof(*u));
	u->id = sqlite3_column_int64(st, 0);
	omr_strlcpy(u->email, omr_db_text(st, 1), sizeof(u->email));
	u->admin = sqlite3_column_int(st, 2);
	u->max_sandboxes = sqlite3_column_int64(st, 3);
	u->created_at = sqlite3_column_int64(st, 4);
}

#define USER_COLS "id, email, admin, max_sandboxes, created_at"

static int get_locked(struct omr_db *db, const char *email, struct omr_user *out,
		      struct omr_err **err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc;

	if (omr_db_prep(db, "SELECT " USER_COLS " FROM users WHERE email = ?", &st, err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, email, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return omr_err_setx(err, OMR_E_NOT_FOUND, ENOENT, "no such user '%s'", email);
	if (rc != SQLITE_ROW)
		return omr_db_fail(db, err, "users");
	user_row(st, out);
	return 0;
}

int omr_user_get(struct omr_db *db, const char *email, struct omr_user *out,
		 struct omr_err **err)
{
	char e[OMR_EMAIL_MAX + 1];
	DB_LOCKED(db);

	if (omr_email_normalize(email, e, err) < 0)
		return -1;
	return get_locked(db, e, out, err);
}

int omr_user_get_id(struct omr_db *db, int64_t id, struct omr_user *out, struct omr_err **err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	DB_LOCKED(db);
	int rc;

	if (omr_db_prep(db, "SELECT " USER_COLS " FROM users WHERE id = ?", &st, err) < 0)
		return -1;
	sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return omr_err_setx(err, OMR_E_NOT_FOUND, ENOENT, "no such user");
	if (rc != SQLITE_ROW)
		return omr_db_fail(db, err, "users");
	user_row(st, out);
	return 0;
}

static int insert_locked(struct omr_db *db, const char *email, int admin, int64_t limit,
			 struct omr_err **err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc;

	if (omr_db_prep(db, "INSERT INTO users (email, admin, max_sandboxes, created_at) "
			"VALUES (?, ?, ?, ?)", &st, err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, email, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, !!admin);
	sqlite3_bind_int64(st, 3, limit);
	sqlite3_bind_int64(st, 4, omr_db_now());
	rc = sqlite3_step(st);
	if (rc == SQLITE_CONSTRAINT)
		return omr_err_setx(err, OMR_E_STATE, EEXIST, "user '%s' exists already", email);
	if (rc != SQLITE_DONE)
		return omr_db_fail(db, err, "users");
	return 0;
}

int omr_user_add(struct omr_db *db, const char *email, int admin, struct omr_user *out,
		 struct omr_err **err)
{
	char e[OMR_EMAIL_MAX + 1];
	DB_LOCKED(db);

	if (omr_email_normalize(email, e, err) < 0 ||
	    insert_locked(db, e, admin, OMR_LIMIT_DEFAULT, err) < 0)
		return -1;
	return out ? get_locked(db, e, out, err) : 0;
}

int omr_user_ensure(struct omr_db *db, const char *email, int admin, int64_t limit,
		    struct omr_user *out, struct omr_err **err)
{
	char e[OMR_EMAIL_MAX + 1];
	struct omr_err *e2 = NULL;
	DB_LOCKED(db);

	if (omr_email_normalize(email, e, err) < 0)
		return -1;
	if (get_locked(db, e, out, &e2) == 0)
		return 0;
	omr_err_free(&e2);
	/* Another process may make it between the two: either insert wins. */
	if (insert_locked(db, e, admin, limit, &e2) < 0 && omr_err_kind(e2) != OMR_E_STATE) {
		*err = omr_steal_ptr(e2);
		return -1;
	}
	omr_err_free(&e2);
	return get_locked(db, e, out, err);
}

int64_t omr_user_limit(const struct omr_config *c, const struct omr_user *u)
{
	if (u->max_sandboxes == OMR_LIMIT_DEFAULT)
		return c->api_user_sandboxes;
	if (u->max_sandboxes < 0)
		return -1;
	return u->max_sandboxes;
}

json_t *omr_user_json(const struct omr_config *c, const struct omr_user *u)
{
	int64_t lim = omr_user_limit(c, u);

	return json_pack("{s:I, s:s, s:b, s:o, s:I}", "id", (json_int_t)u->id, "email", u->email,
			 "admin", u->admin, "maxSandboxes",
			 lim < 0 ? json_null() : json_integer(lim), "createdAt",
			 (json_int_t)u->created_at);
}

int omr_user_list(struct omr_db *db, json_t **out, struct omr_err **err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	DB_LOCKED(db);
	json_t *arr;
	int rc;

	if (omr_db_prep(db, "SELECT " USER_COLS ","
			" (SELECT count(*) FROM tokens t WHERE t.user_id = u.id AND revoked_at IS NULL),"
			" (SELECT count(*) FROM sandboxes s WHERE s.user_id = u.id AND ended_at IS NULL)"
			" FROM users u ORDER BY id", &st, err) < 0)
		return -1;
	arr = json_array();
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t lim = sqlite3_column_int64(st, 3);
		json_array_append_new(arr, json_pack(
			"{s:I, s:s, s:b, s:o, s:I, s:I, s:I}", "id",
			(json_int_t)sqlite3_column_int64(st, 0), "email", omr_db_text(st, 1), "admin",
			sqlite3_column_int(st, 2), "maxSandboxes",
			lim == OMR_LIMIT_DEFAULT ? json_string("default")
			: lim < 0 ? json_string("none") : json_integer(lim),
			"createdAt", (json_int_t)sqlite3_column_int64(st, 4), "tokens",
			(json_int_t)sqlite3_column_int64(st, 5), "liveSandboxes",
			(json_int_t)sqlite3_column_int64(st, 6)));
	}
	if (rc != SQLITE_DONE) {
		json_decref(arr);
		return omr_db_fail(db, err, "users");
	}
	*out = arr;
	return 0;
}

static int update_user(struct omr_db *db, const char *sql, const char *email, int64_t v,
		       struct omr_err **err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	char e[OMR_EMAIL_MAX + 1];
	DB_LOCKED(db);

	if (omr_email_normalize(email, e, err) < 0 || omr_db_prep(db, sql, &st, err) < 0)
		return -1;
	sqlite3_bind_int64(st, 1, v);
	sqlite3_bind_text(st, 2, e, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		return omr_db_fail(db, err, "users");
	if (sqlite3_changes(db->h) == 0)
		return omr_err_setx(err, OMR_E_NOT_FOUND, ENOENT, "no such user '%s'", e);
	return 0;
}

int omr_user_set_limit(struct omr_db *db, const char *email, int64_t limit,
		       struct omr_err **err)
{
	return update_user(db, "UPDATE users SET max_sandboxes = ? WHERE email = ?", email, limit,
			   err);
}

int omr_user_set_admin(struct omr_db *db, const char *email, int admin, struct omr_err **err)
{
	return update_user(db, "UPDATE users SET admin = ? WHERE email = ?", email, !!admin, err);
}

int omr_user_rm(struct omr_db *db, const char *email, struct omr_err **err)
{
	static const char *const del[] = {
		"DELETE FROM tokens WHERE user_id = ?1",
		"DELETE FROM sandboxes WHERE user_id = ?1",
		"DELETE FROM users WHERE id = ?1",
		/* After the user: the log refuses deletes while they exist. */
		"DELETE FROM audit WHERE user_id = ?1",
		"DELETE FROM login_codes WHERE email = ?2",
		"DELETE FROM login_requests WHERE email = ?2",
	};
	char e[OMR_EMAIL_MAX + 1];
	struct omr_user u;
	DB_LOCKED(db);

	if (omr_email_normalize(email, e, err) < 0 || omr_db_begin(db, err) < 0)
		return -1;
	if (get_locked(db, e, &u, err) < 0)
		goto fail;
	for (size_t i = 0; i < OMR_ARRAY_SIZE(del); i++) {
		_cleanup_stmt_ sqlite3_stmt *st = NULL;

		if (omr_db_prep(db, del[i], &st, err) < 0)
			goto fail;
		sqlite3_bind_int64(st, 1, u.id);
		sqlite3_bind_text(st, 2, e, -1, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE) {
			omr_db_fail(db, err, "removing the user");
			goto fail;
		}
	}
	if (omr_db_commit(db, err) < 0)
		return -1;
	/* The old pages live on in the WAL until a checkpoint: copy them
	 * back (secure_delete zeroes them there) and empty it.  Readers of
	 * other processes may hold it; the next checkpoint then does it. */
	sqlite3_wal_checkpoint_v2(db->h, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
	return 0;
fail:
	omr_db_rollback(db);
	return -1;
}
