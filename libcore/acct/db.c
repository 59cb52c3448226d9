/* The accounts database: opening, schema, small helpers; see
 * omnirun/acct/acct.h. */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "acct-internal.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/base/util.h"

/* Each version's statements, applied in order; user_version says which
 * were.  Never edit a released step: add one. */
static const char *const schema[] = {
	/* 1 */
	"CREATE TABLE users ("
	"  id INTEGER PRIMARY KEY,"
	"  email TEXT NOT NULL UNIQUE,"
	"  admin INTEGER NOT NULL DEFAULT 0,"
	"  max_sandboxes INTEGER NOT NULL DEFAULT -1,"
	"  created_at INTEGER NOT NULL);"
	"CREATE TABLE tokens ("
	"  id INTEGER PRIMARY KEY,"
	"  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
	"  name TEXT NOT NULL,"
	"  prefix TEXT NOT NULL UNIQUE,"
	"  hash BLOB NOT NULL,"
	"  created_at INTEGER NOT NULL,"
	"  last_used_at INTEGER,"
	"  revoked_at INTEGER);"
	"CREATE INDEX tokens_user ON tokens(user_id);"
	/* A row per sandbox a user owns, from the claim (sandbox_id NULL)
	 * to 90 days after its end: the ownership, the limit's count and
	 * the history at once. */
	"CREATE TABLE sandboxes ("
	"  id INTEGER PRIMARY KEY,"
	"  sandbox_id TEXT UNIQUE,"
	"  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
	"  template TEXT,"
	"  claimed_at INTEGER NOT NULL,"
	"  created_at INTEGER,"
	"  ended_at INTEGER,"
	"  end_reason TEXT,"
	"  cpu_seconds REAL);"
	"CREATE INDEX sandboxes_user ON sandboxes(user_id, ended_at);"
	"CREATE TABLE audit ("
	"  id INTEGER PRIMARY KEY,"
	"  user_id INTEGER NOT NULL,"
	"  at INTEGER NOT NULL,"
	"  action TEXT NOT NULL,"
	"  target TEXT,"
	"  detail TEXT);"
	"CREATE INDEX audit_user ON audit(user_id);"
	"CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN"
	"  SELECT RAISE(ABORT, 'the audit log is append-only'); END;"
	/* Only removing a user removes their entries (every trace). */
	"CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
	"  WHEN EXISTS (SELECT 1 FROM users WHERE id = OLD.user_id) BEGIN"
	"  SELECT RAISE(ABORT, 'the audit log is append-only'); END;"
	"CREATE TABLE login_codes ("
	"  email TEXT PRIMARY KEY,"
	"  code_hash BLOB NOT NULL,"
	"  link_hash BLOB NOT NULL,"
	"  expires_at INTEGER NOT NULL,"
	"  tries INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE login_requests ("
	"  id INTEGER PRIMARY KEY,"
	"  email TEXT NOT NULL,"
	"  client TEXT NOT NULL,"
	"  at INTEGER NOT NULL);"
	"CREATE INDEX login_requests_at ON login_requests(at);",
	/* 2: what the creator attached to a sandbox (API metadata), as
	 * JSON text, shown with it and gone with its history row. */
	"ALTER TABLE sandboxes ADD COLUMN metadata TEXT;",
};

struct omr_db *omr_db_hold(struct omr_db *db)
{
	pthread_mutex_lock(&db->lock);
	return db;
}

void omr_db_unlockp(struct omr_db **db)
{
	if (*db)
		pthread_mutex_unlock(&(*db)->lock);
}

void omr_db_finalizep(sqlite3_stmt **st)
{
	sqlite3_finalize(*st);
}

int64_t omr_db_now(void)
{
	return (int64_t)time(NULL);
}

const char *omr_db_text(sqlite3_stmt *st, int col)
{
	const unsigned char *t = sqlite3_column_text(st, col);
	return t ? (const char *)t : "";
}

void omr_acct_random_b32(char *out, size_t n)
{
	static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";

	for (size_t i = 0; i < n; i++)
		out[i] = b32[randombytes_uniform(32)];
	out[n] = 0;
}

int omr_db_fail(struct omr_db *db, struct omr_err **err, const char *what)
{
	int code = sqlite3_errcode(db->h);

	if (code == SQLITE_BUSY || code == SQLITE_LOCKED)
		return omr_err_setx(err, OMR_E_TIMEOUT, EBUSY, "%s: the database %s stayed locked",
				    what, db->path);
	if (code == SQLITE_FULL)
		return omr_err_setx(err, OMR_E_LIMIT, ENOSPC, "%s: %s", what, sqlite3_errmsg(db->h));
	return omr_err_setx(err, OMR_E_FAIL, EIO, "%s: %s", what, sqlite3_errmsg(db->h));
}

int omr_db_prep(struct omr_db *db, const char *sql, sqlite3_stmt **st, struct omr_err **err)
{
	if (sqlite3_prepare_v2(db->h, sql, -1, st, NULL) != SQLITE_OK)
		return omr_db_fail(db, err, "database");
	return 0;
}

int omr_db_exec(struct omr_db *db, const char *sql, struct omr_err **err)
{
	if (sqlite3_exec(db->h, sql, NULL, NULL, NULL) != SQLITE_OK)
		return omr_db_fail(db, err, "database");
	return 0;
}

int omr_db_begin(struct omr_db *db, struct omr_err **err)
{
	return omr_db_exec(db, "BEGIN IMMEDIATE", err);
}

int omr_db_commit(struct omr_db *db, struct omr_err **err)
{
	if (omr_db_exec(db, "COMMIT", err) < 0) {
		omr_db_rollback(db);
		return -1;
	}
	return 0;
}

void omr_db_rollback(struct omr_db *db)
{
	if (!sqlite3_get_autocommit(db->h))
		sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
}

char *omr_db_path(const struct omr_config *c)
{
	return omr_strdup_printf("%s/omnirun.db", c->state_dir);
}

static int user_version(struct omr_db *db, int *v, struct omr_err **err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;

	if (omr_db_prep(db, "PRAGMA user_version", &st, err) < 0)
		return -1;
	if (sqlite3_step(st) != SQLITE_ROW)
		return omr_db_fail(db, err, "database");
	*v = sqlite3_column_int(st, 0);
	return 0;
}

/* Brings the schema to the newest version, one transaction per step, so
 * that two processes opening a new file at once do not both apply it. */
static int migrate(struct omr_db *db, struct omr_err **err)
{
	int v = 0;

	for (;;) {
		if (omr_db_begin(db, err) < 0 || user_version(db, &v, err) < 0)
			goto fail;
		if (v > (int)OMR_ARRAY_SIZE(schema)) {
			omr_db_rollback(db);
			return omr_err_setx(err, OMR_E_UNSUPPORTED, EPROTO, "%s has schema version %d; "
					    "this OmniRun knows up to %zu", db->path, v,
					    OMR_ARRAY_SIZE(schema));
		}
		if (v == (int)OMR_ARRAY_SIZE(schema)) {
			omr_db_rollback(db);
			return 0;
		}
		_cleanup_free_ char *set = omr_strdup_printf("PRAGMA user_version = %d", v + 1);
		if (omr_db_exec(db, schema[v], err) < 0 || omr_db_exec(db, set, err) < 0 ||
		    omr_db_commit(db, err) < 0)
			goto fail;
	}
fail:
	omr_db_rollback(db);
	return omr_err_wrap(err, "%s: cannot set up the schema", db->path);
}

int omr_db_open(const struct omr_config *c, const char *path, struct omr_db **out,
		struct omr_err **err)
{
	struct omr_db *db;
	int fd;

	if (sodium_init() < 0)
		return omr_err_setx(err, OMR_E_FAIL, EIO, "libsodium cannot start");
	if (!path) {
		_cleanup_close_ int dfd = omr_dir_private(c->state_dir, 1, err);
		if (dfd < 0)
			return -1;
	}
	db = omr_xcalloc(1, sizeof(*db));
	db->path = path ? omr_xstrdup(path) : omr_db_path(c);
	pthread_mutex_init(&db->lock, NULL);
	/* Made here when missing, so that it is 0600 from its first byte;
	 * SQLite gives the -wal and -shm files the mode of the database.
	 * An existing one is never opened here: closing any fd of the file
	 * drops every POSIX lock this process holds on it, the WAL locks of
	 * another connection of ours included (sbx-shim's two listeners),
	 * and that connection then reads stale pages or corrupts the file. */
	fd = open(db->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 && errno != EEXIST) {
		omr_err_set(err, OMR_E_FAIL, errno, "cannot open %s", db->path);
		goto fail;
	}
	if (fd >= 0)
		close(fd);
	if (sqlite3_open_v2(db->path, &db->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX |
			    SQLITE_OPEN_NOFOLLOW, NULL) != SQLITE_OK) {
		omr_err_setx(err, OMR_E_FAIL, EIO, "cannot open %s: %s", db->path,
			     db->h ? sqlite3_errmsg(db->h) : "out of memory");
		goto fail;
	}
	/* Writers of other processes are waited for, not failed; WAL with
	 * synchronous=FULL: a committed transaction survives a crash of the
	 * process and of the machine. */
	sqlite3_busy_timeout(db->h, 10000);
	if (omr_db_exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
			"PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;", err) < 0 ||
	    migrate(db, err) < 0)
		goto fail;
	*out = db;
	return 0;
fail:
	omr_db_close(db);
	return -1;
}

void omr_db_close(struct omr_db *db)
{
	if (!db)
		return;
	sqlite3_close(db->h);
	pthread_mutex_destroy(&db->lock);
	free(db->path);
	free(db);
}
