/* Unit tests for libcore/state (records, locks, gc), TAP.
 *
 * Everything runs in a throwaway state and run directory.  The processes
 * gc and reap look for are stand-ins: copies of /bin/sleep installed as
 * the config's QEMU and as libexec/sbx-monitor, started with an argv[0]
 * that names the sandbox the way the real ones do, so that /proc shows
 * what the real programs would show. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/base/ids.h"
#include "omnirun/base/util.h"
#include "omnirun/state/config.h"
#include "omnirun/state/gc.h"
#include "omnirun/state/record.h"

#include "omnirun/state/expose.h"
#include "omnirun/state/fork.h"
#include "tap.h"

static char root[] = "/tmp/omr-test-state.XXXXXX";
static struct omr_config *cfg;

__attribute__((format(printf, 1, 2))) static char *path_of(const char *fmt, ...)
{
	char *rel = NULL, *abs;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&rel, fmt, ap) < 0)
		bail_out("out of memory");
	va_end(ap);
	abs = omr_strdup_printf("%s/%s", root, rel);
	free(rel);
	return abs;
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");

	if (!f || fputs(text, f) < 0 || fclose(f) != 0)
		bail_out("cannot write %s", path);
}

static void copy_file(const char *from, const char *to)
{
	char *cmd = omr_strdup_printf("cp '%s' '%s'", from, to);

	if (system(cmd) != 0)
		bail_out("%s failed", cmd);
	free(cmd);
}

static int64_t now_s(void)
{
	return (int64_t)(omr_wall_ms() / 1000);
}

/* The throwaway tree goes whatever way the test ends (a bail out too);
 * only by the process that made it, never by a forked child. */
static pid_t root_owner;
static void remove_root(void)
{
	if (getpid() == root_owner)
		omr_rm_rf_at(AT_FDCWD, root);
}

static void setup(void)
{
	struct omr_err *err = NULL;
	char *conf, *text, *bin;

	if (!mkdtemp(root))
		bail_out("mkdtemp: %s", strerror(errno));
	root_owner = getpid();
	atexit(remove_root);
	bin = path_of("bin");
	mkdir(bin, 0755);
	free(bin);
	bin = path_of("libexec");
	mkdir(bin, 0755);
	free(bin);
	static const char *const copies[][2] = { { "/bin/sleep", "bin/qemu-fake" },
						 { "/bin/sleep", "libexec/sbx-monitor" } };
	static const char *const env[][2] = { { "OMNIRUN_STATE_DIR", "state" },
					      { "OMNIRUN_RUN_DIR", "run" },
					      { "OMNIRUN_LIBEXEC_DIR", "libexec" } };
	for (size_t i = 0; i < 2; i++) {
		char *to = path_of("%s", copies[i][1]);
		copy_file(copies[i][0], to);
		free(to);
	}
	for (size_t i = 0; i < 3; i++) {
		char *p = path_of("%s", env[i][1]);
		setenv(env[i][0], p, 1);
		free(p);
	}
	conf = path_of("omnirun.conf");
	text = omr_strdup_printf("[vmm]\nqemu = %s/bin/qemu-fake\nboot_timeout = 10\n", root);
	write_text(conf, text);
	setenv("OMNIRUN_CONF", conf, 1);
	free(conf);
	free(text);
	if (omr_config_load(&cfg, &err) < 0)
		bail_out("config: %s", err->msg);
}

/* A record in the given state, saved the way create saves it. */
static void make_record(struct omr_sandbox *sb, enum omr_sb_state st)
{
	struct omr_err *err = NULL;
	int root_fd = omr_state_sandboxes_dir(cfg, 1, &err);

	memset(sb, 0, sizeof(*sb));
	if (root_fd < 0 || omr_id_new(sb->id, &err) < 0 || mkdirat(root_fd, sb->id, 0700) < 0)
		bail_out("cannot make a sandbox dir");
	close(root_fd);
	omr_strlcpy(sb->template_name, "tiny", sizeof(sb->template_name));
	omr_strlcpy(sb->accel, "tcg", sizeof(sb->accel));
	sb->state = st;
	sb->created_at = now_s();
	sb->expires_at = sb->created_at + 300;
	sb->cpus = 1;
	sb->memory_mb = 256;
	sb->disk_mb = 512;
	sb->timeout_s = 300;
	if (st == OMR_SB_STOPPED) {
		sb->ended_at = now_s();
		omr_strlcpy(sb->end_reason, "killed", sizeof(sb->end_reason));
	}
	if (omr_sandbox_save(cfg, sb, &err) < 0)
		bail_out("save: %s", err->msg);
}

static void save(const struct omr_sandbox *sb)
{
	struct omr_err *err = NULL;

	if (omr_sandbox_save(cfg, sb, &err) < 0)
		bail_out("save: %s", err->msg);
}

static struct omr_sandbox load(const char *id)
{
	struct omr_sandbox sb = { 0 };
	struct omr_err *err = NULL;

	if (omr_sandbox_load(cfg, id, &sb, &err) < 0) {
		diag("load %s: %s", id, err->msg);
		omr_err_free(&err);
	}
	return sb;
}

/* Starts a stand-in: prog (a copy of sleep) with argv[0] = label, so that
 * /proc/PID/cmdline reads "LABEL 1000".  uid: -1 to keep ours. */
static pid_t stand_in_at(const char *prog, const char *label, long uid, const char *cwd)
{
	pid_t pid = fork();

	if (pid < 0)
		bail_out("fork");
	if (pid == 0) {
		/* A real monitor runs in its sandbox's state dir. */
		if (cwd && chdir(cwd) < 0)
			_exit(125);
		if (uid >= 0 && (setresgid((gid_t)uid, (gid_t)uid, (gid_t)uid) < 0 ||
				 setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) < 0))
			_exit(126);
		execl(prog, label, "1000", (char *)NULL);
		_exit(127);
	}
	/* Until exec, /proc shows our own command line: wait for it. */
	for (int i = 0; i < 500; i++) {
		char *cmd = omr_proc_cmdline(pid);
		bool done = cmd && !strncmp(cmd, label, strlen(label));

		free(cmd);
		if (done)
			break;
		usleep(2000);
	}
	return pid;
}

static pid_t stand_in(const char *prog, const char *label, long uid)
{
	return stand_in_at(prog, label, uid, NULL);
}

static pid_t fake_monitor(const char *id, long uid)
{
	char *prog = path_of("libexec/sbx-monitor");
	char *label = omr_strdup_printf("%s --ready-fd 3 %s", prog, id);
	char *dir = omr_sandbox_state_path(cfg, id, NULL);
	pid_t pid = stand_in_at(prog, label, uid, dir);

	free(dir);
	free(prog);
	free(label);
	return pid;
}

static pid_t fake_qemu(const char *id, long uid)
{
	char *prog = path_of("bin/qemu-fake");
	char *label = omr_strdup_printf("qemu-system-x86_64 -chardev socket,id=qmp,path=%s/sandboxes/%s/qmp.sock,server=on",
					cfg->run_dir, id);
	pid_t pid = stand_in(prog, label, uid);

	free(prog);
	free(label);
	return pid;
}

/* Reaps pid if it has died within ms; returns 1 if it died by SIGKILL. */
static int died(pid_t pid, int ms)
{
	int st;

	for (int i = 0; i < ms / 10; i++) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
		usleep(10000);
	}
	return 0;
}

static void stop(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

/* A pid that names no process (one we started and reaped). */
static pid_t dead_pid(void)
{
	pid_t pid = fork();

	if (pid == 0)
		_exit(0);
	waitpid(pid, NULL, 0);
	return pid;
}

static void make_run_dir(const char *id)
{
	char *p = omr_sandbox_run_path(cfg, id, NULL), *sock;

	if (omr_mkdir_p(p, 0700, NULL) < 0)
		bail_out("mkdir %s", p);
	sock = omr_sandbox_run_path(cfg, id, "monitor.sock");
	write_text(sock, "");
	free(sock);
	free(p);
}

static bool run_dir_exists(const char *id)
{
	char *p = omr_sandbox_run_path(cfg, id, NULL);
	bool e = access(p, F_OK) == 0;

	free(p);
	return e;
}

static bool state_dir_exists(const char *id)
{
	char *p = omr_sandbox_state_path(cfg, id, NULL);
	bool e = access(p, F_OK) == 0;

	free(p);
	return e;
}

/* ---- records ---- */

static void test_record_round_trip(void)
{
	struct omr_sandbox sb, back;
	struct stat st;
	char *rec, *tmp;

	make_record(&sb, OMR_SB_PAUSED);
	sb.created_at = 1700000000;
	sb.expires_at = 1700000300;
	sb.paused_at = 1700000100;
	omr_strlcpy(sb.idle_action, "pause", sizeof(sb.idle_action));
	sb.cpus = 2;
	sb.memory_mb = 384;
	sb.disk_mb = 1024;
	sb.timeout_s = 300;
	sb.idle_timeout_s = 60;
	sb.monitor_pid = 4242;
	sb.vmm_pid = 4343;
	sb.owner = 1000;
	omr_strlcpy(sb.accel, "kvm", sizeof(sb.accel));
	save(&sb);
	back = load(sb.id);
	ok(!memcmp(&sb, &back, sizeof(sb)), "record: every field round trips");
	rec = omr_sandbox_state_path(cfg, sb.id, "sandbox.conf");
	tmp = omr_sandbox_state_path(cfg, sb.id, "sandbox.conf.tmp");
	ok(stat(rec, &st) == 0 && (st.st_mode & 0777) == 0600, "record: mode 0600");
	ok(access(tmp, F_OK) < 0, "record: no temporary file left after a save");
	{
		char *dir = omr_sandbox_state_path(cfg, sb.id, NULL);
		char *cmd = omr_strdup_printf("ls -A '%s' | grep -v -x -e sandbox.conf -e lock -e reserve", dir);
		FILE *ls = popen(cmd, "r");
		char extra[256] = "";

		if (ls) {
			(void)!fgets(extra, sizeof(extra), ls);
			pclose(ls);
		}
		is_str(extra, "", "record: nothing but the record in its directory after a save");
		free(cmd);
		free(dir);
	}

	/* Unknown keys (a newer version's) are ignored; a record whose id
	 * differs from its directory is corrupt. */
	{
		char *text = NULL;
		struct omr_err *err = NULL;

		omr_read_file_at(AT_FDCWD, rec, 65536, &text, NULL, NULL);
		char *more = omr_strdup_printf("%sfuture_key = 1\n", text);
		write_text(rec, more);
		back = load(sb.id);
		is_str(back.id, sb.id, "record: an unknown key is ignored");
		char *other = omr_strdup_printf("%sid = sb_aaaaaaaaaa\n", text);
		write_text(rec, other);
		is_int(omr_sandbox_load(cfg, sb.id, &back, &err) < 0, 1,
		       "record: an id that is not its directory's is refused");
		like(err ? err->msg : NULL, "corrupt record", "record: ... as a corrupt record");
		omr_err_free(&err);
		free(more);
		free(other);
		/* The pool field: ready and claimed read back, anything else
		 * makes the record corrupt. */
		{
			struct omr_sandbox p = sb;
			omr_strlcpy(p.pool, "ready", sizeof(p.pool));
			save(&p);
			back = load(sb.id);
			is_int(omr_sandbox_pooled(&back), 1, "record: a pooled sandbox reads back pooled");
			omr_strlcpy(p.pool, "claimed", sizeof(p.pool));
			save(&p);
			back = load(sb.id);
			is_int(omr_sandbox_pooled(&back) == 0 && !strcmp(back.pool, "claimed"), 1,
			       "record: a claimed one reads back claimed, not pooled");
			char *bad = omr_strdup_printf("%spool = maybe\n", text);
			write_text(rec, bad);
			is_int(omr_sandbox_load(cfg, sb.id, &back, &err) < 0, 1,
			       "record: an unknown pool value is refused");
			omr_err_free(&err);
			free(bad);
		}
		free(text);
	}
	save(&sb);
	free(rec);
	free(tmp);
}

static void test_record_errors(void)
{
	struct omr_sandbox sb;
	struct omr_err *err = NULL;
	char *dir;

	is_int(omr_sandbox_load(cfg, "sb_aaaaaaaaaa", &sb, &err) < 0, 1, "load: unknown id fails");
	is_int(omr_err_kind(err), OMR_E_NOT_FOUND, "load: ... as not_found");
	is_str(err ? err->msg : NULL, "no such sandbox 'sb_aaaaaaaaaa'", "load: ... and says so");
	omr_err_free(&err);
	is_int(omr_sandbox_load(cfg, "../etc", &sb, &err) < 0, 1, "load: an invalid id fails");
	is_int(omr_err_kind(err), OMR_E_USAGE, "load: ... as a usage error");
	omr_err_free(&err);

	/* A directory without a record: a create in progress. */
	dir = path_of("state/sandboxes/sb_bbbbbbbbbb");
	mkdir(dir, 0700);
	is_int(omr_sandbox_load(cfg, "sb_bbbbbbbbbb", &sb, &err) < 0, 1,
	       "load: a directory without a record fails");
	is_int(omr_err_kind(err), OMR_E_NOT_FOUND, "load: ... as not_found");
	omr_err_free(&err);
	rmdir(dir);
	free(dir);

	/* A record past its size bound is not read. */
	make_record(&sb, OMR_SB_STOPPED);
	{
		char *rec = omr_sandbox_state_path(cfg, sb.id, "sandbox.conf");
		char *big = omr_xmalloc(20000);

		memset(big, '#', 19999);
		big[19999] = 0;
		write_text(rec, big);
		ok(omr_sandbox_load(cfg, sb.id, &sb, &err) < 0 && err,
		   "load: an oversized record is refused (%s)", err ? err->msg : "no error");
		is_int(sb.state, OMR_SB_CORRUPT, "load: ... and reads as corrupt");
		omr_err_free(&err);
		free(big);
		free(rec);
		rec = omr_sandbox_state_path(cfg, sb.id, NULL);
		omr_rm_rf_at(AT_FDCWD, rec);
		free(rec);
	}

	/* What a crash, a full disk or a hand edit leaves: never read as a
	 * state it does not say (an unknown state read as stopped let
	 * sbx-kill exit 0 while the VM ran on). */
	{
		static const char *const bad[] = {
			"",                                            /* truncated to nothing */
			"id = %s\ntemplate = tiny\nsta",             /* cut mid-line */
			"id = %s\nstate = paused-ish\ncreated_at = 1\n", /* unknown state */
			"id = %s\nstate = running\ncreated_at = 1x\n",   /* garbled number */
			"id = %s\nstate = running\ncreated_at = 1\nmonitor_pid = -5\n",
			"\x01\x02\xff\xfe garbage",
		};
		char *rec;

		make_record(&sb, OMR_SB_RUNNING);
		rec = omr_sandbox_state_path(cfg, sb.id, "sandbox.conf");
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			char *text = omr_xstrdup(bad[i]), *at;

			/* "%s" stands for the id (the records are not formats). */
			while ((at = strstr(text, "%s"))) {
				char *t = omr_strdup_printf("%.*s%s%s", (int)(at - text), text, sb.id, at + 2);
				free(text);
				text = t;
			}
			struct omr_sandbox back;
			struct omr_sandbox *v = NULL;
			size_t n = 0, found = 0;

			write_text(rec, text);
			memset(&back, 0, sizeof(back));
			ok(omr_sandbox_load(cfg, sb.id, &back, &err) < 0 && omr_err_kind(err) == OMR_E_STATE,
			   "load: corrupt record %zu fails as a state error", i);
			omr_err_free(&err);
			ok(back.state == OMR_SB_CORRUPT && !strcmp(back.id, sb.id),
			   "load: ... and names its id with state corrupt");
			omr_sandbox_list(cfg, &v, &n, NULL);
			for (size_t k = 0; k < n; k++)
				found += !strcmp(v[k].id, sb.id) && v[k].state == OMR_SB_CORRUPT;
			is_int((long)found, 1, "list: ... and lists it as corrupt, not hidden");
			free(v);
			free(text);
		}
		free(rec);
		rec = omr_sandbox_state_path(cfg, sb.id, NULL);
		omr_rm_rf_at(AT_FDCWD, rec);
		free(rec);
	}
}

static void test_lock(void)
{
	struct omr_sandbox sb;
	struct omr_err *err = NULL;
	uint64_t t0;
	int a, b;

	make_record(&sb, OMR_SB_RUNNING);
	a = omr_sandbox_lock(cfg, sb.id, 1000, &err);
	ok(a >= 0, "lock: taken");
	t0 = omr_now_ms();
	b = omr_sandbox_lock(cfg, sb.id, 300, &err);
	t0 = omr_now_ms() - t0;
	ok(b < 0 && t0 >= 300 && t0 < 2000, "lock: a second taker waits its timeout (%llu ms)",
	   (unsigned long long)t0);
	is_int(omr_err_kind(err), OMR_E_STATE, "lock: ... then fails as a state conflict");
	like(err ? err->msg : NULL, "locked by another operation", "lock: ... and says so");
	omr_err_free(&err);
	close(a);
	b = omr_sandbox_lock(cfg, sb.id, 300, &err);
	ok(b >= 0, "lock: free again once the holder closed it");
	ok(fcntl(b, F_GETFD) & FD_CLOEXEC, "lock: the fd is O_CLOEXEC");
	close(b);

	a = omr_sandbox_create_lock(cfg, 1000, &err);
	b = omr_sandbox_create_lock(cfg, 100, &err);
	ok(a >= 0 && b < 0, "create lock: one holder at a time");
	omr_err_free(&err);
	close(a);
	is_int(omr_sandbox_lock(cfg, "sb_cccccccccc", 100, &err) < 0, 1,
	       "lock: an unknown sandbox cannot be locked");
	is_int(omr_err_kind(err), OMR_E_NOT_FOUND, "lock: ... not_found");
	omr_err_free(&err);
}

static void test_list_json_tail(void)
{
	struct omr_sandbox a, b, *v = NULL;
	struct omr_err *err = NULL;
	size_t n = 0, ia = 0, ib = 0;
	json_t *j;

	make_record(&a, OMR_SB_RUNNING);
	make_record(&b, OMR_SB_STOPPED);
	a.created_at = now_s() + 1000; /* newest */
	b.created_at = 1;              /* oldest */
	save(&a);
	save(&b);
	ok(omr_sandbox_list(cfg, &v, &n, &err) == 0 && n >= 2, "list: all records (%zu)", n);
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(v[i].id, a.id))
			ia = i;
		if (!strcmp(v[i].id, b.id))
			ib = i;
	}
	ok(ib == 0 && ia == n - 1, "list: sorted by creation time");
	free(v);

	j = omr_sandbox_json(&b);
	is_str(json_string_value(json_object_get(j, "state")), "stopped", "json: state");
	is_str(json_string_value(json_object_get(j, "end_reason")), "killed",
	       "json: a stopped sandbox has its end reason");
	ok(json_is_null(json_object_get(j, "pid")), "json: no pid is null");
	json_decref(j);
	j = omr_sandbox_json(&a);
	ok(!json_object_get(j, "end_reason"), "json: a live sandbox has no end reason");
	is_str(json_string_value(json_object_get(j, "sandbox_id")), a.id, "json: sandbox_id");
	json_decref(j);

	/* The console tail: from a line start, NULs shown as spaces. */
	{
		char *p = omr_sandbox_state_path(cfg, a.id, "console.log"), *t;
		FILE *f = fopen(p, "we");

		/* 42 bytes; the last 20 start inside the first line. */
		fwrite("first line that is long\nsecond\0line\nthird\n", 1, 42, f);
		fclose(f);
		t = omr_sandbox_file_tail(cfg, a.id, "console.log", 20);
		is_str(t, "second line\nthird\n", "tail: the last bytes from a line start, NULs as spaces");
		free(t);
		t = omr_sandbox_file_tail(cfg, a.id, "console.log", 4096);
		is_str(t, "first line that is long\nsecond line\nthird\n", "tail: a short file whole");
		free(t);
		t = omr_sandbox_file_tail(cfg, a.id, "no-such.log", 100);
		is_str(t, "", "tail: a missing file is empty");
		free(t);
		free(p);
	}
}

static void test_monitor_alive_and_reap(void)
{
	struct omr_sandbox sb, other;
	struct omr_err *err = NULL;
	pid_t mon, qemu;

	make_record(&sb, OMR_SB_RUNNING);
	make_record(&other, OMR_SB_RUNNING);
	mon = fake_monitor(sb.id, -1);
	sb.monitor_pid = mon;
	ok(omr_sandbox_monitor_alive(cfg, &sb), "monitor alive: its monitor runs");
	other.monitor_pid = mon;
	ok(!omr_sandbox_monitor_alive(cfg, &other),
	   "monitor alive: a monitor of another sandbox does not count (pid reuse)");
	other.monitor_pid = getpid();
	ok(!omr_sandbox_monitor_alive(cfg, &other), "monitor alive: a process that is no monitor does not count");

	qemu = fake_qemu(sb.id, -1);
	sb.vmm_pid = qemu;
	make_run_dir(sb.id);
	save(&sb);
	ok(omr_sandbox_reap(cfg, &sb, "killed", &err) == 0, "reap: succeeds");
	ok(died(mon, 3000), "reap: the monitor was SIGKILLed");
	ok(died(qemu, 3000), "reap: the VMM was SIGKILLed");
	ok(!run_dir_exists(sb.id), "reap: the runtime directory is gone");
	sb = load(sb.id);
	ok(sb.state == OMR_SB_STOPPED && sb.monitor_pid == 0 && sb.vmm_pid == 0 && sb.ended_at > 0,
	   "reap: the record says stopped, without pids, with an end time");
	is_str(sb.end_reason, "killed", "reap: with the reason given");

	/* A reason already recorded (a timeout that was under way) stays. */
	other.state = OMR_SB_RUNNING;
	other.monitor_pid = dead_pid();
	omr_strlcpy(other.end_reason, "timeout", sizeof(other.end_reason));
	save(&other);
	omr_sandbox_reap(cfg, &other, "gc", NULL);
	is_str(load(other.id).end_reason, "timeout", "reap: an earlier end reason is kept");

	/* A pid reused by a process that is not ours is never signalled. */
	make_record(&other, OMR_SB_RUNNING);
	{
		pid_t stranger = stand_in("/bin/sleep", "sleep", -1);

		other.monitor_pid = stranger;
		other.vmm_pid = stranger;
		save(&other);
		omr_sandbox_reap(cfg, &other, "gc", NULL);
		ok(kill(stranger, 0) == 0 && !died(stranger, 100),
		   "reap: a stranger holding the recorded pids lives on");
		stop(stranger);
	}
}

/* ---- gc ---- */

struct found {
	char kinds[32][32];
	char ids[32][OMR_ID_MAX];
	int fixed[32];
	int n;
};

static void on_found(void *user, const char *kind, const char *id, const char *what, int fixed)
{
	struct found *f = user;

	(void)what;
	if (f->n < 32) {
		omr_strlcpy(f->kinds[f->n], kind, sizeof(f->kinds[0]));
		omr_strlcpy(f->ids[f->n], id ? id : "", sizeof(f->ids[0]));
		f->fixed[f->n] = fixed;
		f->n++;
	}
}

/* How many findings of kind for id. */
static int count(const struct found *f, const char *kind, const char *id)
{
	int c = 0;

	for (int i = 0; i < f->n; i++)
		c += !strcmp(f->kinds[i], kind) && !strcmp(f->ids[i], id);
	return c;
}

/* How many findings were not fixed. */
static int unfixed(const struct found *f)
{
	int c = 0;

	for (int i = 0; i < f->n; i++)
		c += !f->fixed[i];
	return c;
}

static int gc(int check_only, unsigned prune_days, struct found *f)
{
	struct omr_gc_opts o = { .check_only = check_only, .prune_days = prune_days };
	struct omr_err *err = NULL;
	int r;

	memset(f, 0, sizeof(*f));
	r = omr_gc_run(cfg, &o, on_found, f, &err);
	if (r < 0)
		diag("gc: %s", err ? err->msg : "?");
	omr_err_free(&err);
	return r;
}

/* Starts from nothing: earlier tests' records would be findings too. */
static void clean_slate(void)
{
	char *p = path_of("state/sandboxes"), *q = path_of("run/sandboxes");

	omr_rm_rf_at(AT_FDCWD, p);
	omr_rm_rf_at(AT_FDCWD, q);
	free(p);
	free(q);
}

static void test_gc_leaves_live_alone(void)
{
	struct omr_sandbox live, starting;
	struct found f;
	pid_t mon, qemu;
	int creator;

	clean_slate();
	make_record(&live, OMR_SB_RUNNING);
	mon = fake_monitor(live.id, -1);
	qemu = fake_qemu(live.id, -1);
	live.monitor_pid = mon;
	live.vmm_pid = qemu;
	save(&live);
	make_run_dir(live.id);
	/* A create in progress: no monitor recorded yet, a run dir already,
	 * and its creator holding the directory's lock. */
	make_record(&starting, OMR_SB_STARTING);
	make_run_dir(starting.id);
	creator = omr_sandbox_creator_hold(cfg, starting.id, NULL);
	ok(creator >= 0 && omr_sandbox_creator_alive(cfg, starting.id),
	   "creator lock: held, and seen held");

	is_int(gc(1, 0, &f), 0, "gc --check: a live and a starting sandbox are no leftovers");
	is_int(gc(0, 1, &f), 0, "gc: finds nothing to clean either");
	ok(kill(mon, 0) == 0 && kill(qemu, 0) == 0 && !died(mon, 10) && !died(qemu, 10),
	   "gc: the live sandbox's monitor and QEMU still run");
	ok(run_dir_exists(live.id) && run_dir_exists(starting.id),
	   "gc: their runtime directories are kept");
	is_int(load(live.id).state, OMR_SB_RUNNING, "gc: the live record still says running");
	is_int(load(starting.id).state, OMR_SB_STARTING, "gc: the starting record still says starting");

	/* Its creator gone (the lock let go) with no monitor: a create that
	 * died, lost at once whatever its age. */
	close(creator);
	ok(!omr_sandbox_creator_alive(cfg, starting.id), "creator lock: seen free once let go");
	gc(1, 0, &f);
	is_int(count(&f, "lost_sandbox", starting.id), 1,
	       "gc --check: a starting record whose creator is gone is lost at once");
	stop(mon);
	stop(qemu);
}

static void test_gc_lost_and_stale(void)
{
	struct omr_sandbox lost, stopped;
	struct found f;
	char *sid = NULL;

	clean_slate();
	make_record(&lost, OMR_SB_RUNNING);
	lost.monitor_pid = dead_pid();
	save(&lost);
	make_run_dir(lost.id);
	make_record(&stopped, OMR_SB_STOPPED);
	make_run_dir(stopped.id);
	/* A runtime dir with no record at all. */
	sid = omr_xstrdup("sb_dddddddddd");
	make_run_dir(sid);

	int n = gc(1, 0, &f);
	is_int(count(&f, "lost_sandbox", lost.id), 1, "gc --check: a running record without its monitor is lost");
	is_int(count(&f, "stale_run_dir", stopped.id), 1, "gc --check: a stopped sandbox's run dir is stale");
	is_int(count(&f, "stale_run_dir", sid), 1, "gc --check: a run dir without a record is stale");
	ok(n >= 3, "gc --check: returns the number found (%d)", n);
	ok(run_dir_exists(stopped.id) && run_dir_exists(sid) && load(lost.id).state == OMR_SB_RUNNING,
	   "gc --check: changes nothing");

	gc(0, 0, &f);
	is_int(unfixed(&f), 0, "gc: says each finding was fixed");
	struct omr_sandbox after = load(lost.id);
	ok(after.state == OMR_SB_STOPPED, "gc: the lost sandbox is marked stopped");
	is_str(after.end_reason, "gc", "gc: ... with end reason gc");
	ok(!run_dir_exists(lost.id) && !run_dir_exists(stopped.id) && !run_dir_exists(sid),
	   "gc: the stale runtime directories are gone");
	is_int(gc(1, 0, &f), 0, "gc --check: clean afterwards");
	free(sid);
}

static void test_gc_incomplete_and_prune(void)
{
	struct omr_sandbox old, recent;
	struct found f;
	char *young = path_of("state/sandboxes/sb_eeeeeeeeee");
	char *aged = path_of("state/sandboxes/sb_ffffffffff");
	int creator;

	clean_slate();
	omr_mkdir_p(young, 0700, NULL);
	omr_mkdir_p(aged, 0700, NULL);
	/* A create in progress holds its directory's lock; a dead one does
	 * not, whatever the directory's age. */
	creator = omr_sandbox_creator_hold(cfg, "sb_eeeeeeeeee", NULL);
	make_record(&old, OMR_SB_STOPPED);
	old.ended_at = now_s() - 10 * 86400;
	save(&old);
	make_record(&recent, OMR_SB_STOPPED);
	recent.ended_at = now_s() - 86400 / 2;
	save(&recent);

	gc(1, 0, &f);
	is_int(count(&f, "incomplete_create", "sb_ffffffffff"), 1,
	       "gc --check: a directory without a record or a creator is an incomplete create");
	is_int(count(&f, "incomplete_create", "sb_eeeeeeeeee"), 0,
	       "gc --check: one whose creator holds its lock is a create in progress: left alone");
	is_int(count(&f, "expired_record", old.id), 0, "gc --check: without --prune-days no record expires");
	gc(1, 7, &f);
	is_int(count(&f, "expired_record", old.id), 1, "gc --check --prune-days 7: a 10-day-old record expires");
	is_int(count(&f, "expired_record", recent.id), 0, "gc --check --prune-days 7: a recent one does not");
	ok(state_dir_exists(old.id), "gc --check --prune-days: removes nothing");
	gc(0, 7, &f);
	ok(!state_dir_exists(old.id) && state_dir_exists(recent.id),
	   "gc --prune-days 7: the old record is removed, the recent one kept");
	ok(!state_dir_exists("sb_ffffffffff") && state_dir_exists("sb_eeeeeeeeee"),
	   "gc: the incomplete create is removed, the one in progress kept");
	close(creator);
	free(young);
	free(aged);
}

static void test_gc_orphans(void)
{
	struct omr_sandbox sb, owned;
	struct found f;
	pid_t mon, qemu, foreign = -1, cousin, elsewhere;

	clean_slate();
	/* The record says stopped; its monitor and QEMU live on. */
	make_record(&sb, OMR_SB_STOPPED);
	mon = fake_monitor(sb.id, -1);
	qemu = fake_qemu(sb.id, -1);
	/* The same command line from a program that is not ours (the real
	 * /bin/sleep): anyone may choose a command line. */
	{
		char *label = omr_strdup_printf("sbx-monitor --ready-fd 3 %s", sb.id);
		cousin = stand_in("/bin/sleep", label, -1);
		free(label);
	}
	/* Our monitor, naming this id, but serving another state dir (another
	 * OmniRun on the host): its cwd is not this sandbox's directory. */
	{
		char *prog = path_of("libexec/sbx-monitor");
		char *label = omr_strdup_printf("%s --ready-fd 3 %s", prog, sb.id);
		elsewhere = stand_in_at(prog, label, -1, "/");
		free(prog);
		free(label);
	}
	if (geteuid() == 0) {
		/* Our program, run by a user who does not own the sandbox. */
		make_record(&owned, OMR_SB_STOPPED);
		foreign = fake_qemu(owned.id, 65534);
	}

	gc(1, 0, &f);
	is_int(count(&f, "orphan_process", sb.id), 2,
	       "gc --check: the monitor and the QEMU of a stopped sandbox are orphans");
	ok(kill(mon, 0) == 0 && kill(qemu, 0) == 0 && !died(mon, 10) && !died(qemu, 10),
	   "gc --check: kills nothing");
	gc(0, 0, &f);
	ok(died(mon, 3000), "gc: the orphan monitor was SIGKILLed");
	ok(died(qemu, 3000), "gc: the orphan QEMU was SIGKILLed");
	ok(kill(cousin, 0) == 0 && !died(cousin, 10),
	   "gc: a process that only looks like ours is left alone");
	stop(cousin);
	ok(kill(elsewhere, 0) == 0 && !died(elsewhere, 10),
	   "gc: a monitor of another state dir is left alone");
	stop(elsewhere);
	if (foreign > 0) {
		is_int(count(&f, "orphan_process", owned.id), 0,
		       "gc: a process of another user is not the sandbox's");
		ok(kill(foreign, 0) == 0 && !died(foreign, 10), "gc: ... and lives on");
		stop(foreign);
	} else {
		skip("gc and a process of another user: needs root");
	}
	is_int(gc(1, 0, &f), 0, "gc --check: clean afterwards");
}

/* Host names of preview URLs: built, parsed back, anything else refused. */
static void test_expose_hosts(void)
{
	static const char *const bad[] = {
		"", "localhost", "8000-sbabcdefgh.localhost.evil", "8000-sbabcdefgh.evil",
		"8000-sbabcdefghlocalhost", "x.8000-sbabcdefgh.localhost", "08000-sbabcdefgh.localhost",
		"0-sbabcdefgh.localhost", "65536-sbabcdefgh.localhost", "123456-sbabcdefgh.localhost",
		"8000sbabcdefgh.localhost", "8000-sb__abcdefgh.localhost", "8000-sbabc.localhost",
		"8000-sbabcdefg1.localhost", "8000-abcdefghij.localhost", "-sbabcdefgh.localhost",
		"8000-sbabcdefgh.localhost:", "8000-sbabcdefgh.localhost:x", "8000-sbabcdefgh.localhost:123456",
		"8000-sbabcdefghijklmnopqrstuvwxyz234567abcdef.localhost", "[::1]:80",
		"8000-sbabcdefgh..localhost", ".localhost", "8000-sbabcdefgh.localhost/x",
		"8000-sbabcdefgh.localhost\n", "8000-sbab\x01" "defgh.localhost",
	};
	char id[OMR_ID_MAX], *host, *url, longhost[400];
	struct omr_err *err = NULL;
	unsigned port = 0;
	bool all = true;

	host = omr_expose_host(cfg, "sb_abcdefgh23", 8080);
	url = omr_expose_url(cfg, "sb_abcdefgh23", 8080);
	is_str(host, "8080-sbabcdefgh23.localhost", "expose: the host spells the id without its _");
	is_str(url, "http://8080-sbabcdefgh23.localhost/", "expose: the URL of the config's scheme");
	ok(omr_expose_host_parse(host, "localhost", id, &port, &err) == 0 &&
		   !strcmp(id, "sb_abcdefgh23") && port == 8080,
	   "expose: the host parses back to the id and the port");
	free(host);
	free(url);
	ok(omr_expose_host_parse("3000-SBABCDEFGH.LocalHost.:8080", "localhost", id, &port, &err) == 0 &&
		   !strcmp(id, "sb_abcdefgh") && port == 3000,
	   "expose: case, a trailing dot and the listener's :port do not matter");
	ok(omr_expose_host_parse("3000-sb_abcdefgh.localhost", "localhost", id, &port, &err) == 0 &&
		   !strcmp(id, "sb_abcdefgh") && port == 3000,
	   "expose: the id with its _, as E2B's getHost() writes it");
	ok(omr_expose_host_parse("65535-sbabcdefgh.preview.example.com", "preview.example.com", id,
				 &port, &err) == 0 && port == 65535,
	   "expose: a domain of several labels, port 65535");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (omr_expose_host_parse(bad[i], "localhost", id, &port, &err) == 0) {
			diag("accepted: %s", bad[i]);
			all = false;
		}
		if (err && omr_err_kind(err) != OMR_E_USAGE)
			all = false;
		omr_err_free(&err);
	}
	memset(longhost, 'a', sizeof(longhost) - 1);
	longhost[sizeof(longhost) - 1] = 0;
	all &= omr_expose_host_parse(longhost, "localhost", id, &port, &err) < 0;
	omr_err_free(&err);
	all &= omr_expose_host_parse(NULL, "localhost", id, &port, &err) < 0;
	omr_err_free(&err);
	ok(all, "expose: %zu malformed hosts (other domain, extra label, bad port, bad id, long) refused",
	   sizeof(bad) / sizeof(bad[0]) + 2);
	ok(omr_expose_id_valid("ex_abcdefgh") && !omr_expose_id_valid("sb_abcdefgh") &&
		   !omr_expose_id_valid("ex_abc") && !omr_expose_id_valid("ex_ABCDEFGH") &&
		   !omr_expose_id_valid("ex_abcdefgh/../x"),
	   "expose: exposure ids are ex_ + base32");
}

/* Exposures of a record: add, list, find, remove, the bounds. */
static void test_expose_records(void)
{
	struct omr_sandbox sb, dead;
	struct omr_exposure e, e2, *v = NULL;
	struct omr_err *err = NULL;
	size_t n = 9;
	int rc;

	make_record(&sb, OMR_SB_RUNNING);
	make_record(&dead, OMR_SB_STOPPED);
	ok(omr_expose_list(cfg, sb.id, &v, &n, &err) == 0 && n == 0, "expose: none at first");
	ok(omr_expose_add(cfg, sb.id, 8000, 0, &e, &err) == 0 && omr_expose_id_valid(e.id) &&
		   e.port == 8000 && !e.protected_ && e.created_at > 0,
	   "expose: add gives an ex_ id");
	ok(omr_expose_add(cfg, sb.id, 8001, 1, &e2, &err) == 0 && e2.protected_ && strcmp(e.id, e2.id),
	   "expose: a protected one");
	rc = omr_expose_add(cfg, sb.id, 8000, 0, &e2, &err);
	ok(rc < 0 && omr_err_kind(err) == OMR_E_STATE && strstr(err->msg, e.id),
	   "expose: a port exposed already is a state error naming its exposure");
	omr_err_free(&err);
	ok(omr_expose_add(cfg, dead.id, 8000, 0, &e2, &err) < 0 && omr_err_kind(err) == OMR_E_STATE,
	   "expose: a stopped sandbox cannot expose");
	omr_err_free(&err);
	ok(omr_expose_add(cfg, "sb_nonexistent", 8000, 0, &e2, &err) < 0 &&
		   omr_err_kind(err) == OMR_E_NOT_FOUND,
	   "expose: an unknown sandbox is not_found");
	omr_err_free(&err);
	ok(omr_expose_find(cfg, sb.id, 8001, &e2, &err) == 0 && e2.protected_,
	   "expose: find by port");
	ok(omr_expose_find(cfg, sb.id, 9999, &e2, &err) < 0 && omr_err_kind(err) == OMR_E_NOT_FOUND,
	   "expose: an unexposed port is not_found");
	omr_err_free(&err);
	for (unsigned p = 9000; p < 9000 + OMR_EXPOSE_MAX - 2; p++)
		omr_expose_add(cfg, sb.id, p, 0, &e2, &err);
	ok(omr_expose_add(cfg, sb.id, 7000, 0, &e2, &err) < 0 && omr_err_kind(err) == OMR_E_LIMIT,
	   "expose: at most %d per sandbox", OMR_EXPOSE_MAX);
	omr_err_free(&err);
	ok(omr_expose_remove(cfg, sb.id, e.id, &err) == 0 &&
		   omr_expose_remove(cfg, sb.id, e.id, &err) < 0 && omr_err_kind(err) == OMR_E_NOT_FOUND,
	   "expose: remove, then not_found");
	omr_err_free(&err);
	ok(omr_expose_remove(cfg, sb.id, "ex_../../x", &err) < 0 && omr_err_kind(err) == OMR_E_USAGE,
	   "expose: a malformed exposure id is a usage error");
	omr_err_free(&err);
	ok(omr_expose_list(cfg, sb.id, &v, &n, &err) == 0 && n == OMR_EXPOSE_MAX - 1 &&
		   v[0].port == 8001,
	   "expose: the list keeps the others, oldest first");
	free(v);
	sb.state = OMR_SB_STOPPED;
	save(&sb);
	ok(omr_expose_list(cfg, sb.id, &v, &n, &err) == 0 && n == 0 &&
		   omr_expose_find(cfg, sb.id, 8001, &e2, &err) < 0,
	   "expose: none once the sandbox stopped");
	omr_err_free(&err);
	free(v);
}

/* An exposure of every port (what an E2B sandbox has): any port finds
 * it, a port's own exposure wins. */
static void test_expose_all(void)
{
	struct omr_sandbox sb;
	struct omr_exposure all, one, e;
	struct omr_err *err = NULL;
	char *host;

	make_record(&sb, OMR_SB_RUNNING);
	ok(omr_expose_find(cfg, sb.id, 1234, &e, &err) < 0, "expose all: nothing before");
	omr_err_free(&err);
	ok(omr_expose_add(cfg, sb.id, OMR_EXPOSE_ALL, 0, &all, &err) == 0 &&
		   all.port == OMR_EXPOSE_ALL,
	   "expose all: added");
	ok(omr_expose_add(cfg, sb.id, 8001, 1, &one, &err) == 0, "expose all: and one port, protected");
	ok(omr_expose_find(cfg, sb.id, 1234, &e, &err) == 0 && !strcmp(e.id, all.id) &&
		   !e.protected_ && omr_expose_find(cfg, sb.id, 65535, &e, &err) == 0,
	   "expose all: any port finds it");
	ok(omr_expose_find(cfg, sb.id, 8001, &e, &err) == 0 && !strcmp(e.id, one.id) && e.protected_,
	   "expose all: a port's own exposure wins");
	host = omr_expose_host(cfg, sb.id, OMR_EXPOSE_ALL);
	ok(host && !strncmp(host, "*-sb", 4), "expose all: its host has * for the port (%s)", host);
	free(host);
	ok(omr_expose_remove(cfg, sb.id, all.id, &err) == 0 &&
		   omr_expose_find(cfg, sb.id, 1234, &e, &err) < 0,
	   "expose all: removed, other ports are not exposed");
	omr_err_free(&err);
}

static void test_fork_refs_and_gc(void)
{
	char key[OMR_ID_MAX];
	unsigned i = 99;
	struct found f;
	int lock;
	char *run_old, *st_old;

	ok(omr_fork_ref_parse("sb_abcdefghij.3", key, &i) == 0 && !strcmp(key, "sb_abcdefghij") &&
		   i == 3, "fork ref: KEY.INDEX parses");
	ok(omr_fork_ref_parse("sb_abcdefghij.16", key, &i) < 0 &&
		   omr_fork_ref_parse("sb_abcdefghij.", key, &i) < 0 &&
		   omr_fork_ref_parse("sb_abcdefghij.-1", key, &i) < 0 &&
		   omr_fork_ref_parse("sb_abcdefghij.1x", key, &i) < 0 &&
		   omr_fork_ref_parse("../../etc.1", key, &i) < 0 &&
		   omr_fork_ref_parse("sb_abcdefghij", key, &i) < 0 && omr_fork_ref_parse("", key, &i) < 0 &&
		   omr_fork_ref_parse(NULL, key, &i) < 0,
	   "fork ref: an index past the limit, junk, a path, no index: refused");
	ok(omr_fork_dirs_make(cfg, "../x", NULL) < 0, "fork dirs: a key that is no id is refused");

	clean_slate();
	lock = omr_fork_dirs_make(cfg, "sb_kkkkkkkkkk", NULL);
	ok(lock >= 0 && omr_fork_in_progress(cfg, "sb_kkkkkkkkkk"), "fork dirs: made and locked");
	close(omr_fork_dirs_make(cfg, "sb_llllllllll", NULL)); /* its client died */
	run_old = omr_fork_path(cfg, 1, "sb_llllllllll", NULL);
	st_old = omr_fork_path(cfg, 0, "sb_llllllllll", NULL);
	gc(1, 0, &f);
	is_int(count(&f, "stale_fork", "sb_llllllllll"), 0,
	       "gc --check: a fork made a moment ago is not stale yet (its lock may come)");
	{
		struct timespec ago[2] = { { .tv_sec = time(NULL) - 300 }, { .tv_sec = time(NULL) - 300 } };
		utimensat(AT_FDCWD, run_old, ago, 0);
		utimensat(AT_FDCWD, st_old, ago, 0);
		_cleanup_free_ char *r2 = omr_fork_path(cfg, 1, "sb_kkkkkkkkkk", NULL);
		utimensat(AT_FDCWD, r2, ago, 0);
	}
	gc(1, 0, &f);
	is_int(count(&f, "stale_fork", "sb_llllllllll"), 2,
	       "gc --check: a fork nobody holds is stale (its memory and its disks)");
	is_int(count(&f, "stale_fork", "sb_kkkkkkkkkk"), 0, "gc --check: a fork in progress is not");
	gc(0, 0, &f);
	ok(access(run_old, F_OK) < 0 && access(st_old, F_OK) < 0, "gc: the stale fork is removed");
	ok(omr_fork_in_progress(cfg, "sb_kkkkkkkkkk"), "gc: the fork in progress is kept");
	close(lock);
	omr_fork_dirs_remove(cfg, "sb_kkkkkkkkkk");
	_cleanup_free_ char *gone = omr_fork_path(cfg, 0, "sb_kkkkkkkkkk", NULL);
	ok(access(gone, F_OK) < 0, "fork dirs: removed");
	free(run_old);
	free(st_old);
}

int main(void)
{
	setup();
	test_record_round_trip();
	test_record_errors();
	test_lock();
	test_list_json_tail();
	test_monitor_alive_and_reap();
	test_gc_leaves_live_alone();
	test_gc_lost_and_stale();
	test_gc_incomplete_and_prune();
	test_gc_orphans();
	test_expose_hosts();
	test_expose_records();
	test_expose_all();
	test_fork_refs_and_gc();
	omr_config_free(cfg);
	omr_rm_rf_at(AT_FDCWD, root);
	return done_testing();
}
