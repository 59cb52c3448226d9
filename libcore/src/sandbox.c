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
#include <sys/wait.h>
#include <unistd.h>

#include "omnirun/accel.h"
#include "omnirun/cleanup.h"
#include "omnirun/client.h"
#include "omnirun/monitor.h"
#include "omnirun/sandbox.h"
#include "omnirun/util.h"

#define READY_FD 3
#define CONSOLE_TAIL 1500

static int check_range(const char *what, unsigned v, unsigned min, unsigned max,
		       const char *unit, struct omr_err **err)
{
	if (v < min || v > max)
		return omr_err_setx(err, ERANGE, "invalid %s %u%s: must be between %u and %u",
				   what, v, unit, min, max);
	return 0;
}

static unsigned pick(unsigned a, unsigned b, unsigned c)
{
	return a ? a : b ? b : c;
}

static int count_live(const struct omr_config *c)
{
	struct omr_sandbox *v;
	size_t n;
	int live = 0;

	if (omr_sandbox_list(c, &v, &n, NULL) < 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		live += v[i].state != OMR_SB_STOPPED;
	free(v);
	return live;
}

static int make_dir(const struct omr_config *c, char id[OMR_ID_MAX], struct omr_err **err)
{
	_cleanup_close_ int root = omr_state_sandboxes_dir(c, 1, err);

	if (root < 0)
		return -1;
	/* mkdir is the atomic claim: two creates never share an id. */
	for (int tries = 0; tries < 8; tries++) {
		if (omr_id_new(id, err) < 0)
			return -1;
		if (mkdirat(root, id, 0700) == 0)
			return 0;
		if (errno != EEXIST)
			return omr_err_set(err, errno, "cannot create sandbox directory");
	}
	return omr_err_setx(err, EEXIST, "cannot find a free sandbox id");
}

static void remove_dir(const struct omr_config *c, const char *id)
{
	_cleanup_close_ int root = omr_state_sandboxes_dir(c, 0, NULL);
	_cleanup_free_ char *run = omr_sandbox_run_path(c, id, NULL);

	if (root >= 0)
		omr_rm_rf_at(root, id);
	omr_rm_rf_at(AT_FDCWD, run);
}

/* Double fork so that the monitor is nobody's child but init's (like
 * conmon): sbx-create may exit at once.  Returns the monitor's pid as told
 * by the middle process, or < 0. */
static pid_t spawn_monitor(const struct omr_config *c, const char *id, int ready_w,
			   struct omr_err **err)
{
	_cleanup_free_ char *prog = omr_strdup_printf("%s/sbx-monitor", c->libexec_dir);
	_cleanup_free_ char *logp = omr_sandbox_state_path(c, id, "monitor.log");
	int pidpipe[2];
	pid_t mid, mon = -1;
	int status;

	if (access(prog, X_OK) < 0)
		return omr_err_set(err, errno, "cannot run %s", prog);
	if (pipe2(pidpipe, O_CLOEXEC) < 0)
		return omr_err_set(err, errno, "cannot create pipe");
	mid = fork();
	if (mid < 0) {
		close(pidpipe[0]);
		close(pidpipe[1]);
		return omr_err_set(err, errno, "cannot fork");
	}
	if (mid == 0) {
		pid_t g;

		setsid();
		g = fork();
		if (g == 0) {
			int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
			int log = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
			char *argv[] = { prog, "--ready-fd", "3", (char *)id, NULL };
			sigset_t none;

			sigemptyset(&none);
			sigprocmask(SIG_SETMASK, &none, NULL);
			if (nul < 0 || log < 0 || dup2(nul, 0) < 0 || dup2(log, 1) < 0 ||
			    dup2(log, 2) < 0 || dup2(ready_w, READY_FD) < 0)
				_exit(127);
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
		return omr_err_setx(err, ECHILD, "cannot start sbx-monitor");
	return mon;
}

/* Reads the monitor's one-line report (bounded) until EOF or the deadline. */
static json_t *read_report(int fd, unsigned timeout_s)
{
	char buf[8192];
	size_t have = 0;
	uint64_t deadline = omr_now_ms() + (uint64_t)timeout_s * 1000;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t now = omr_now_ms();
		ssize_t n;

		if (now >= deadline || poll(&p, 1, (int)(deadline - now)) <= 0)
			return NULL;
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
	return json_loads(buf, JSON_DISABLE_EOF_CHECK, NULL);
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
	int rc = -1;

	if (!omr_template_name_valid(tname))
		return omr_err_setx(err, EINVAL, "invalid template name '%s'", tname);
	if (omr_template_load(c, tname, &tpl, err) < 0)
		return -1;
	sb.cpus = pick(o->cpus, tpl->cpus, c->default_cpus);
	sb.memory_mb = pick(o->memory_mb, tpl->memory_mb, c->default_memory_mb);
	sb.disk_mb = pick(o->disk_mb, tpl->disk_mb, c->default_disk_mb);
	sb.timeout_s = pick(o->timeout_s, c->default_timeout_s, 0);
	sb.idle_timeout_s = o->idle_timeout_s == UINT32_MAX ? 0
			    : pick(o->idle_timeout_s, c->idle_timeout_s, 0);
	omr_template_free(tpl);
	if (check_range("cpu count", sb.cpus, 1, c->max_cpus, "", err) < 0 ||
	    check_range("memory", sb.memory_mb, c->min_memory_mb, c->max_memory_mb, " MB", err) < 0 ||
	    check_range("disk", sb.disk_mb, 16, c->max_disk_mb, " MB", err) < 0 ||
	    check_range("timeout", sb.timeout_s, 1, c->max_timeout_s, " s", err) < 0)
		return -1;
	if (count_live(c) >= (int)c->max_sandboxes)
		return omr_err_setx(err, EUSERS, "the host's sandbox limit (%u) is reached",
				   c->max_sandboxes);
	if (omr_accel_resolve(c, &accel, &why, err) < 0)
		return -1;
	if (make_dir(c, sb.id, err) < 0)
		return -1;
	omr_strlcpy(sb.template_name, tname, sizeof(sb.template_name));
	omr_strlcpy(sb.accel, accel == OMR_ACCEL_KVM ? "kvm" : "tcg", sizeof(sb.accel));
	sb.state = OMR_SB_STARTING;
	sb.created_at = (int64_t)(omr_wall_ms() / 1000);
	sb.expires_at = sb.created_at + sb.timeout_s;
	sb.owner = getuid();
	if (omr_sandbox_save(c, &sb, err) < 0)
		goto fail;
	if (pipe2(ready, O_CLOEXEC) < 0) {
		omr_err_set(err, errno, "cannot create pipe");
		goto fail;
	}
	mon = spawn_monitor(c, sb.id, ready[1], err);
	close(ready[1]);
	ready[1] = -1;
	if (mon < 0)
		goto fail;
	/* The monitor enforces the boot timeout; the margin covers its own
	 * start and teardown. */
	rep = read_report(ready[0], c->boot_timeout_s + 30);
	if (!rep || !json_is_true(json_object_get(rep, "ok"))) {
		const char *msg = json_string_value(json_object_get(rep, "error"));
		int e = (int)json_integer_value(json_object_get(rep, "errno"));
		_cleanup_free_ char *tail = omr_console_tail(c, sb.id, CONSOLE_TAIL);

		if (!rep) {
			/* No word from the monitor: make sure it is gone. */
			kill(mon, SIGKILL);
			msg = "sbx-monitor died or hung during boot";
			e = ECHILD;
		}
		/* Boot failures (QEMU died, no answer) share one exit code. */
		omr_err_setx(err, e == 0 || e == ECHILD ? ETIMEDOUT : e, "%s%s%s",
			     msg ? msg : "boot failed", *tail ? "; console tail:\n" : "", tail);
		goto fail;
	}
	if (omr_sandbox_load(c, sb.id, out, err) < 0)
		goto fail;
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

static int pid_cmdline_has(pid_t pid, const char *needle)
{
	_cleanup_free_ char *path = omr_strdup_printf("/proc/%d/cmdline", (int)pid);
	_cleanup_free_ char *cmd = NULL;
	size_t len;

	if (pid <= 0 || omr_read_file_at(AT_FDCWD, path, 65536, &cmd, &len, NULL) < 0)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!cmd[i])
			cmd[i] = ' ';
	return strstr(cmd, needle) != NULL;
}

static void kill_and_wait(pid_t pid, const char *id)
{
	if (!pid_cmdline_has(pid, id))
		return;
	kill(pid, SIGKILL);
	/* Not our child: poll until the kernel has it gone. */
	for (int i = 0; i < 300 && pid_cmdline_has(pid, id); i++)
		poll(NULL, 0, 10);
}

int omr_sandbox_reap(const struct omr_config *c, struct omr_sandbox *sb,
		     const char *reason, struct omr_err **err)
{
	_cleanup_free_ char *run = omr_sandbox_run_path(c, sb->id, NULL);

	kill_and_wait(sb->monitor_pid, sb->id);
	kill_and_wait(sb->vmm_pid, sb->id);
	omr_rm_rf_at(AT_FDCWD, run);
	sb->state = OMR_SB_STOPPED;
	sb->monitor_pid = 0;
	sb->vmm_pid = 0;
	if (!sb->ended_at)
		sb->ended_at = (int64_t)(omr_wall_ms() / 1000);
	if (!sb->end_reason[0])
		omr_strlcpy(sb->end_reason, reason, sizeof(sb->end_reason));
	return omr_sandbox_save(c, sb, err);
}

int omr_sandbox_kill(const struct omr_config *c, const char *id, const char *reason,
		     struct omr_err **err)
{
	struct omr_sandbox sb;
	_cleanup_close_ int fd = -1, lock = -1;
	struct omr_err *e = NULL;
	pid_t mon;

	if (omr_sandbox_load(c, id, &sb, err) < 0)
		return -1;
	if (sb.state == OMR_SB_STOPPED)
		return 0;
	mon = sb.monitor_pid;
	fd = omr_client_connect(c, id, &e);
	omr_err_free(&e);
	if (fd >= 0) {
		json_t *req = json_pack("{s:s}", "op", "destroy"), *rep = NULL;
		/* The monitor answers once teardown is complete. */
		omr_client_call(fd, 1, req, 30000, &rep, &e);
		json_decref(req);
		json_decref(rep);
		omr_err_free(&e);
		if (omr_sandbox_load(c, id, &sb, err) < 0)
			return -1;
		if (sb.state == OMR_SB_STOPPED) {
			/* Return only once the monitor process is gone too, so
			 * that a following sbx-gc --check sees nothing. */
			for (int i = 0; i < 500 && pid_cmdline_has(mon, id); i++)
				poll(NULL, 0, 10);
			return 0;
		}
	}
	/* The monitor is dead or wedged: clean up ourselves, under the lock. */
	lock = omr_sandbox_lock(c, id, 10000, err);
	if (lock < 0)
		return -1;
	if (omr_sandbox_load(c, id, &sb, err) < 0)
		return -1;
	if (sb.state == OMR_SB_STOPPED)
		return 0;
	return omr_sandbox_reap(c, &sb, reason, err);
}
