/* What the files of the acct area share. */
#ifndef OMNIRUN_ACCT_INTERNAL_H
#define OMNIRUN_ACCT_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>

#include "omnirun/acct/acct.h"

struct omr_db {
	sqlite3 *h;
	pthread_mutex_t lock;   /* one call at a time on this connection */
	char *path;
};

/* Takes db->lock for the scope of the variable. */
void omr_db_unlockp(struct omr_db **db);
#define DB_LOCKED(db) \
	__attribute__((cleanup(omr_db_unlockp))) struct omr_db *_held_ = omr_db_hold(db)
struct omr_db *omr_db_hold(struct omr_db *db);

/* An error from SQLite's last failure on db, as kind fail (busy: timeout). */
int omr_db_fail(struct omr_db *db, struct omr_err **err, const char *what);
/* Prepares sql.  Returns 0 or < 0 with *err. */
int omr_db_prep(struct omr_db *db, const char *sql, sqlite3_stmt **st, struct omr_err **err);
/* Runs statements without parameters.  Returns 0 or < 0. */
int omr_db_exec(struct omr_db *db, const char *sql, struct omr_err **err);
void omr_db_finalizep(sqlite3_stmt **st);
#define _cleanup_stmt_ __attribute__((cleanup(omr_db_finalizep)))
/* BEGIN IMMEDIATE (the write lock at once, waiting busy_timeout for it),
 * COMMIT, ROLLBACK. */
int omr_db_begin(struct omr_db *db, struct omr_err **err);
int omr_db_commit(struct omr_db *db, struct omr_err **err);
void omr_db_rollback(struct omr_db *db);
/* Seconds since the epoch. */
int64_t omr_db_now(void);
/* A column as a string ("" for NULL). */
const char *omr_db_text(sqlite3_stmt *st, int col);
/* Random lowercase base32, n characters and a NUL. */
void omr_acct_random_b32(char *out, size_t n);

#endif
