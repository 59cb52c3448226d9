/* The per-user audit log; see omnirun/acct/acct.h. */
#include <errno.h>
#include <string.h>

#include "acct-internal.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/base/util.h"

/* Audit fields are short and one line each: they are read in a terminal
 * (sbx-user audit) and must not forge lines. */
#define FIELD_MAX 512

int omr_audit(struct omr_db *db, int64_t user_id, const char *action, const char *target,
	      const char *detail, struct omr_err **err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	_cleanup_free_ char *t = target ? omr_str_quote_short(target, FIELD_MAX) : NULL;
	_cleanup_free_ char *d = detail ? omr_str_quote_short(detail, FIELD_MAX) : NULL;
	DB_LOCKED(db);

	if (omr_db_prep(db, "INSERT INTO audit (user_id, at, action, target, detail) "
			"VALUES (?, ?, ?, ?, ?)", &st, err) < 0)
		return -1;
	sqlite3_bind_int64(st, 1, user_id);
	sqlite3_bind_int64(st, 2, omr_db_now());
	sqlite3_bind_text(st, 3, action, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, t, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, d, -1, SQLITE_STATIC);
	return sqlite3_step(st) == SQLITE_DONE ? 0 : omr_db_fail(db, err, "audit");
}

int omr_audit_list(struct omr_db *db, int64_t user_id, json_t **out, struct omr_err **err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	DB_LOCKED(db);
	json_t *arr;
	int rc;

	if (omr_db_prep(db, "SELECT a.at, a.user_id, u.email, a.action, a.target, a.detail "
			"FROM audit a LEFT JOIN users u ON u.id = a.user_id "
			"WHERE ?1 = 0 OR a.user_id = ?1 ORDER BY a.id", &st, err) < 0)
		return -1;
	sqlite3_bind_int64(st, 1, user_id);
	arr = json_array();
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		char at[32];

		omr_format_time(sqlite3_column_int64(st, 0), at);
		json_array_append_new(arr, json_pack(
			"{s:s, s:I, s:s, s:s, s:s?, s:s?}", "at", at, "userId",
			(json_int_t)sqlite3_column_int64(st, 1), "email", omr_db_text(st, 2),
			"action", omr_db_text(st, 3), "target",
			(const char *)sqlite3_column_text(st, 4), "detail",
			(const char *)sqlite3_column_text(st, 5)));
	}
	if (rc != SQLITE_DONE) {
		json_decref(arr);
		return omr_db_fail(db, err, "audit");
	}
	*out = arr;
	return 0;
}
