/* sbx-monitor's boot, lifetime and teardown; the routing of client streams
 * onto the one agent channel lives in router.c. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "monitor-internal.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/base/log.h"
#include "omnirun/monitor/monitor.h"
#include "omnirun/base/util.h"
#include "omnirun/vm/vmm.h"

#define DISK_FD_IN_CHILD 3

/* --- console log, capped --- */

static int console_open(struct mon *m)
{
	m->console_fd = openat(m->state_fd, "console.log",
			       O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (m->console_fd < 0)
		return -errno;
	m->console_written = (uint64_t)lseek(m->console_fd, 0, SEEK_END);
	return 0;
}

/* A guest may print forever: rotate once the cap is reached so the host
 * keeps at most two capped files. */
void mon_console_drain(struct mon *m)
{
	char buf[16384];
	ssize_t n = read(m->console_pipe, buf, sizeof(buf));

	if (n <= 0) {
		if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			close(m->console_pipe);
			m->console_pipe = -1;
		}
		return;
	}
	if (m->console_written + (uint64_t)n > m->c->console_log_max) {
		close(m->console_fd);
		renameat(m->state_fd, "console.log", m->state_fd, "console.log.1");
		if (console_open(m) < 0)
			return;
		m->console_written = 0;
	}
	if (m->console_fd >= 0 && omr_write_all(m->console_fd, buf, (size_t)n) == 0)
		m->console_written += (uint64_t)n;
}

/* --- setup --- */

static int make_disk(struct mon *m, struct omr_err **err)
{
	_cleanup_free_ char *dir = omr_sandbox_state_path(m->c, m->sb.id, NULL);
	int fd;

	/* O_TMPFILE: the disk never has a name, so nothing outlives the VMM
	 * and the monitor; the guest encrypts it under a key it draws. */
	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		_cleanup_free_ char *p = omr_sandbox_state_path(m->c, m->sb.id, "disk.tmp");
		fd = open(p, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd >= 0)
			unlink(p);
	}
	if (fd < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot create the data disk");
	if (ftruncate(fd, (off_t)m->sb.disk_mb << 20) < 0) {
		int e = errno;
		close(fd);
		return omr_err_set(err, OMR_E_FAIL, e, "cannot size the data disk to %u MB", m->sb.disk_mb);
	}
	m->disk_fd = fd;
	return 0;
}

static int listen_unix(const char *path, struct omr_err **err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = -1;

	if (omr_strlcpy(sa.sun_path, path, sizeof(sa.sun_path)) < 0)
		return omr_err_setx(err, OMR_E_USAGE, ENAMETOOLONG, "socket path too long: %s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot create socket");
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot bind %s", path);
	if (chmod(path, 0600) < 0 || listen(fd, 64) < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot listen on %s", path);
	return omr_steal_fd(fd);
}

static int try_connect_agent(struct mon *m)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (omr_strlcpy(sa.sun_path, m->agent_path, sizeof(sa.sun_path)) < 0)
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	omr_fd_set_nonblock(fd, 1);
	m->agent_fd = fd;
	return 0;
}

static char *kernel_cmdline(struct mon *m)
{
	unsigned khz = m->accel == OMR_ACCEL_TCG ? omr_tcg_tsc_khz(m->c) : 0;
	_cleanup_free_ char *tsc = khz ? omr_strdup_printf("tsc_early_khz=%u ", khz)
				       : omr_xstrdup("");

	/* quiet + panic=-1 + reboot=t: a guest crash ends QEMU (-no-reboot)
	 * instead of hanging; init_on_alloc=0 keeps untouched memory free. */
	return omr_strdup_printf("console=ttyS0 quiet panic=-1 reboot=t tsc=reliable "
				 "init_on_alloc=0 %srdinit=/init omnirun.id=%s "
				 "omnirun.hostname=%s %s",
				 tsc, m->sb.id, m->sb.id, m->tpl->cmdline ? m->tpl->cmdline : "");
}

static int spawn_vmm(struct mon *m, struct omr_err **err)
{
	_cleanup_free_ char *cmdline = kernel_cmdline(m);
	int pipefd[2];
	struct omr_vmm_spec spec = {
		.qemu = m->c->qemu,
		.accel = m->accel,
		.tb_size_mb = m->c->tb_size_mb,
		.cpus = m->sb.cpus,
		.memory_mb = m->sb.memory_mb,
		.kernel = m->tpl->kernel,
		.initrd = m->tpl->initrd,
		.cmdline = cmdline,
		.agent_sock = m->agent_path,
		.qmp_sock = m->qmp_path,
		.disk_fd = DISK_FD_IN_CHILD,
	};
	_cleanup_free_ char *bench = m->c->bench_channel
		? omr_sandbox_run_path(m->c, m->sb.id, "bench.sock") : NULL;
	char **argv;
	/* QEMU's block layer also opens the disk read-only at times, and an
	 * fdset hands out only fds of the matching access mode. */
	_cleanup_free_ char *self = omr_strdup_printf("/proc/self/fd/%d", m->disk_fd);
	_cleanup_close_ int ro = open(self, O_RDONLY | O_CLOEXEC);
	int keep_from[2] = { m->disk_fd, ro };
	int keep_to[2] = { DISK_FD_IN_CHILD, DISK_FD_IN_CHILD + 1 };

	if (ro < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot reopen the data disk");

	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot create the console pipe");
	spec.bench_sock = bench;
	argv = omr_vmm_argv(&spec);
	m->vmm_pid = omr_spawn(argv, pipefd[1], keep_from, keep_to, 2, err);
	omr_argv_free(argv);
	close(pipefd[1]);
	if (m->vmm_pid < 0) {
		close(pipefd[0]);
		return -1;
	}
	m->console_pipe = pipefd[0];
	omr_fd_set_nonblock(m->console_pipe, 1);
	return 0;
}

static int signals_setup(struct mon *m, struct omr_err **err)
{
	static const int sigs[] = { SIGCHLD, SIGTERM, SIGINT, SIGHUP };
	sigset_t set;

	/* Dispositions survive exec: one ignored by whoever started us would
	 * never reach the signalfd (and an ignored SIGCHLD reaps QEMU before
	 * we see its status). */
	sigemptyset(&set);
	for (size_t i = 0; i < OMR_ARRAY_SIZE(sigs); i++) {
		signal(sigs[i], SIG_DFL);
		sigaddset(&set, sigs[i]);
	}
	sigprocmask(SIG_BLOCK, &set, NULL);
	/* Writes to a gone reader fail with EPIPE instead. */
	signal(SIGPIPE, SIG_IGN);
	m->sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (m->sig_fd < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot create signalfd");
	return 0;
}

/* Handles pending signals and reaps children; returns 1 if the VMM is
 * gone (its status in vmm_status). */
int mon_handle_signals(struct mon *m)
{
	struct signalfd_siginfo si;
	int status;
	pid_t p;

	while (read(m->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo != SIGCHLD && !m->end_reason)
			m->end_reason = "killed";
	}
	/* One loop for every child, so that QEMU's status is never reaped
	 * and lost by a wait for "any other child". */
	while ((p = waitpid(-1, &status, WNOHANG)) > 0 || (p < 0 && errno == EINTR)) {
		if (p > 0 && p == m->vmm_pid) {
			m->vmm_pid = -1;
			m->vmm_status = status;
		}
	}
	return m->vmm_pid <= 0;
}

/* Waits for the agent's HELLO; returns 0 or < 0 with *err. */
static int wait_agent(struct mon *m, struct omr_err **err)
{
	uint64_t deadline = omr_now_ms() + (uint64_t)m->c->boot_timeout_s * 1000;

	for (;;) {
		struct pollfd p[3];
		int np = 0, timeout;
		uint64_t now = omr_now_ms();

		if (now >= deadline) {
			return omr_err_setx(err, OMR_E_BOOT, ETIMEDOUT,
					    "the guest agent did not answer within %u s",
					    m->c->boot_timeout_s);
		}
		if (m->agent_fd < 0)
			try_connect_agent(m);
		p[np++] = (struct pollfd){ .fd = m->sig_fd, .events = POLLIN };
		p[np++] = (struct pollfd){ .fd = m->console_pipe, .events = POLLIN };
		p[np++] = (struct pollfd){ .fd = m->agent_fd, .events = POLLIN };
		timeout = m->agent_fd < 0 ? 20 : (int)(deadline - now);
		if (poll(p, (nfds_t)np, timeout) < 0 && errno != EINTR)
			return omr_err_set(err, OMR_E_FAIL, errno, "poll");
		if (p[1].revents)
			mon_console_drain(m);
		if (p[0].revents && mon_handle_signals(m)) {
			while (m->console_pipe >= 0)
				mon_console_drain(m);
			return omr_err_setx(err, OMR_E_BOOT, ECHILD, "QEMU exited during boot (%s %d)",
					    WIFSIGNALED(m->vmm_status) ? "signal" : "status",
					    WIFSIGNALED(m->vmm_status) ? WTERMSIG(m->vmm_status)
								       : WEXITSTATUS(m->vmm_status));
		}
		if (m->end_reason)
			return omr_err_setx(err, OMR_E_FAIL, EINTR, "interrupted during boot");
		if (m->agent_fd >= 0 && p[2].revents) {
			int rc = mon_agent_readable(m);
			if (rc < 0) {
				/* QEMU closes the chardev if the guest is gone. */
				close(m->agent_fd);
				m->agent_fd = -1;
				omr_frame_reader_free(&m->agent_rd);
				omr_frame_reader_init(&m->agent_rd);
			}
			if (m->hello)
				return 0;
		}
	}
}

/* Writes j (released) as one line; returns 0 once written, < 0 if nobody
 * reads it. */
static int ready_report(int fd, json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);
	int rc = -ENOMEM;

	if (s) {
		size_t n = strlen(s);
		s[n] = '\n'; /* the newline takes the NUL's place */
		rc = omr_write_all(fd, s, n + 1);
		free(s);
	}
	json_decref(j);
	return rc;
}

/* --- teardown --- */

/* Deterministic teardown: the VMM is killed and reaped first (so no guest
 * write is in flight), then the disk fd closed (its blocks are freed: the
 * file never had a name), then the runtime dir, then the record. */
static void teardown(struct mon *m)
{
	_cleanup_close_ int lock = -1;
	struct omr_err *e = NULL;
	struct omr_sandbox cur;

	if (m->vmm_pid > 0) {
		kill(m->vmm_pid, SIGKILL);
		while (waitpid(m->vmm_pid, NULL, 0) < 0 && errno == EINTR)
			;
		m->vmm_pid = -1;
	}
	while (m->console_pipe >= 0)
		mon_console_drain(m);
	if (m->disk_fd >= 0) {
		close(m->disk_fd);
		m->disk_fd = -1;
	}
	if (m->listen_fd >= 0)
		close(m->listen_fd);
	m->listen_fd = -1;
	omr_rm_rf_at(AT_FDCWD, m->run_path);
	lock = omr_sandbox_lock(m->c, m->sb.id, 10000, &e);
	omr_err_free(&e);
	m->sb.state = OMR_SB_STOPPED;
	m->sb.ended_at = (int64_t)(omr_wall_ms() / 1000);
	m->sb.vmm_pid = 0;
	m->sb.monitor_pid = 0;
	omr_strlcpy(m->sb.end_reason, m->end_reason ? m->end_reason : "vmm_exited",
		    sizeof(m->sb.end_reason));
	/* sbx-kill or sbx-gc may have reaped the record while we booted:
	 * their reason stands. */
	if (omr_sandbox_load(m->c, m->sb.id, &cur, NULL) == 0 && cur.state == OMR_SB_STOPPED &&
	    cur.end_reason[0])
		memcpy(m->sb.end_reason, cur.end_reason, sizeof(m->sb.end_reason));
	if (omr_sandbox_save(m->c, &m->sb, &e) < 0)
		omr_log(OMR_LOG_ERR, "%s", e->msg);
	omr_err_free(&e);
	/* Last, and without the lock: a client waiting on destroy sees it
	 * complete (within a bound). */
	if (lock >= 0)
		close(omr_steal_fd(lock));
	mon_router_close_all(m);
	omr_log(OMR_LOG_INFO, "sandbox %s stopped (%s)", m->sb.id, m->sb.end_reason);
}

static void mon_free(struct mon *m)
{
	if (m->agent_fd >= 0)
		close(m->agent_fd);
	if (m->sig_fd >= 0)
		close(m->sig_fd);
	if (m->console_fd >= 0)
		close(m->console_fd);
	if (m->state_fd >= 0)
		close(m->state_fd);
	if (m->history_fd >= 0)
		close(m->history_fd);
	omr_frame_reader_free(&m->agent_rd);
	mon_outq_clear(&m->agent_out);
	json_decref(m->hello);
	omr_template_free(m->tpl);
	free(m->run_path);
	free(m->agent_path);
	free(m->qmp_path);
	free(m->sock_path);
}

static int boot(struct mon *m, struct omr_err **err)
{
	_cleanup_free_ char *sbdir = omr_sandbox_state_path(m->c, m->sb.id, NULL);
	m->state_fd = open(sbdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (m->state_fd < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot open %s", sbdir);
	if (console_open(m) < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot open the console log");
	m->history_fd = openat(m->state_fd, "commands.jsonl",
			       O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (omr_template_load(m->c, m->sb.template_name, &m->tpl, err) < 0)
		return -1;
	/* sbx-create resolved the accelerator (KVM self-test) already. */
	m->accel = strcmp(m->sb.accel, "kvm") ? OMR_ACCEL_TCG : OMR_ACCEL_KVM;
	{
		int runfd = omr_state_run_dir(m->c, err);
		if (runfd < 0)
			return -1;
		close(runfd);
	}
	if (mkdir(m->run_path, 0700) < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot create %s", m->run_path);
	if (make_disk(m, err) < 0)
		return -1;
	m->listen_fd = listen_unix(m->sock_path, err);
	if (m->listen_fd < 0)
		return -1;
	if (signals_setup(m, err) < 0 || spawn_vmm(m, err) < 0)
		return -1;
	return wait_agent(m, err);
}

/* Sets the record to running, unless sbx-kill or sbx-gc reaped it while
 * we booted: then the boot fails and the sandbox is torn down. */
static int mark_running(struct mon *m, struct omr_err **err)
{
	_cleanup_close_ int lock = omr_sandbox_lock(m->c, m->sb.id, 10000, err);
	struct omr_sandbox cur;

	if (lock < 0 || omr_sandbox_load(m->c, m->sb.id, &cur, err) < 0)
		return -1;
	if (cur.state != OMR_SB_STARTING) {
		m->end_reason = "killed";
		return omr_err_setx(err, OMR_E_FAIL, ECANCELED, "sandbox was killed during boot");
	}
	m->sb.state = OMR_SB_RUNNING;
	m->sb.vmm_pid = m->vmm_pid;
	m->sb.monitor_pid = getpid();
	return omr_sandbox_save(m->c, &m->sb, err);
}

void omr_monitor_report_failure(int ready_fd, const struct omr_err *e)
{
	ready_report(ready_fd, json_pack("{s:b, s:s, s:s, s:i}", "ok", 0, "error",
					 e && e->msg ? e->msg : "boot failed", "code",
					 omr_err_kind_info(omr_err_kind(e))->name, "errno",
					 e ? e->errnum : 0));
	close(ready_fd);
}

/* Hands the local error e on to the caller's err (which may be NULL). */
static int pass_err(struct omr_err **err, struct omr_err **e)
{
	if (err && !*err)
		*err = omr_steal_ptr(*e);
	omr_err_free(e);
	return -1;
}

int omr_monitor_run(const struct omr_config *c, const char *id, int ready_fd,
		    struct omr_err **err)
{
	struct mon m = { .c = c, .state_fd = -1, .console_fd = -1, .console_pipe = -1,
			 .disk_fd = -1, .listen_fd = -1, .agent_fd = -1, .sig_fd = -1,
			 .history_fd = -1, .vmm_pid = -1, .destroy_client = -1 };
	struct omr_err *e = NULL; /* the report needs it even when err is NULL */

	if (omr_sandbox_load(c, id, &m.sb, &e) == 0 && m.sb.state != OMR_SB_STARTING)
		omr_err_setx(&e, OMR_E_STATE, EBUSY, "sandbox %s is %s, not starting", id,
			     omr_sb_state_name(m.sb.state));
	if (e) {
		omr_monitor_report_failure(ready_fd, e);
		return pass_err(err, &e);
	}
	m.run_path = omr_sandbox_run_path(c, id, NULL);
	m.agent_path = omr_sandbox_run_path(c, id, "agent.sock");
	m.qmp_path = omr_sandbox_run_path(c, id, "qmp.sock");
	m.sock_path = omr_sandbox_run_path(c, id, "monitor.sock");
	omr_frame_reader_init(&m.agent_rd);

	if (boot(&m, &e) < 0 || mark_running(&m, &e) < 0) {
		if (!m.end_reason)
			m.end_reason = "boot_failed";
		teardown(&m);
		omr_monitor_report_failure(ready_fd, e);
		mon_free(&m);
		return pass_err(err, &e);
	}
	{
		_cleanup_free_ char *pid = omr_strdup_printf("%d\n", (int)getpid());
		_cleanup_close_ int rfd = open(m.run_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (rfd >= 0)
			omr_write_file_atomic_at(rfd, "pid", pid, strlen(pid), 0600, NULL);
	}
	omr_log(OMR_LOG_INFO, "sandbox %s running (vmm pid %d, %s)", id, (int)m.vmm_pid, m.sb.accel);
	/* If sbx-create was interrupted, nobody will ever learn this id:
	 * a sandbox nobody can name is torn down rather than leaked. */
	if (ready_report(ready_fd, json_pack("{s:b, s:i, s:s}", "ok", 1, "vmm_pid",
					     (int)m.vmm_pid, "accel", m.sb.accel)) < 0)
		m.end_reason = "creator_gone";
	close(ready_fd);

	m.last_activity = omr_now_ms();
	mon_serve(&m);
	teardown(&m);
	mon_free(&m);
	return 0;
}
