/* One-time login codes and magic links; see omnirun/acct/acct.h. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "acct-internal.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/base/util.h"

#define PER_EMAIL_HOUR 5
#define PER_CLIENT_HOUR 20
#define MAX_TRIES 5
#define LINK_LEN 32

static void sha256(unsigned char out[crypto_hash_sha256_BYTES], const char *s)
{
	crypto_hash_sha256(out, (const unsigned char *)s, strlen(s));
}

static int64_t count_since(struct omr_db *db, const char *col, const char *v, int64_t since)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	_cleanup_free_ char *sql = omr_strdup_printf(
		"SELECT count(*) FROM login_requests WHERE %s = ? AND at >= ?", col);

	if (omr_db_prep(db, sql, &st, NULL) < 0)
		return INT64_MAX;
	sqlite3_bind_text(st, 1, v, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, since);
	return sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : INT64_MAX;
}

static int step_done(struct omr_db *db, sqlite3_stmt *st, struct omr_err **err)
{
	return sqlite3_step(st) == SQLITE_DONE ? 0 : omr_db_fail(db, err, "login codes");
}

int omr_login_code_new(struct omr_db *db, const char *email, const char *client, unsigned ttl_s,
		       char code[7], char **link, struct omr_err **err)
{
	_cleanup_stmt_ sqlite3_stmt *log = NULL, *put = NULL, *old = NULL;
	unsigned char ch[crypto_hash_sha256_BYTES], lh[crypto_hash_sha256_BYTES];
	char e[OMR_EMAIL_MAX + 1], l[LINK_LEN + 1];
	int64_t now = omr_db_now();
	DB_LOCKED(db);

	if (omr_email_normalize(email, e, err) < 0 || omr_db_begin(db, err) < 0)
		return -1;
	if (omr_db_prep(db, "DELETE FROM login_requests WHERE at < ?", &old, err) < 0)
		goto fail;
	sqlite3_bind_int64(old, 1, now - 3600);
	if (step_done(db, old, err) < 0)
		goto fail;
	if (count_since(db, "email", e, now - 3600) >= PER_EMAIL_HOUR ||
	    count_since(db, "client", client, now - 3600) >= PER_CLIENT_HOUR) {
		omr_err_setx(err, OMR_E_LIMIT, EAGAIN, "too many login codes asked for");
		goto fail;
	}
	snprintf(code, 7, "%06u", (unsigned)randombytes_uniform(1000000));
	omr_acct_random_b32(l, LINK_LEN);
	sha256(ch, code);
	sha256(lh, l);
	if (omr_db_prep(db, "INSERT INTO login_requests (email, client, at) VALUES (?, ?, ?)",
			&log, err) < 0 ||
	    omr_db_prep(db, "INSERT OR REPLACE INTO login_codes (email, code_hash, link_hash, "
			"expires_at, tries) VALUES (?, ?, ?, ?, 0)", &put, err) < 0)
		goto fail;
	sqlite3_bind_text(log, 1, e, -1, SQLITE_STATIC);
	sqlite3_bind_text(log, 2, client, -1, SQLITE_STATIC);
	sqlite3_bind_int64(log, 3, now);
	sqlite3_bind_text(put, 1, e, -1, SQLITE_STATIC);
	sqlite3_bind_blob(put, 2, ch, sizeof(ch), SQLITE_STATIC);
	sqlite3_bind_blob(put, 3, lh, sizeof(lh), SQLITE_STATIC);
	sqlite3_bind_int64(put, 4, now + ttl_s);
	if (step_done(db, log, err) < 0 || step_done(db, put, err) < 0 ||
	    omr_db_commit(db, err) < 0)
		goto fail;
	*link = omr_xstrdup(l);
	return 0;
fail:
	omr_db_rollback(db);
	return -1;
}

int omr_login_code_use(struct omr_db *db, const char *email, const char *code,
		       const char *link, struct omr_err **err)
{
	static const unsigned char dummy[crypto_hash_sha256_BYTES] = { 0 };
	_cleanup_stmt_ sqlite3_stmt *get = NULL, *upd = NULL;
	unsigned char h[crypto_hash_sha256_BYTES];
	const unsigned char *want = dummy;
	char e[OMR_EMAIL_MAX + 1];
	int found = 0, fresh = 0, same;
	DB_LOCKED(db);

	if (omr_email_normalize(email, e, err) < 0)
		return -1;
	if ((code && (strlen(code) != 6 || strspn(code, "0123456789") != 6)) ||
	    (!code && (!link || strlen(link) != LINK_LEN)))
		return omr_err_setx(err, OMR_E_DENIED, EACCES, "invalid or expired code");
	if (omr_db_begin(db, err) < 0)
		return -1;
	if (omr_db_prep(db, "SELECT code_hash, link_hash, expires_at, tries FROM login_codes "
			"WHERE email = ?", &get, err) < 0)
		goto fail;
	sqlite3_bind_text(get, 1, e, -1, SQLITE_STATIC);
	if (sqlite3_step(get) == SQLITE_ROW && sqlite3_column_bytes(get, code ? 0 : 1) == (int)sizeof(h)) {
		found = 1;
		want = sqlite3_column_blob(get, code ? 0 : 1);
		fresh = sqlite3_column_int64(get, 2) > omr_db_now() &&
			sqlite3_column_int(get, 3) < MAX_TRIES;
	}
	sha256(h, code ? code : link);
	same = sodium_memcmp(h, want, sizeof(h)) == 0;
	sqlite3_reset(get);
	if (found) {
		/* A right code is used up; a wrong one counts as a try. */
		if (omr_db_prep(db, same && fresh ? "DELETE FROM login_codes WHERE email = ?"
				: "UPDATE login_codes SET tries = tries + 1 WHERE email = ?",
				&upd, err) < 0)
			goto fail;
		sqlite3_bind_text(upd, 1, e, -1, SQLITE_STATIC);
		if (step_done(db, upd, err) < 0)
			goto fail;
	}
	if (omr_db_commit(db, err) < 0)
		return -1;
	if (!found || !fresh || !same)
		return omr_err_setx(err, OMR_E_DENIED, EACCES, "invalid or expired code");
	return 0;
fail:
	omr_db_rollback(db);
	return -1;
}
