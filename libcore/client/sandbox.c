/* Sandbox create and kill; see omnirun/sandbox.h. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "omnirun/vm/accel.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/client/client.h"
#include "omnirun/client/pool.h"
#include "omnirun/client/sandbox.h"
#include "omnirun/vm/cgroup.h"
#include "omnirun/vm/template.h"
#include "omnirun/vm/vmm.h"
#include "omnirun/base/util.h"

#define READY_FD 3
#define CONSOLE_TAIL 1500
#define LOG_TAIL 1024
/* Free space kept beyond a new sandbox's disk: the disk is sparse, so a
 * full filesystem would only show later, as write errors in the guest. */
#define DISK_MARGIN_MB 64

static int check_range(const char *what, unsigned v, unsigned min, unsigned max,
		       const char *unit, struct omr_err **err)
{
	if (v < min || v > max)
		return omr_err_setx(err, OMR_E_USAGE, ERANGE, "invalid %s '%u': must be between %u and %u%s",
				   what, v, min, max, unit);
	return 0;
}

static unsigned pick(unsigned a, unsigned b, unsigned c)
{
	return a ? a : b ? b : c;
}

/* What a sandbox may still write to the state filesystem beyond its
 * disk: its console logs (two capped files) and the rest of its records. */
static uint64_t log_reserve(const struct omr_config *c)
{
	return 2 * c->console_log_max + (1u << 20);
}

/* Counts the live sandboxes and the bytes they may still take on the
 * state filesystem (each one's disk size, plus logs, less what its sparse
 * disk already occupies, which f_bavail counts already), and takes the
 * lowest free /30 of the pool for sb.  Returns the count, or < 0 when the
 * pool is used up. */
static int count_live_and_pick(const struct omr_config *c, struct omr_sandbox *sb,
			       uint64_t *promised, struct omr_err **err)
{
	struct omr_sandbox *v;
	size_t n;
	int live = 0;

	*promised = 0;
	if (omr_sandbox_list(c, &v, &n, NULL) < 0)
		v = NULL, n = 0;
	for (size_t i = 0; i < n; i++) {
		struct omr_vmm_usage u;
		uint64_t size = ((uint64_t)v[i].disk_mb << 20) + log_reserve(c);

		if (v[i].state == OMR_SB_STOPPED)
			continue;
		live++;
		omr_vmm_usage(c, &v[i], &u);
		if (u.disk_bytes > 0)
			size = (uint64_t)u.disk_bytes >= size ? 0 : size - (uint64_t)u.disk_bytes;
		*promised += size;
	}
	if (live < (int)c->max_sandboxes && omr_pool_pick(c, v, n, sb->net_addr, err) < 0)
		live = -1;
	free(v);
	return live;
}

/* The disk quota that holds: the sum of live sandboxes' disks never
 * exceeds what the state filesystem has, so one guest filling its disk
 * cannot give the others I/O errors nor stop records from being written. */
static int check_space(const struct omr_config *c, int root, uint64_t promised,
		       unsigned disk_mb, struct omr_err **err)
{
	struct statvfs st;
	uint64_t avail, need = ((uint64_t)(disk_mb + DISK_MARGIN_MB) << 20) + log_reserve(c);

	if (fstatvfs(root, &st) < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot check the free space for sandboxes");
	avail = (uint64_t)st.f_bavail * st.f_frsize;
	avail = avail > promised ? avail - promised : 0;
	if (avail < need)
		return omr_err_setx(err, OMR_E_LIMIT, ENOSPC, "not enough disk space for a %u MB disk: "
				    "%llu MB free, %llu MB of it promised to live sandboxes, "
				    "%llu MB needed", disk_mb,
				    (unsigned long long)(((uint64_t)st.f_bavail * st.f_frsize) >> 20),
				    (unsigned long long)(promised >> 20),
				    (unsigned long long)(need >> 20));
	return 0;
}

static void remove_dir(const struct omr_config *c, const char *id)
{
	_cleanup_close_ int root = omr_state_sandboxes_dir(c, 0, NULL);
	_cleanup_free_ char *run = omr_sandbox_run_path(c, id, NULL);

	if (root >= 0)
		omr_rm_rf_at(root, id);
	omr_rm_rf_at(AT_FDCWD, run);
}

/* Under the host-wide create lock, so that max_sandboxes holds: counts
 * the live sandboxes, checks the space, claims a fresh id (mkdir is the
 * atomic claim: two creates never share one) and writes the record. */
static int claim(const struct omr_config *c, struct omr_sandbox *sb, int *creator,
		 struct omr_err **err)
{
	_cleanup_close_ int lock = omr_sandbox_create_lock(c, 10000, err);
	_cleanup_close_ int root = -1;
	uint64_t promised;
	int tries, live;

	if (lock < 0)
		return -1;
	live = count_live_and_pick(c, sb, &promised, err);
	if (live < 0)
		return -1;
	if (live >= (int)c->max_sandboxes)
		return omr_err_setx(err, OMR_E_LIMIT, EUSERS, "the host's sandbox limit (%u) is reached",
				   c->max_sandboxes);
	root = omr_state_sandboxes_dir(c, 1, err);
	if (root < 0 || check_space(c, root, promised, sb->disk_mb, err) < 0)
		return -1;
	for (tries = 0; tries < 8; tries++) {
		if (omr_id_new(sb->id, err) < 0)
			return -1;
		if (mkdirat(root, sb->id, 0700) == 0)
			break;
		if (errno != EEXIST)
			return omr_err_set(err, OMR_E_FAIL, errno, "cannot create sandbox directory");
	}
	if (tries == 8)
		return omr_err_setx(err, OMR_E_FAIL, EEXIST, "cannot find a free sandbox id");
	/* Held until the create returns: while it is, the sandbox has a
	 * creator, and sbx-gc knows at once when it has none. */
	*creator = omr_sandbox_creator_hold(c, sb->id, err);
	if (*creator < 0 || omr_sandbox_reserve(c, sb->id, err) < 0 ||
	    omr_sandbox_save(c, sb, err) < 0) {
		remove_dir(c, sb->id);
		return -1;
	}
	return 0;
}

/* Double fork so that the monitor is nobody's child but init's (like
 * conmon): sbx-create may exit at once.  Returns the monitor's pid as told
 * by the middle process, or < 0. */
static pid_t spawn_monitor(const struct omr_config *c, const char *id, int ready_w,
			   struct omr_err **err)
{
	_cleanup_free_ char *prog = omr_strdup_printf("%s/sbx-monitor", c->libexec_dir);
	_cleanup_free_ char *logp = omr_sandbox_state_path(c, id, "monitor.log");
	_cleanup_free_ char *sbdir = omr_sandbox_state_path(c, id, NULL);
	int pidpipe[2];
	pid_t mid, mon = -1;
	int status;

	if (access(prog, X_OK) < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot run %s", prog);
	if (pipe2(pidpipe, O_CLOEXEC) < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot create pipe");
	mid = fork();
	if (mid < 0) {
		close(pidpipe[0]);
		close(pidpipe[1]);
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot fork");
	}
	if (mid == 0) {
		pid_t g = fork();

		if (g == 0) {
			/* Above every target, so that no dup2 below clobbers
			 * it (our fds 0-2 may have been closed). */
			int ready = fcntl(ready_w, F_DUPFD_CLOEXEC, READY_FD + 1);
			int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
			int log = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
			char *argv[] = { prog, "--ready-fd", "3", (char *)id, NULL };
			sigset_t none;

			/* Its own session and process group (which QEMU
			 * shares): no terminal, and sbx-kill can wait for the
			 * whole group. */
			setsid();
			sigemptyset(&none);
			sigprocmask(SIG_SETMASK, &none, NULL);
			if (ready < 0 || nul < 0 || log < 0 || omr_fd_move(nul, 0) < 0 ||
			    omr_fd_move(log, 1) < 0 || omr_fd_move(log, 2) < 0 ||
			    dup2(ready, READY_FD) < 0)
				_exit(127);
			/* Its working directory is its sandbox's: what ties a
			 * monitor to this state dir for sbx-gc is then the
			 * kernel's word (/proc/PID/cwd), not a command line. */
			if (chdir(sbdir) < 0)
				_exit(127);
			/* Nothing else our caller had open reaches the monitor
			 * (nor, through it, QEMU). */
			close_range(READY_FD + 1, ~0U, 0);
			execv(prog, argv);
			dprintf(READY_FD, "{\"ok\":false,\"error\":\"cannot run %s\"}\n", prog);
			_exit(127);
		}
		(void)!write(pidpipe[1], &g, sizeof(g));
		_exit(g < 0 ? 1 : 0);
	}
	close(pidpipe[1]);
	if (read(pidpipe[0], &mon, sizeof(mon)) != (ssize_t)sizeof(mon))
		mon = -1;
	close(pidpipe[0]);
	while (waitpid(mid, &status, 0) < 0 && errno == EINTR)
		;
	if (mon <= 0)
		return omr_err_setx(err, OMR_E_FAIL, ECHILD, "cannot start sbx-monitor");
	return mon;
}

static int was_killed(const struct omr_sandbox *sb)
{
	return sb->state == OMR_SB_STOPPED &&
	       (!strcmp(sb->end_reason, "killed") || !strcmp(sb->end_reason, "gc"));
}

/* Records the monitor's pid so that sbx-kill can stop the boot.  A kill
 * that came before could not see the monitor: it is stopped here. */
static void record_monitor(const struct omr_config *c, const char *id, pid_t mon)
{
	_cleanup_close_ int lock = omr_sandbox_lock(c, id, 10000, NULL);
	struct omr_sandbox sb;

	if (lock < 0 || omr_sandbox_load(c, id, &sb, NULL) < 0)
		return;
	if (sb.state == OMR_SB_STARTING) {
		sb.monitor_pid = mon;
		omr_sandbox_save(c, &sb, NULL);
	} else if (was_killed(&sb)) {
		omr_sandbox_kill_monitor(c, mon, id);
	}
}

/* Did sbx-kill or sbx-gc end the sandbox during its boot?  Their lock is
 * taken first, so that a reap in progress is seen whole. */
static int killed_during_boot(const struct omr_config *c, const char *id)
{
	_cleanup_close_ int lock = omr_sandbox_lock(c, id, 5000, NULL);
	struct omr_sandbox sb;

	return omr_sandbox_load(c, id, &sb, NULL) == 0 && was_killed(&sb);
}

/* Reads the monitor's one-line report (bounded).  Returns 0 with *out,
 * -EPIPE when the monitor went without one, or -ETIMEDOUT. */
static int read_report(int fd, unsigned timeout_s, json_t **out)
{
	char buf[8192];
	size_t have = 0;
	uint64_t deadline = omr_now_ms() + (uint64_t)timeout_s * 1000;

	*out = NULL;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t now = omr_now_ms();
		ssize_t n;
		int r;

		r = now >= deadline ? 0 : poll(&p, 1, (int)(deadline - now));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -ETIMEDOUT;
		n = read(fd, buf + have, sizeof(buf) - 1 - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		have += (size_t)n;
		if (have == sizeof(buf) - 1 || memchr(buf, '\n', have))
			break;
	}
	buf[have] = 0;
	*out = json_loads(buf, JSON_DISABLE_EOF_CHECK, NULL);
	return json_is_object(*out) ? 0 : -EPIPE;
}

/* The last line of the monitor's log: why it exited. */
static char *monitor_last_words(const struct omr_config *c, const char *id)
{
	char *log = omr_sandbox_file_tail(c, id, "monitor.log", LOG_TAIL);
	size_t n = strlen(log);
	char *nl;

	while (n && log[n - 1] == '\n')
		log[--n] = 0;
	nl = strrchr(log, '\n');
	if (nl)
		memmove(log, nl + 1, strlen(nl + 1) + 1);
	return log;
}

/* Fills *err for a boot that failed: how is read_report's result. */
static int boot_error(const struct omr_config *c, const char *id, pid_t mon, int how,
		      json_t *rep, struct omr_err **err)
{
	_cleanup_free_ char *what = NULL, *tail = NULL, *full = NULL, *safe = NULL;
	int e = (int)json_integer_value(json_object_get(rep, "errno"));
	enum omr_err_kind kind = OMR_E_BOOT;

	/* Hung or gone without a word: make sure it is gone (checked, its
	 * pid may be reused by now). */
	if (how < 0)
		omr_sandbox_kill_monitor(c, mon, id);
	if (killed_during_boot(c, id))
		return omr_err_setx(err, OMR_E_FAIL, ECANCELED, "sandbox was killed during boot");
	if (how == -ETIMEDOUT) {
		what = omr_xstrdup("sbx-monitor did not report in time");
	} else if (how < 0) {
		_cleanup_free_ char *last = monitor_last_words(c, id);
		what = omr_strdup_printf("sbx-monitor exited: %s",
					 *last ? last : "without a report");
	} else {
		const char *msg = json_string_value(json_object_get(rep, "error"));
		what = omr_xstrdup(msg ? msg : "boot failed");
	}
	tail = omr_sandbox_file_tail(c, id, "console.log", CONSOLE_TAIL);
	full = omr_strdup_printf("%s%s%s", what, *tail ? "; console tail:\n" : "", tail);
	/* The console is the guest's: it must not drive our terminal. */
	safe = omr_str_escape_ctl(full);
	/* Boot failures (QEMU died, no answer) share one kind; the monitor
	 * names a more precise one when it understood the failure. */
	if (how >= 0)
		kind = omr_err_kind_from_code(json_string_value(json_object_get(rep, "code")));
	return omr_err_setx(err, kind == OMR_E_FAIL ? OMR_E_BOOT : kind, e > 0 ? e : 0, "%s", safe);
}

/* A fork's child is its source's shape, limits, policy and lifetime:
 * no escape by cloning.  The copy only runs on the same accelerator. */
static int fork_inherit(struct omr_sandbox *sb, const struct omr_sandbox *src, const char *ref,
			enum omr_accel accel, struct omr_err **err)
{
	if (strcmp(src->accel, accel == OMR_ACCEL_KVM ? "kvm" : "tcg"))
		return omr_err_setx(err, OMR_E_STATE, EINVAL, "sandbox %s runs under %s, which "
				    "this host does not give new sandboxes now", src->id, src->accel);
	omr_strlcpy(sb->template_name, src->template_name, sizeof(sb->template_name));
	sb->cpus = src->cpus;
	sb->memory_mb = src->memory_mb;
	sb->disk_mb = src->disk_mb;
	sb->processes = src->processes;
	sb->timeout_s = src->timeout_s;
	sb->idle_timeout_s = src->idle_timeout_s;
	memcpy(sb->idle_action, src->idle_action, sizeof(sb->idle_action));
	memcpy(sb->net_allow, src->net_allow, sizeof(sb->net_allow));
	sb->net_internet = src->net_internet;
	omr_strlcpy(sb->forked_from, src->id, sizeof(sb->forked_from));
	if (omr_strlcpy(sb->fork, ref, sizeof(sb->fork)) < 0)
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "invalid fork reference");
	return 0;
}

int omr_sandbox_create(const struct omr_config *c, const struct omr_create_opts *o,
		       struct omr_sandbox *out, struct omr_err **err)
{
	const char *tname = o->template_name ? o->template_name : c->default_template;
	struct omr_template *tpl = NULL;
	struct omr_sandbox sb = { 0 };
	enum omr_accel accel;
	const char *why;
	int ready[2] = { -1, -1 };
	json_t *rep = NULL;
	pid_t mon;
	_cleanup_close_ int creator = -1;
	int rc = -1, how;

	if (!omr_template_name_valid(tname))
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "invalid template name '%s'", tname);
	if (omr_template_load(c, tname, &tpl, err) < 0)
		return -1;
	sb.cpus = pick(o->cpus, tpl->cpus, c->default_cpus);
	sb.memory_mb = pick(o->memory_mb, tpl->memory_mb, c->default_memory_mb);
	sb.disk_mb = pick(o->disk_mb, tpl->disk_mb, c->default_disk_mb);
	sb.processes = pick(o->processes, c->default_processes, 0);
	sb.timeout_s = pick(o->timeout_s, c->default_timeout_s, 0);
	sb.idle_timeout_s = o->idle_timeout_s == UINT32_MAX ? 0
			    : pick(o->idle_timeout_s, c->idle_timeout_s, 0);
	omr_template_free(tpl);
	omr_strlcpy(sb.idle_action, o->idle_action ? o->idle_action : c->idle_action,
		    sizeof(sb.idle_action));
	if (omr_idle_action_check(o->idle_action ? o->idle_action : c->idle_action, err) < 0)
		return -1;
	if (check_range("cpu count", sb.cpus, 1, c->max_cpus, "", err) < 0 ||
	    check_range("memory", sb.memory_mb, c->min_memory_mb, c->max_memory_mb, " MB", err) < 0 ||
	    check_range("disk", sb.disk_mb, 16, c->max_disk_mb, " MB", err) < 0 ||
	    check_range("process count", sb.processes, 16, c->max_processes, "", err) < 0 ||
	    check_range("timeout", sb.timeout_s, 1, c->max_timeout_s, " s", err) < 0)
		return -1;
	for (size_t i = 0; i < o->nallow; i++)
		if (omr_allow_add(sb.net_allow, o->allow[i], err) < 0)
			return omr_err_wrap(err, "--allow");
	sb.net_internet = !!o->internet;
	if (sb.net_internet && !c->net_uplink)
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "--internet needs an uplink: set "
				    "[network] uplink in %s", c->conf_path ? c->conf_path
				    : OMR_DEFAULT_CONF);
	if (omr_accel_resolve(c, &accel, &why, err) < 0)
		return -1;
	omr_strlcpy(sb.template_name, tname, sizeof(sb.template_name));
	if (o->fork_src && fork_inherit(&sb, o->fork_src, o->fork_ref, accel, err) < 0)
		return -1;
	omr_strlcpy(sb.accel, accel == OMR_ACCEL_KVM ? "kvm" : "tcg", sizeof(sb.accel));
	if (o->pool) {
		/* Waits for a create, which gives it its own terms. */
		sb.timeout_s = c->max_timeout_s;
		sb.idle_timeout_s = 0;
		sb.net_allow[0] = 0;
		sb.net_internet = 0;
		omr_strlcpy(sb.pool, "ready", sizeof(sb.pool));
	} else if (!o->fork_src && omr_pool_claim(c, &sb, out)) {
		return 0;
	}
	sb.state = OMR_SB_STARTING;
	sb.created_at = (int64_t)(omr_wall_ms() / 1000);
	sb.expires_at = sb.created_at + sb.timeout_s;
	sb.owner = getuid();
	if (claim(c, &sb, &creator, err) < 0)
		return -1;
	if (pipe2(ready, O_CLOEXEC) < 0) {
		omr_err_set(err, OMR_E_FAIL, errno, "cannot create pipe");
		goto fail;
	}
	mon = spawn_monitor(c, sb.id, ready[1], err);
	close(ready[1]);
	ready[1] = -1;
	if (mon < 0)
		goto fail;
	record_monitor(c, sb.id, mon);
	/* The monitor enforces the boot timeout; the margin covers its own
	 * start and teardown. */
	how = read_report(ready[0], c->boot_timeout_s + 30, &rep);
	if (how < 0 || !json_is_true(json_object_get(rep, "ok"))) {
		boot_error(c, sb.id, mon, how, rep, err);
		goto fail;
	}
	if (omr_sandbox_load(c, sb.id, out, err) < 0) {
		omr_sandbox_kill_monitor(c, mon, sb.id); /* a sandbox nobody can name */
		goto fail;
	}
	rc = 0;
	goto done;
fail:
	/* Nothing is left behind: the monitor cleaned its part already. */
	remove_dir(c, sb.id);
done:
	json_decref(rep);
	if (ready[0] >= 0)
		close(ready[0]);
	return rc;
}

/* Starts a new monitor for a persisted sandbox (sbx-resume): the record
 * goes back to starting, its lifetime on from where the persist froze
 * it, and the monitor finds the image (monitor/persist.c).  A monitor
 * that fails leaves the image and says persisted again; one that died
 * without a word is put back here. */
int omr_sandbox_restart(const struct omr_config *c, const char *id, struct omr_sandbox *out,
			struct omr_err **err)
{
	_cleanup_close_ int creator = -1;
	int ready[2] = { -1, -1 }, rc = -1, how;
	struct omr_sandbox sb;
	json_t *rep = NULL;
	pid_t mon;

	creator = omr_sandbox_creator_hold(c, id, err);
	if (creator < 0)
		return -1;
	{
		_cleanup_close_ int lock = omr_sandbox_lock(c, id, 10000, err);
		int64_t now = (int64_t)(omr_wall_ms() / 1000);
		if (lock < 0 || omr_sandbox_load(c, id, &sb, err) < 0)
			return -1;
		if (sb.state != OMR_SB_PERSISTED)
			return omr_err_setx(err, OMR_E_STATE, EALREADY, "sandbox %s is %s, not "
					    "persisted", id, omr_sb_state_name(sb.state));
		if (sb.paused_at > 0 && sb.expires_at > sb.paused_at)
			sb.expires_at = now + (sb.expires_at - sb.paused_at);
		sb.paused_at = 0;
		sb.state = OMR_SB_STARTING;
		if (omr_sandbox_save(c, &sb, err) < 0)
			return -1;
	}
	if (pipe2(ready, O_CLOEXEC) < 0) {
		omr_err_set(err, OMR_E_FAIL, errno, "cannot create pipe");
		goto back;
	}
	mon = spawn_monitor(c, id, ready[1], err);
	close(ready[1]);
	if (mon < 0)
		goto back;
	record_monitor(c, id, mon);
	how = read_report(ready[0], c->boot_timeout_s + 30, &rep);
	if (how < 0 || !json_is_true(json_object_get(rep, "ok"))) {
		boot_error(c, id, mon, how, rep, err);
		goto back;
	}
	rc = omr_sandbox_load(c, id, out, err);
	goto done;
back: {
	/* Whatever happened, the image is not lost: persisted again. */
	_cleanup_close_ int lock = omr_sandbox_lock(c, id, 10000, NULL);
	if (lock >= 0 && omr_sandbox_load(c, id, &sb, NULL) == 0 && sb.state == OMR_SB_STARTING) {
		sb.state = OMR_SB_PERSISTED;
		sb.paused_at = (int64_t)(omr_wall_ms() / 1000);
		sb.monitor_pid = 0;
		sb.vmm_pid = 0;
		omr_sandbox_save(c, &sb, NULL);
	}
}
done:
	json_decref(rep);
	if (ready[0] >= 0)
		close(ready[0]);
	return rc;
}

/* Asks a running sandbox's monitor to tear down.  Returns 0 once the
 * record says stopped and the monitor has exited (so that a following
 * sbx-gc --check sees nothing), < 0 when it did not. */
static int ask_destroy(const struct omr_config *c, struct omr_sandbox *sb)
{
	_cleanup_close_ int pfd = omr_pidfd_open(sb->monitor_pid);
	_cleanup_close_ int fd = -1;
	struct omr_err *e = NULL;
	json_t *req = json_pack("{s:s}", "op", "destroy"), *rep = NULL;

	if (pfd >= 0 && !omr_sandbox_monitor_alive(c, sb))
		omr_closep(&pfd); /* its pid is someone else's now */
	fd = omr_client_connect(c, sb->id, &e);
	/* The monitor answers once teardown is complete. */
	if (fd >= 0)
		omr_client_call(fd, 1, req, 30000, &rep, &e);
	json_decref(req);
	json_decref(rep);
	omr_err_free(&e);
	if (fd < 0 || omr_sandbox_load(c, sb->id, sb, NULL) < 0 || sb->state != OMR_SB_STOPPED)
		return -1;
	if (pfd >= 0)
		omr_pidfd_wait(pfd, 5000);
	return 0;
}

/* omr_sandbox_load, where a corrupt record is no failure. */
static int load_or_corrupt(const struct omr_config *c, const char *id, struct omr_sandbox *sb,
			   struct omr_err **err)
{
	struct omr_err *e = NULL;

	if (omr_sandbox_load(c, id, sb, &e) == 0 || sb->state == OMR_SB_CORRUPT) {
		omr_err_free(&e);
		return 0;
	}
	if (err && !*err)
		*err = omr_steal_ptr(e);
	omr_err_free(&e);
	return -1;
}

int omr_sandbox_kill(const struct omr_config *c, const char *id, const char *reason,
		     struct omr_err **err)
{
	struct omr_sandbox sb = { 0 };
	_cleanup_close_ int lock = -1;

	/* A corrupt record still names a sandbox to tear down: its monitor
	 * is found from the run dir. */
	if (load_or_corrupt(c, id, &sb, err) < 0)
		return -1;
	if (sb.state == OMR_SB_STOPPED)
		return 0;
	/* A booting monitor serves nobody yet: it is killed below. */
	if (sb.state != OMR_SB_STARTING && sb.state != OMR_SB_CORRUPT && ask_destroy(c, &sb) == 0)
		return 0;
	/* Booting, dead, wedged or unreadable: clean up ourselves, under the
	 * lock (the monitor, about to say running, then sees it stopped). */
	lock = omr_sandbox_lock(c, id, 10000, err);
	if (lock < 0)
		return -1;
	if (load_or_corrupt(c, id, &sb, err) < 0)
		return -1;
	if (sb.state == OMR_SB_STOPPED)
		return 0;
	if (omr_sandbox_reap(c, &sb, reason, err) < 0)
		return -1;
	/* The monitor made QEMU's cgroup and did not live to remove it. */
	omr_cgroup_remove(c, id);
	return 0;
}
