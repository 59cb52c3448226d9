/* Who owns which sandbox, the per-user limit and the history; see
 * omnirun/acct/acct.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "acct-internal.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/base/util.h"
#include "omnirun/state/record.h"

/* CPU seconds used by the QEMU of a live record, or < 0. */
static double vmm_cpu_seconds(const struct omr_sandbox *sb)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	_cleanup_fclose_ FILE *f = NULL;
	size_t n;

	if (sb->vmm_pid <= 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)sb->vmm_pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	/* comm may hold spaces and parentheses: fields follow the last ')'. */
	p = strrchr(buf, ')');
	if (!p || !strstr(buf, "qemu") ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int ended_locked(struct omr_db *db, const char *id, int64_t at, const char *reason,
			double cpu_s, struct omr_err **err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;

	if (omr_db_prep(db, "UPDATE sandboxes SET ended_at = ?, end_reason = ?, cpu_seconds = "
			"coalesce(?, cpu_seconds) WHERE sandbox_id = ? AND ended_at IS NULL", &st,
			err) < 0)
		return -1;
	sqlite3_bind_int64(st, 1, at);
	sqlite3_bind_text(st, 2, reason, -1, SQLITE_STATIC);
	if (cpu_s >= 0)
		sqlite3_bind_double(st, 3, cpu_s);
	else
		sqlite3_bind_null(st, 3);
	sqlite3_bind_text(st, 4, id, -1, SQLITE_STATIC);
	return sqlite3_step(st) == SQLITE_DONE ? 0 : omr_db_fail(db, err, "sandboxes");
}

static void cpu_locked(struct omr_db *db, const char *id, double cpu_s)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;

	if (cpu_s < 0 || omr_db_prep(db, "UPDATE sandboxes SET cpu_seconds = ? WHERE "
				     "sandbox_id = ? AND ended_at IS NULL", &st, NULL) < 0)
		return;
	sqlite3_bind_double(st, 1, cpu_s);
	sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
	sqlite3_step(st);
}

/* omr_owner_sync's work, inside the caller's transaction. */
static int sync_locked(struct omr_db *db, const struct omr_config *c, int64_t user_id,
		       struct omr_err **err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL, *del = NULL;
	int64_t now = omr_db_now();
	char **ids = NULL;
	size_t n = 0;
	int rc;

	if (omr_db_prep(db, "SELECT sandbox_id FROM sandboxes WHERE ended_at IS NULL AND "
			"sandbox_id IS NOT NULL AND (?1 = 0 OR user_id = ?1)", &st, err) < 0)
		return -1;
	sqlite3_bind_int64(st, 1, user_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		ids = omr_xrealloc(ids, (n + 1) * sizeof(*ids));
		ids[n++] = omr_xstrdup(omr_db_text(st, 0));
	}
	sqlite3_reset(st);
	for (size_t i = 0; i < n; i++) {
		struct omr_sandbox sb = { 0 };
		struct omr_err *e = NULL;

		if (rc == SQLITE_DONE) {
			if (omr_sandbox_load(c, ids[i], &sb, &e) < 0 && omr_err_kind(e) == OMR_E_NOT_FOUND)
				rc = ended_locked(db, ids[i], now, "gone", -1, err) < 0 ? -1 : rc;
			else if (!e && sb.state == OMR_SB_STOPPED)
				rc = ended_locked(db, ids[i], sb.ended_at ? sb.ended_at : now,
						  sb.end_reason[0] ? sb.end_reason : "stopped", -1,
						  err) < 0 ? -1 : rc;
			else if (!e)
				cpu_locked(db, ids[i], vmm_cpu_seconds(&sb));
			omr_err_free(&e);
		}
		free(ids[i]);
	}
	free(ids);
	if (rc != SQLITE_DONE)
		return rc < 0 ? -1 : omr_db_fail(db, err, "sandboxes");
	/* A claim outlives its create only when the creator died. */
	if (omr_db_prep(db, "DELETE FROM sandboxes WHERE (sandbox_id IS NULL AND claimed_at < ?1) "
			"OR (ended_at IS NOT NULL AND ended_at < ?2)", &del, err) < 0)
		return -1;
	sqlite3_bind_int64(del, 1, now - (int64_t)c->boot_timeout_s - 120);
	sqlite3_bind_int64(del, 2, now - (int64_t)c->api_history_days * 86400);
	return sqlite3_step(del) == SQLITE_DONE ? 0 : omr_db_fail(db, err, "sandboxes");
}

int omr_owner_sync(struct omr_db *db, const struct omr_config *c, int64_t user_id,
		   struct omr_err **err)
{
	DB_LOCKED(db);

	if (omr_db_begin(db, err) < 0)
		return -1;
	if (sync_locked(db, c, user_id, err) < 0) {
		omr_db_rollback(db);
		return -1;
	}
	return omr_db_commit(db, err);
}

int omr_owner_claim_n(struct omr_db *db, const struct omr_config *c, const struct omr_user *u,
		      unsigned n, int64_t *claims, struct omr_err **err)
{
	_cleanup_stmt_ sqlite3_stmt *cnt = NULL, *ins = NULL;
	int64_t limit = omr_user_limit(c, u), live;
	DB_LOCKED(db);

	/* The write lock first: counting and inserting are then one step
	 * for every other writer, in this process or another. */
	if (omr_db_begin(db, err) < 0)
		return -1;
	if (sync_locked(db, c, u->id, err) < 0 ||
	    omr_db_prep(db, "SELECT count(*) FROM sandboxes WHERE user_id = ? AND ended_at IS NULL",
			&cnt, err) < 0)
		goto fail;
	sqlite3_bind_int64(cnt, 1, u->id);
	if (sqlite3_step(cnt) != SQLITE_ROW) {
		omr_db_fail(db, err, "sandboxes");
		goto fail;
	}
	live = sqlite3_column_int64(cnt, 0);
	if (limit >= 0 && live + (int64_t)n > limit) {
		omr_err_setx(err, OMR_E_LIMIT, EUSERS, "concurrent sandbox limit reached");
		goto fail;
	}
	if (omr_db_prep(db, "INSERT INTO sandboxes (user_id, claimed_at) VALUES (?, ?)", &ins,
			err) < 0)
		goto fail;
	for (unsigned i = 0; i < n; i++) {
		sqlite3_reset(ins);
		sqlite3_bind_int64(ins, 1, u->id);
		sqlite3_bind_int64(ins, 2, omr_db_now());
		if (sqlite3_step(ins) != SQLITE_DONE) {
			omr_db_fail(db, err, "sandboxes");
			goto fail;
		}
		claims[i] = sqlite3_last_insert_rowid(db->h);
	}
	return omr_db_commit(db, err);
fail:
	omr_db_rollback(db);
	return -1;
}

int omr_owner_claim(struct omr_db *db, const struct omr_config *c, const struct omr_user *u,
		    int64_t *claim, struct omr_err **err)
{
	return omr_owner_claim_n(db, c, u, 1, claim, err);
}

int omr_owner_bind(struct omr_db *db, int64_t claim, const char *id, const char *tmpl,
		   int64_t created_at, struct omr_err **err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	DB_LOCKED(db);

	if (omr_db_prep(db, "UPDATE sandboxes SET sandbox_id = ?, template = ?, created_at = ? "
			"WHERE id = ? AND sandbox_id IS NULL", &st, err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, tmpl, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, created_at);
	sqlite3_bind_int64(st, 4, claim);
	if (sqlite3_step(st) != SQLITE_DONE)
		return omr_db_fail(db, err, "sandboxes");
	if (sqlite3_changes(db->h) != 1)
		return omr_err_setx(err, OMR_E_STATE, ENOENT, "the claim for %s was dropped", id);
	return 0;
}

int omr_owner_set_metadata(struct omr_db *db, const char *id, const char *json_text,
			   struct omr_err **err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	DB_LOCKED(db);

	if (json_text && strlen(json_text) > 16384)
		return omr_err_setx(err, OMR_E_TOO_LARGE, E2BIG, "metadata over 16 KiB");
	if (omr_db_prep(db, "UPDATE sandboxes SET metadata = ? WHERE sandbox_id = ?", &st, err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, json_text, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
	return sqlite3_step(st) == SQLITE_DONE ? 0 : omr_db_fail(db, err, "sandboxes");
}

char *omr_owner_metadata(struct omr_db *db, const char *id)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	DB_LOCKED(db);

	if (omr_db_prep(db, "SELECT metadata FROM sandboxes WHERE sandbox_id = ? AND metadata "
			"IS NOT NULL", &st, NULL) < 0)
		return NULL;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	return sqlite3_step(st) == SQLITE_ROW ? omr_xstrdup(omr_db_text(st, 0)) : NULL;
}

void omr_owner_release(struct omr_db *db, int64_t claim)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	DB_LOCKED(db);

	if (omr_db_prep(db, "DELETE FROM sandboxes WHERE id = ? AND sandbox_id IS NULL", &st,
			NULL) == 0) {
		sqlite3_bind_int64(st, 1, claim);
		sqlite3_step(st);
	}
}

int64_t omr_owner_of(struct omr_db *db, const char *id)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	DB_LOCKED(db);

	if (omr_db_prep(db, "SELECT user_id FROM sandboxes WHERE sandbox_id = ?", &st, NULL) < 0)
		return 0;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	return sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
}

int omr_owner_live(struct omr_db *db, int64_t user_id, char ***out, struct omr_err **err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	char **ids = omr_xcalloc(1, sizeof(*ids));
	DB_LOCKED(db);
	size_t n = 0;
	int rc;

	if (omr_db_prep(db, "SELECT sandbox_id FROM sandboxes WHERE user_id = ? AND ended_at IS "
			"NULL AND sandbox_id IS NOT NULL ORDER BY created_at, id", &st, err) < 0) {
		free(ids);
		return -1;
	}
	sqlite3_bind_int64(st, 1, user_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		ids = omr_xrealloc(ids, (n + 2) * sizeof(*ids));
		ids[n++] = omr_xstrdup(omr_db_text(st, 0));
		ids[n] = NULL;
	}
	if (rc != SQLITE_DONE) {
		omr_owner_ids_free(ids);
		return omr_db_fail(db, err, "sandboxes");
	}
	*out = ids;
	return 0;
}

void omr_owner_ids_free(char **ids)
{
	for (size_t i = 0; ids && ids[i]; i++)
		free(ids[i]);
	free(ids);
}

int omr_owner_ended(struct omr_db *db, const char *id, int64_t ended_at, const char *reason,
		    double cpu_s, struct omr_err **err)
{
	DB_LOCKED(db);

	return ended_locked(db, id, ended_at, reason, cpu_s, err);
}

void omr_owner_cpu(struct omr_db *db, const char *id, double cpu_s)
{
	DB_LOCKED(db);

	cpu_locked(db, id, cpu_s);
}

int omr_history_list(struct omr_db *db, int64_t user_id, json_t **out, struct omr_err **err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	DB_LOCKED(db);
	json_t *arr;
	int rc;

	if (omr_db_prep(db, "SELECT sandbox_id, template, created_at, ended_at, end_reason, "
			"cpu_seconds FROM sandboxes WHERE user_id = ? AND sandbox_id IS NOT NULL "
			"AND ended_at IS NOT NULL ORDER BY ended_at DESC, id DESC LIMIT 10000", &st,
			err) < 0)
		return -1;
	sqlite3_bind_int64(st, 1, user_id);
	arr = json_array();
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		char created[32], ended[32];

		omr_format_time(sqlite3_column_int64(st, 2), created);
		omr_format_time(sqlite3_column_int64(st, 3), ended);
		json_array_append_new(arr, json_pack(
			"{s:s, s:s, s:s, s:s, s:s, s:o}", "sandboxId", omr_db_text(st, 0),
			"template", omr_db_text(st, 1), "createdAt", created, "endedAt", ended,
			"endReason", omr_db_text(st, 4), "cpuSeconds",
			sqlite3_column_type(st, 5) == SQLITE_NULL ? json_null()
			: json_real(sqlite3_column_double(st, 5))));
	}
	if (rc != SQLITE_DONE) {
		json_decref(arr);
		return omr_db_fail(db, err, "sandboxes");
	}
	*out = arr;
	return 0;
}
