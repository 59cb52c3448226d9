/* Unit tests for libcore/acct (accounts, tokens, ownership, limits,
 * history, audit, login codes), TAP, against a real SQLite file in a
 * throwaway state directory. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "omnirun/acct/acct.h"
#include "omnirun/base/util.h"
#include "omnirun/state/config.h"
#include "omnirun/state/record.h"

#include "tap.h"

static char root[] = "/tmp/omr-test-acct.XXXXXX";
static struct omr_config *cfg;

static void cleanup(void)
{
	char *cmd = omr_strdup_printf("rm -rf '%s'", root);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", root);
	free(cmd);
}

static struct omr_db *open_db(void)
{
	struct omr_db *db = NULL;
	struct omr_err *err = NULL;

	if (omr_db_open(cfg, NULL, &db, &err) < 0)
		bail_out("cannot open the database: %s", err->msg);
	return db;
}

/* A record that says sandbox id is in state st. */
static void fake_record(const char *id, enum omr_sb_state st)
{
	struct omr_sandbox sb = { 0 };
	struct omr_err *err = NULL;
	char *dir = omr_strdup_printf("%s/state/sandboxes/%s", root, id);

	omr_mkdir_p(dir, 0700, NULL);
	free(dir);
	omr_strlcpy(sb.id, id, sizeof(sb.id));
	omr_strlcpy(sb.template_name, "tiny", sizeof(sb.template_name));
	sb.state = st;
	sb.created_at = time(NULL);
	sb.ended_at = st == OMR_SB_STOPPED ? time(NULL) : 0;
	if (st == OMR_SB_STOPPED)
		omr_strlcpy(sb.end_reason, "timeout", sizeof(sb.end_reason));
	if (omr_sandbox_save(cfg, &sb, &err) < 0)
		bail_out("cannot save a record: %s", err->msg);
}

static int64_t count(struct omr_db *db, const char *sql)
{
	(void)db;
	sqlite3 *h;
	sqlite3_stmt *st;
	int64_t n = -1;
	char *path = omr_db_path(cfg);

	if (sqlite3_open(path, &h) == SQLITE_OK && sqlite3_prepare_v2(h, sql, -1, &st, NULL) == 0) {
		if (sqlite3_step(st) == SQLITE_ROW)
			n = sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
	}
	sqlite3_close(h);
	free(path);
	return n;
}

static void test_open(void)
{
	struct omr_db *db = open_db();
	char *path = omr_db_path(cfg);
	struct stat st;

	ok(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "the database is made 0600");
	is_int(count(db, "PRAGMA user_version"), 2, "the schema is at version 2");
	{
		sqlite3 *h;
		sqlite3_stmt *s;
		const char *mode = "";
		sqlite3_open(path, &h);
		sqlite3_prepare_v2(h, "PRAGMA journal_mode", -1, &s, NULL);
		if (sqlite3_step(s) == SQLITE_ROW)
			mode = (const char *)sqlite3_column_text(s, 0);
		is_str(mode, "wal", "the journal is a WAL");
		sqlite3_finalize(s);
		sqlite3_exec(h, "PRAGMA user_version = 99", NULL, NULL, NULL);
		sqlite3_close(h);
	}
	omr_db_close(db);
	{
		struct omr_db *d2 = NULL;
		struct omr_err *err = NULL;
		ok(omr_db_open(cfg, NULL, &d2, &err) < 0 && omr_err_kind(err) == OMR_E_UNSUPPORTED,
		   "a database from a newer OmniRun is refused");
		omr_err_free(&err);
		sqlite3 *h;
		sqlite3_open(path, &h);
		sqlite3_exec(h, "PRAGMA user_version = 2", NULL, NULL, NULL);
		sqlite3_close(h);
	}
	free(path);
}

static void test_users(void)
{
	struct omr_db *db = open_db();
	struct omr_err *err = NULL;
	struct omr_user u, v;
	json_t *list = NULL;

	ok(omr_user_add(db, "Alice@Example.COM", 0, &u, &err) == 0, "a user is added");
	is_str(u.email, "alice@example.com", "emails are kept in lower case");
	ok(omr_user_add(db, "alice@example.com", 0, NULL, &err) < 0 &&
	   omr_err_kind(err) == OMR_E_STATE, "the same email twice is refused");
	omr_err_free(&err);
	const char *bad[] = { "", "noat", "@x", "a@", "a@b@c", "a b@c", "a\n@c", "a\"@c" };
	int all = 1;
	for (size_t i = 0; i < OMR_ARRAY_SIZE(bad); i++) {
		all &= omr_user_add(db, bad[i], 0, NULL, &err) < 0 && omr_err_kind(err) == OMR_E_USAGE;
		omr_err_free(&err);
	}
	ok(all, "malformed emails are usage errors");
	is_int(omr_user_limit(cfg, &u), 3, "the default limit comes from the config");
	ok(omr_user_set_limit(db, "alice@example.com", 5, &err) == 0 &&
	   omr_user_get(db, "alice@example.com", &v, &err) == 0 && omr_user_limit(cfg, &v) == 5,
	   "the limit can be overridden");
	omr_user_set_limit(db, "alice@example.com", OMR_LIMIT_DEFAULT, NULL);
	ok(omr_user_set_limit(db, "nobody@example.com", 5, &err) < 0 &&
	   omr_err_kind(err) == OMR_E_NOT_FOUND, "an unknown user is not found");
	omr_err_free(&err);
	ok(omr_user_ensure(db, "operator@localhost", 1, OMR_LIMIT_NONE, &v, &err) == 0 &&
	   v.admin && omr_user_limit(cfg, &v) < 0, "the operator account is made on demand");
	ok(omr_user_list(db, &list, &err) == 0 && json_array_size(list) == 2, "users are listed");
	json_decref(list);
	omr_db_close(db);
}

static void test_tokens(void)
{
	struct omr_db *db = open_db();
	struct omr_err *err = NULL;
	struct omr_user u, who;
	char *tok = NULL, *tok2 = NULL;
	int64_t id, id2, tid;
	json_t *list = NULL;

	omr_user_get(db, "alice@example.com", &u, NULL);
	ok(omr_token_create(db, u.id, "laptop", &tok, &id, &err) == 0, "a token is made");
	is_int((long long)strlen(tok), OMR_TOKEN_LEN, "it has the documented length");
	ok(!strncmp(tok, "omr_", 4), "it starts with omr_");
	ok(omr_token_check(db, tok, &who, &tid, &err) == 0 && who.id == u.id && tid == id,
	   "it authenticates its user");
	{
		char *sql = omr_strdup_printf("SELECT count(*) FROM tokens WHERE hex(hash) LIKE '%%' "
					      "AND instr(CAST(hash AS TEXT), '%s') > 0", tok + 16);
		is_int(count(db, sql), 0, "the secret is not stored");
		free(sql);
	}
	is_int(count(db, "SELECT count(*) FROM tokens WHERE last_used_at IS NOT NULL"), 1,
	       "its use is recorded");
	/* One wrong character anywhere in the secret. */
	char *bad = omr_xstrdup(tok);
	bad[OMR_TOKEN_LEN - 1] = bad[OMR_TOKEN_LEN - 1] == 'a' ? 'b' : 'a';
	ok(omr_token_check(db, bad, &who, &tid, &err) < 0 && omr_err_kind(err) == OMR_E_DENIED,
	   "a wrong secret with a known prefix is denied");
	omr_err_free(&err);
	bad[5] = bad[5] == 'a' ? 'b' : 'a';
	ok(omr_token_check(db, bad, &who, &tid, &err) < 0 && omr_err_kind(err) == OMR_E_DENIED,
	   "an unknown prefix is denied");
	omr_err_free(&err);
	ok(omr_token_check(db, "omr_short", &who, &tid, &err) < 0, "a malformed token is denied");
	omr_err_free(&err);
	free(bad);
	/* Timing: known prefix with a wrong secret against an unknown prefix. */
	{
		char *known = omr_xstrdup(tok), *unknown = omr_xstrdup(tok);
		uint64_t t0, tk = UINT64_MAX, tu = UINT64_MAX, d;
		known[OMR_TOKEN_LEN - 1] = known[OMR_TOKEN_LEN - 1] == 'a' ? 'b' : 'a';
		unknown[4] = unknown[4] == 'a' ? 'b' : 'a';
		/* The fastest of interleaved rounds: the machine is shared. */
		for (int r = 0; r < 10; r++) {
			t0 = omr_now_ms();
			for (int i = 0; i < 300; i++)
				omr_token_check(db, known, &who, &tid, NULL);
			d = omr_now_ms() - t0;
			tk = d < tk ? d : tk;
			t0 = omr_now_ms();
			for (int i = 0; i < 300; i++)
				omr_token_check(db, unknown, &who, &tid, NULL);
			d = omr_now_ms() - t0;
			tu = d < tu ? d : tu;
		}
		diag("300 checks, fastest round: known prefix %llu ms, unknown prefix %llu ms",
		     (unsigned long long)tk, (unsigned long long)tu);
		ok(tk * 2 + 2 >= tu && tu * 2 + 2 >= tk,
		   "a wrong secret takes as long with a known prefix as with an unknown one");
		free(known);
		free(unknown);
	}
	ok(omr_token_create(db, u.id, "ci", &tok2, &id2, &err) == 0, "a second token is made");
	ok(omr_token_list(db, u.id, &list, &err) == 0 && json_array_size(list) == 2,
	   "the user's tokens are listed");
	{
		char *d = json_dumps(list, 0);
		ok(d && !strstr(d, tok + 16), "the list shows no secret");
		free(d);
	}
	json_decref(list);
	struct omr_user o;
	omr_user_get(db, "operator@localhost", &o, NULL);
	ok(omr_token_revoke(db, id, o.id, NULL, &err) < 0 && omr_err_kind(err) == OMR_E_NOT_FOUND,
	   "another user cannot revoke it");
	omr_err_free(&err);
	ok(omr_token_revoke(db, id, u.id, NULL, &err) == 0, "its user revokes it");
	ok(omr_token_check(db, tok, &who, &tid, &err) < 0, "a revoked token is denied at once");
	omr_err_free(&err);
	ok(omr_token_check(db, tok2, &who, &tid, &err) == 0, "the other token still works");
	ok(omr_token_revoke(db, id, 0, NULL, &err) < 0, "revoking twice is not found");
	omr_err_free(&err);
	free(tok);
	tok = NULL;
	ok(omr_token_create(db, u.id, "bad\nname", &tok, &id, &err) < 0 &&
	   omr_err_kind(err) == OMR_E_USAGE, "a token name with a newline is refused");
	omr_err_free(&err);
	free(tok2);
	omr_db_close(db);
}

static double cpu_of(json_t *h, const char *id)
{
	size_t i;
	json_t *o;

	json_array_foreach(h, i, o)
		if (!strcmp(json_string_value(json_object_get(o, "sandboxId")), id))
			return json_real_value(json_object_get(o, "cpuSeconds"));
	return -1;
}

struct claimer {
	struct omr_user u;
	int rc;
	int64_t claim;
};

static void *claim_thread(void *p)
{
	struct claimer *c = p;
	struct omr_db *db = open_db(); /* its own connection, as another process */
	struct omr_err *err = NULL;

	c->rc = omr_owner_claim(db, cfg, &c->u, &c->claim, &err) < 0
		? (omr_err_kind(err) == OMR_E_LIMIT ? 1 : -1) : 0;
	omr_err_free(&err);
	omr_db_close(db);
	return NULL;
}

static void test_owners(void)
{
	struct omr_db *db = open_db();
	struct omr_err *err = NULL;
	struct omr_user u, b;
	int64_t c1, c2, c3, c4;
	char **ids = NULL;
	json_t *h = NULL;

	omr_user_get(db, "alice@example.com", &u, NULL);
	omr_user_add(db, "bob@example.com", 0, &b, NULL);
	ok(omr_owner_claim(db, cfg, &u, &c1, &err) == 0 &&
	   omr_owner_claim(db, cfg, &u, &c2, &err) == 0 &&
	   omr_owner_claim(db, cfg, &u, &c3, &err) == 0, "three claims fit the default limit");
	ok(omr_owner_claim(db, cfg, &u, &c4, &err) < 0 && omr_err_kind(err) == OMR_E_LIMIT,
	   "the fourth is refused (limit)");
	like(err ? err->msg : NULL, "concurrent sandbox limit reached", "with the documented message");
	omr_err_free(&err);
	ok(omr_owner_claim(db, cfg, &b, &c4, &err) == 0, "another user's count is their own");
	omr_owner_release(db, c4);
	fake_record("sb_aaaaaaaa", OMR_SB_RUNNING);
	fake_record("sb_bbbbbbbb", OMR_SB_RUNNING);
	ok(omr_owner_bind(db, c1, "sb_aaaaaaaa", "tiny", time(NULL), &err) == 0 &&
	   omr_owner_bind(db, c2, "sb_bbbbbbbb", "tiny", time(NULL), &err) == 0,
	   "claims are bound to sandboxes");
	omr_owner_release(db, c3);
	is_int(omr_owner_of(db, "sb_aaaaaaaa"), u.id, "the owner is found");
	{
		char *m = NULL;
		ok(omr_owner_set_metadata(db, "sb_aaaaaaaa", "{\"k\":1}", &err) == 0 &&
		   (m = omr_owner_metadata(db, "sb_aaaaaaaa")) && !strcmp(m, "{\"k\":1}"),
		   "metadata is kept with the sandbox");
		free(m);
		ok(!omr_owner_metadata(db, "sb_bbbbbbbb"), "and none when none was given");
	}
	is_int(omr_owner_of(db, "sb_cccccccc"), 0, "an unknown sandbox has no owner");
	ok(omr_owner_live(db, u.id, &ids, &err) == 0 && ids[0] && ids[1] && !ids[2],
	   "the user's live sandboxes are listed");
	omr_owner_ids_free(ids);
	/* One ends on its own (timeout): the record says so, the count follows. */
	fake_record("sb_bbbbbbbb", OMR_SB_STOPPED);
	ok(omr_owner_claim(db, cfg, &u, &c3, &err) == 0 && omr_owner_claim(db, cfg, &u, &c4, &err) == 0,
	   "a sandbox that ended on its own no longer counts");
	omr_owner_release(db, c3);
	omr_owner_release(db, c4);
	ok(omr_history_list(db, u.id, &h, &err) == 0 && json_array_size(h) == 1 &&
	   !strcmp(json_string_value(json_object_get(json_array_get(h, 0), "endReason")), "timeout"),
	   "the history has it with its end reason");
	json_decref(h);
	ok(omr_owner_ended(db, "sb_aaaaaaaa", time(NULL), "killed", 1.5, &err) == 0 &&
	   omr_history_list(db, u.id, &h, &err) == 0 && json_array_size(h) == 2 &&
	   cpu_of(h, "sb_aaaaaaaa") == 1.5,
	   "an ended sandbox's CPU seconds are kept");
	json_decref(h);
	ok(omr_history_list(db, b.id, &h, &err) == 0 && json_array_size(h) == 0,
	   "another user's history is empty");
	json_decref(h);

	/* Old history and stale claims are pruned. */
	{
		sqlite3 *x;
		char *path = omr_db_path(cfg);
		sqlite3_open(path, &x);
		sqlite3_busy_timeout(x, 5000);
		sqlite3_exec(x, "UPDATE sandboxes SET ended_at = ended_at - 91*86400 WHERE "
			     "sandbox_id = 'sb_aaaaaaaa';"
			     "INSERT INTO sandboxes (user_id, claimed_at) VALUES (1, 0);",
			     NULL, NULL, NULL);
		sqlite3_close(x);
		free(path);
	}
	ok(omr_owner_sync(db, cfg, 0, &err) == 0 && omr_history_list(db, u.id, &h, &err) == 0 &&
	   json_array_size(h) == 1, "history older than history_days is deleted");
	json_decref(h);
	is_int(count(db, "SELECT count(*) FROM sandboxes WHERE sandbox_id IS NULL"), 0,
	       "a claim whose creator died is dropped");

	/* Limit under concurrency: 8 connections claim at once for a user
	 * whose limit is 3 (the ended one is history now). */
	{
		struct claimer cl[8];
		pthread_t th[8];
		int won = 0, refused = 0;
		struct omr_user cu;

		omr_user_add(db, "carol@example.com", 0, &cu, NULL);
		for (int i = 0; i < 8; i++) {
			cl[i].u = cu;
			pthread_create(&th[i], NULL, claim_thread, &cl[i]);
		}
		for (int i = 0; i < 8; i++) {
			pthread_join(th[i], NULL);
			won += cl[i].rc == 0;
			refused += cl[i].rc == 1;
		}
		is_int(won, 3, "of 8 concurrent claims exactly 3 win");
		is_int(refused, 5, "and 5 are refused with limit");
	}
	omr_db_close(db);
}

static void test_audit_and_rm(void)
{
	struct omr_db *db = open_db();
	struct omr_err *err = NULL;
	struct omr_user u, b;
	json_t *a = NULL;
	char *tok = NULL;
	int64_t tid;

	omr_user_get(db, "alice@example.com", &u, NULL);
	omr_user_get(db, "bob@example.com", &b, NULL);
	ok(omr_audit(db, u.id, "create", "sb_aaaaaaaa", "tiny", &err) == 0 &&
	   omr_audit(db, u.id, "exec", "sb_aaaaaaaa", "evil\nline", &err) == 0 &&
	   omr_audit(db, b.id, "create", "sb_dddddddd", NULL, &err) == 0, "entries are appended");
	ok(omr_audit_list(db, u.id, &a, &err) == 0 && json_array_size(a) == 2,
	   "a user's entries are listed apart");
	ok(!strchr(json_string_value(json_object_get(json_array_get(a, 1), "detail")), '\n'),
	   "an entry cannot forge lines");
	json_decref(a);
	{
		sqlite3 *x;
		char *path = omr_db_path(cfg);
		sqlite3_open(path, &x);
		sqlite3_busy_timeout(x, 5000);
		ok(sqlite3_exec(x, "UPDATE audit SET action = 'nothing'", NULL, NULL, NULL) != SQLITE_OK,
		   "the audit log refuses updates");
		ok(sqlite3_exec(x, "DELETE FROM audit", NULL, NULL, NULL) != SQLITE_OK,
		   "and deletes");
		sqlite3_close(x);
		free(path);
	}
	omr_token_create(db, u.id, "x", &tok, &tid, NULL);
	fake_record("sb_eeeeeeee", OMR_SB_STOPPED);
	{
		int64_t c;
		omr_owner_claim(db, cfg, &u, &c, NULL);
		omr_owner_bind(db, c, "sb_eeeeeeee", "tiny", time(NULL), NULL);
	}
	char code[7], *link = NULL;
	omr_login_code_new(db, "alice@example.com", "127.0.0.1", 60, code, &link, NULL);
	free(link);
	ok(omr_user_rm(db, "alice@example.com", &err) == 0, "a user is removed");
	is_int(count(db, "SELECT (SELECT count(*) FROM users WHERE email LIKE 'alice%') + "
		     "(SELECT count(*) FROM tokens WHERE user_id = 1) + "
		     "(SELECT count(*) FROM sandboxes WHERE user_id = 1) + "
		     "(SELECT count(*) FROM audit WHERE user_id = 1) + "
		     "(SELECT count(*) FROM login_codes WHERE email LIKE 'alice%') + "
		     "(SELECT count(*) FROM login_requests WHERE email LIKE 'alice%')"), 0,
	       "with every trace: tokens, sandboxes, history, audit, login codes");
	{
		char *path = omr_db_path(cfg);
		char *cmd = omr_strdup_printf("cat '%s' '%s-wal' 2>/dev/null | grep -c -a alice@",
					      path, path);
		FILE *p = popen(cmd, "r");
		int n = -1;
		if (p && fscanf(p, "%d", &n) != 1)
			n = -1;
		if (p)
			pclose(p);
		is_int(n, 0, "not even in the file's free pages or its WAL");
		free(cmd);
		free(path);
	}
	ok(omr_token_check(db, tok, &u, &tid, &err) < 0, "their token no longer works");
	omr_err_free(&err);
	ok(omr_audit_list(db, b.id, &a, &err) == 0 && json_array_size(a) == 1,
	   "another user's entries stay");
	json_decref(a);
	free(tok);
	omr_db_close(db);
}

static void test_login(void)
{
	struct omr_db *db = open_db();
	struct omr_err *err = NULL;
	char code[7], wrong[7], *link = NULL;

	ok(omr_login_code_new(db, "bob@example.com", "10.0.0.1", 60, code, &link, &err) == 0,
	   "a login code is made");
	ok(strlen(code) == 6 && strspn(code, "0123456789") == 6, "it is six digits");
	snprintf(wrong, sizeof(wrong), "%06u", (unsigned)(atoi(code) + 1) % 1000000u);
	ok(omr_login_code_use(db, "bob@example.com", wrong, NULL, &err) < 0, "a wrong code fails");
	omr_err_free(&err);
	ok(omr_login_code_use(db, "BOB@example.com", code, NULL, &err) == 0, "the right code works");
	ok(omr_login_code_use(db, "bob@example.com", code, NULL, &err) < 0, "once");
	omr_err_free(&err);
	free(link);
	omr_login_code_new(db, "bob@example.com", "10.0.0.1", 60, code, &link, &err);
	ok(omr_login_code_use(db, "bob@example.com", NULL, link, &err) == 0, "a link works once");
	free(link);
	omr_login_code_new(db, "bob@example.com", "10.0.0.1", 60, code, &link, &err);
	free(link);
	for (int i = 0; i < 5; i++) {
		snprintf(wrong, sizeof(wrong), "%06u", (unsigned)(atoi(code) + 1 + i) % 1000000u);
		omr_login_code_use(db, "bob@example.com", wrong, NULL, NULL);
	}
	ok(omr_login_code_use(db, "bob@example.com", code, NULL, &err) < 0,
	   "after five wrong tries the right code is refused too");
	omr_err_free(&err);
	int limited = 0;
	for (int i = 0; i < 5 && !limited; i++) {
		limited = omr_login_code_new(db, "bob@example.com", "10.0.0.2", 60, code, &link, &err) < 0;
		if (!limited)
			free(link);
	}
	ok(limited && omr_err_kind(err) == OMR_E_LIMIT, "codes are rate-limited per email");
	omr_err_free(&err);
	limited = 0;
	for (int i = 0; i < 25 && !limited; i++) {
		char e[64];
		snprintf(e, sizeof(e), "u%d@example.com", i);
		limited = omr_login_code_new(db, e, "10.0.0.9", 60, code, &link, &err) < 0;
		if (!limited)
			free(link);
	}
	ok(limited && omr_err_kind(err) == OMR_E_LIMIT, "and per client address");
	omr_err_free(&err);
	omr_login_code_new(db, "zed@example.com", "10.0.0.3", 1, code, &link, NULL);
	free(link);
	sleep(2);
	ok(omr_login_code_use(db, "zed@example.com", code, NULL, &err) < 0, "a code expires");
	omr_err_free(&err);
	omr_db_close(db);
}

/* kill -9 of a writer in the middle of its transactions leaves a
 * database that opens and holds every committed row. */
static void test_crash(void)
{
	int committed = 0;

	for (int round = 0; round < 3; round++) {
		int p[2];
		pid_t pid;

		if (pipe(p) < 0)
			bail_out("pipe");
		pid = fork();
		if (pid == 0) {
			struct omr_db *db = open_db();
			struct omr_user u;
			omr_user_get(db, "bob@example.com", &u, NULL);
			close(p[0]);
			for (int i = 0;; i++) {
				if (omr_audit(db, u.id, "crash", NULL, "x", NULL) == 0 &&
				    write(p[1], "x", 1) != 1)
					_exit(1);
			}
		}
		close(p[1]);
		usleep(300000);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		char b[4096];
		ssize_t n;
		while ((n = read(p[0], b, sizeof(b))) > 0)
			committed += (int)n;
		close(p[0]);
	}
	struct omr_db *db = open_db();
	{
		sqlite3 *h;
		sqlite3_stmt *s;
		char *path = omr_db_path(cfg);
		const char *r = "";
		sqlite3_open(path, &h);
		sqlite3_prepare_v2(h, "PRAGMA integrity_check", -1, &s, NULL);
		if (sqlite3_step(s) == SQLITE_ROW)
			r = (const char *)sqlite3_column_text(s, 0);
		is_str(r, "ok", "after three kill -9 during writes the database is intact");
		sqlite3_finalize(s);
		sqlite3_close(h);
		free(path);
	}
	diag("%d audit entries acknowledged before the kills", committed);
	ok(count(db, "SELECT count(*) FROM audit WHERE action = 'crash'") >= committed &&
	   committed > 0, "every acknowledged write is there");
	omr_db_close(db);
}

/* Two connections in one process (sbx-shim's two listeners): opening
 * the second must not take the first's locks away, and both see what
 * another process writes after. */
static void test_two_connections(void)
{
	struct omr_db *a = open_db(), *b;
	struct omr_user u, got;
	struct omr_err *err = NULL;
	int64_t seen;
	int okb = 1;

	omr_user_ensure(a, "two@example.com", 0, OMR_LIMIT_DEFAULT, &u, NULL);
	omr_token_check(a, "omr_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", &got, &seen, NULL);
	b = open_db();
	for (int round = 0; round < 5; round++) {
		char buf[OMR_TOKEN_LEN + 2] = "";
		/* A process of its own (exec'ed, not forked: a fork would
		 * share this one's idea of its locks), as sbx-user is: its
		 * close checkpoints and removes the WAL when it finds itself
		 * the last connection. */
		char *cmd = omr_strdup_printf("/proc/%d/exe --make-token %lld", (int)getpid(),
					      (long long)u.id);
		FILE *f = popen(cmd, "r");

		free(cmd);
		if (!f || !fgets(buf, sizeof(buf), f) || pclose(f) != 0)
			bail_out("no token from the child");
		buf[strcspn(buf, "\n")] = 0;
		if (omr_token_check(a, buf, &got, &seen, &err) < 0 ||
		    omr_token_check(b, buf, &got, &seen, &err) < 0) {
			diag("round %d: %s", round, err ? err->msg : "?");
			omr_err_free(&err);
			okb = 0;
		}
	}
	ok(okb, "two connections of one process both see tokens another process makes");
	omr_db_close(b);
	omr_db_close(a);
}

int main(int argc, char **argv)
{
	struct omr_err *err = NULL;

	/* test_two_connections' other process: prints a new token of user
	 * argv[2] (the environment is the parent's). */
	if (argc == 3 && !strcmp(argv[1], "--make-token")) {
		char *tok = NULL;
		int64_t tid;
		if (omr_config_load(&cfg, &err) < 0)
			return 1;
		struct omr_db *c = open_db();
		if (omr_token_create(c, strtoll(argv[2], NULL, 10), "other", &tok, &tid, &err) < 0)
			return 1;
		printf("%s\n", tok);
		omr_db_close(c);
		return 0;
	}

	if (!mkdtemp(root))
		bail_out("mkdtemp");
	atexit(cleanup);
	char *sd = omr_strdup_printf("%s/state", root), *rd = omr_strdup_printf("%s/run", root);
	setenv("OMNIRUN_STATE_DIR", sd, 1);
	setenv("OMNIRUN_RUN_DIR", rd, 1);
	setenv("OMNIRUN_CONF", "/dev/null", 1);
	free(sd);
	free(rd);
	if (omr_config_load(&cfg, &err) < 0)
		bail_out("config: %s", err->msg);
	test_open();
	test_users();
	test_tokens();
	test_owners();
	test_audit_and_rm();
	test_login();
	test_crash();
	test_two_connections();
	omr_config_free(cfg);
	return done_testing();
}
