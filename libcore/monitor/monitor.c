/* sbx-monitor's boot, lifetime and teardown, on one event loop: signals,
 * the console (console.c), the agent channel and the clients (conn.c,
 * which hands their frames to the router, router.c) and the timers of the
 * sandbox's lifetime are sources of that loop. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "monitor-internal.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/base/log.h"
#include "omnirun/base/util.h"
#include "omnirun/monitor/monitor.h"
#include "omnirun/net/net.h"
#include "omnirun/vm/snapshot.h"

#define HISTORY_MAX (4u << 20)

/* Ends the sandbox (the first reason stands) and leaves the loop. */
void mon_end(struct mon *m, const char *reason)
{
	if (reason && !m->end_reason)
		m->end_reason = reason;
	omr_loop_quit(m->loop, 1);
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

/* Starts from a saved state (a snapshot, a fork's copy, a persisted
 * image) rather than booting a kernel. */
static int restoring(const struct mon *m)
{
	return m->snap || m->sb.fork[0] || m->from_persist;
}

/* Starts the VMM with the console on a pipe to us.  The one place a VMM
 * is spawned: a jail wraps this call. */
static int spawn_vmm(struct mon *m, struct omr_err **err)
{
	_cleanup_free_ char *cmdline = omr_vm_kernel_cmdline(m->c, m->tpl, m->accel, m->sb.id, 1);
	_cleanup_free_ char *bench = m->c->bench_channel
		? omr_sandbox_run_path(m->c, m->sb.id, "bench.sock") : NULL;
	_cleanup_free_ char *firmware = omr_vmm_firmware(m->c->qemu);
	int pipefd[2], rc;
	struct omr_vmm_spec spec = {
		.qemu = m->c->qemu,
		.accel = m->accel,
		.tb_size_mb = m->c->tb_size_mb,
		.cpus = m->sb.cpus,
		.memory_mb = m->sb.memory_mb,
		.kernel = m->tpl->kernel,
		.initrd = m->tpl->initrd,
		.cmdline = cmdline,
		.firmware = firmware,
		.agent_sock = m->agent_path,
		.qmp_sock = m->qmp_path,
		.bench_sock = bench,
		.disk_fd = m->disk_fd,
		.rootfs = m->tpl->rootfs,
		.tap_fd = m->net ? omr_net_tap_fd(m->net) : -1,
		.mac = m->net ? omr_net_mac(m->net) : NULL,
		/* The jail, as [jail] says (omnirun/vm/jail.h). */
		.config = m->c,
		.sandbox_id = m->sb.id,
		.processes = m->sb.processes,
		.mem_path = m->snap ? m->snap->ram : NULL,
		.mem_shared = 0,
		.mem_anon_backend = m->fork_ram_mem,
		.incoming_fd = m->incoming_fd,
	};

	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot create the console pipe");
	spec.console_fd = pipefd[1];
	rc = omr_vmm_spawn(&m->vmm, &spec, err);
	close(pipefd[1]);
	if (m->incoming_fd >= 0) {
		close(m->incoming_fd); /* QEMU reads it now */
		m->incoming_fd = -1;
	}
	/* The VMM holds the tap now: when it goes, the tap goes. */
	if (m->net)
		omr_net_drop_tap(m->net);
	if (rc < 0) {
		close(pipefd[0]);
		return -1;
	}
	if (mon_console_start(&m->console, m->loop, pipefd[0], err) < 0)
		return -1;
	mon_fork_note_rootfs(m);
	if (restoring(m))
		return omr_vmm_restore(&m->vmm, m->snap != NULL, err);
	return 0;
}

/* --- signals --- */

/* One loop for every child, so that QEMU's status is never reaped and
 * lost by a wait for "any other child". */
static void on_sigchld(void *user, const struct signalfd_siginfo *si)
{
	struct mon *m = user;
	int status;
	pid_t p;

	(void)si;
	while ((p = waitpid(-1, &status, WNOHANG)) > 0 || (p < 0 && errno == EINTR)) {
		if (p > 0 && p == m->vmm.pid) {
			m->vmm.pid = -1;
			m->vmm_status = status;
		}
	}
	/* During boot the boot fails instead (boot_failed). */
	if (m->vmm.pid <= 0)
		mon_end(m, m->booting ? NULL : "vmm_exited");
}

static void on_sigterm(void *user, const struct signalfd_siginfo *si)
{
	(void)si;
	mon_end(user, "killed");
}

static int signals_setup(struct mon *m, struct omr_err **err)
{
	static const int ends[] = { SIGTERM, SIGINT, SIGHUP };

	/* Writes to a gone reader fail with EPIPE instead. */
	signal(SIGPIPE, SIG_IGN);
	if (omr_loop_add_signal(m->loop, SIGCHLD, on_sigchld, m, err) < 0)
		return -1;
	for (size_t i = 0; i < OMR_ARRAY_SIZE(ends); i++)
		if (omr_loop_add_signal(m->loop, ends[i], on_sigterm, m, err) < 0)
			return -1;
	return 0;
}

/* --- the router's hooks --- */

static json_t *status_hook(void *user)
{
	struct mon *m = user;

	return json_pack("{s:s, s:s, s:s, s:I, s:I, s:i, s:i, s:i, s:i, s:s}",
			 "sandbox_id", m->sb.id, "template", m->sb.template_name,
			 "state", omr_sb_state_name(m->sb.state),
			 "created_at", (json_int_t)m->sb.created_at,
			 "expires_at", (json_int_t)m->sb.expires_at,
			 "cpus", m->sb.cpus, "memory_mb", m->sb.memory_mb,
			 "disk_mb", m->sb.disk_mb, "vmm_pid", (int)m->vmm.pid,
			 "accel", m->sb.accel);
}

static void destroy_hook(void *user)
{
	mon_end(user, "killed");
}

/* Bounded: a sandbox that runs millions of commands keeps the first
 * HISTORY_MAX bytes of its history. */
static void history_hook(void *user, const char *line, size_t len)
{
	struct mon *m = user;
	_cleanup_free_ char *l = NULL;

	off_t end;
	ssize_t n;

	if (m->history_fd < 0)
		return;
	end = lseek(m->history_fd, 0, SEEK_END);
	if (end < 0 || end + (off_t)len >= (off_t)HISTORY_MAX) {
		m->history_dropped++;
		return;
	}
	l = omr_xmalloc(len + 1);
	memcpy(l, line, len);
	l[len] = '\n';
	/* A line is written whole or not at all: a short write (a full
	 * disk) is cut back, so no later reader sees half a record. */
	n = write(m->history_fd, l, len + 1);
	if (n == (ssize_t)len + 1)
		return;
	if (n > 0 && ftruncate(m->history_fd, end) < 0)
		omr_log(OMR_LOG_WARN, "history: cannot cut back a partial line: %s", strerror(errno));
	if (!m->history_dropped++)
		omr_log(OMR_LOG_WARN, "history: a command was not recorded: %s",
			n < 0 ? strerror(errno) : "short write");
}

/* The monitor's own requests to the agent: +1 the network (net-hooks.c),
 * +2 the hello, +3 the identity, +4 the clock (lifecycle.c). */
#define OWN_HELLO_GSID (MON_OWN_GSID_MIN + 2)
#define OWN_IDENTITY_GSID (MON_OWN_GSID_MIN + 3)
/* A restored guest formats its data disk in this time (about 1 s for
 * 512 MB under TCG). */
#define IDENTITY_TIMEOUT_MS 30000

static void own_end_hook(void *user, uint32_t gsid, const uint8_t *p, size_t len)
{
	struct mon *m = user;
	json_t *j, *e;

	if (gsid == OWN_HELLO_GSID)
		return; /* its HELLO frame is what boot waits for */
	if (gsid != OWN_IDENTITY_GSID) {
		mon_own_end(user, gsid, p, len); /* the clock's, the network's */
		return;
	}
	if (m->identity_done)
		return;
	j = json_loadb((const char *)p, len, 0, NULL);
	e = json_object_get(j, "error");
	m->identity_done = e ? -1 : 1;
	if (e)
		m->identity_error = omr_xstrdup(json_is_string(e) ? json_string_value(e) : "?");
	json_decref(j);
	omr_loop_quit(m->loop, 0);
}

static const struct mon_router_ops router_ops = {
	.status = status_hook,
	.destroy = destroy_hook,
	.history = history_hook,
	.request = mon_request,
	.own_end = own_end_hook,
};

/* --- the agent channel --- */

static void connect_agent(void *user);

static void agent_read_hook(void *user)
{
	struct mon *m = user;

	if (m->booting && mon_router_hello(m->router))
		omr_loop_quit(m->loop, 0);
}

static void agent_lost_hook(void *user)
{
	struct mon *m = user;

	/* QEMU closes the chardev if the guest is gone; while booting, the
	 * guest may still come. */
	if (m->booting) {
		if (!m->connect_timer)
			m->connect_timer = omr_loop_add_timer(m->loop, MON_AGENT_RETRY_MS,
							      connect_agent, m);
		return;
	}
	omr_log(OMR_LOG_WARN, "agent channel closed");
	mon_end(m, "vmm_exited");
}

static const struct mon_conns_ops conns_ops = {
	.agent_read = agent_read_hook,
	.agent_lost = agent_lost_hook,
};

static int try_connect_agent(struct mon *m)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = -1;

	if (omr_strlcpy(sa.sun_path, m->agent_path, sizeof(sa.sun_path)) < 0)
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	return mon_conns_agent(&m->conns, omr_steal_fd(fd), NULL);
}

static void connect_agent(void *user)
{
	struct mon *m = user;

	m->connect_timer = 0;
	if (mon_conns_has_agent(&m->conns))
		return;
	if (try_connect_agent(m) < 0) {
		m->connect_timer = omr_loop_add_timer(m->loop, MON_AGENT_RETRY_MS, connect_agent, m);
		return;
	}
	/* What was queued before the channel existed (a restored guest's
	 * hello) goes out now: the loop writes only after an event, and a
	 * restored agent that still sees its host connected (QEMU accepted
	 * us before the guest ran) says nothing until asked. */
	mon_conns_kick(&m->conns);
}

static void boot_timeout(void *user)
{
	omr_loop_quit(((struct mon *)user)->loop, 1);
}

/* Waits for the agent's HELLO; returns 0 or < 0 with *err. */
static int wait_agent(struct mon *m, struct omr_err **err)
{
	uint64_t timer = omr_loop_add_timer(m->loop, (uint64_t)m->c->boot_timeout_s * 1000,
					    boot_timeout, m);

	int rc;

	m->booting = 1;
	/* A restored agent is past its HELLO: ask for one (queued until the
	 * channel is up). */
	if (restoring(m)) {
		static const char hello[] = "{\"op\":\"hello\"}";
		mon_router_own_request(m->router, OWN_HELLO_GSID, hello, sizeof(hello) - 1);
	}
	connect_agent(m);
	rc = omr_loop_run(m->loop);
	m->booting = 0;
	omr_loop_cancel_timer(m->loop, timer);
	if (m->connect_timer)
		omr_loop_cancel_timer(m->loop, m->connect_timer);
	m->connect_timer = 0;
	if (rc < 0)
		return omr_err_set(err, OMR_E_FAIL, -rc, "cannot wait for events");
	if (m->vmm.pid <= 0)
		return omr_err_setx(err, OMR_E_BOOT, ECHILD, "QEMU exited during boot (%s %d)",
				    WIFSIGNALED(m->vmm_status) ? "signal" : "status",
				    WIFSIGNALED(m->vmm_status) ? WTERMSIG(m->vmm_status)
							       : WEXITSTATUS(m->vmm_status));
	if (m->end_reason)
		return omr_err_setx(err, OMR_E_FAIL, EINTR, "interrupted during boot");
	if (!mon_router_hello(m->router))
		return omr_err_setx(err, OMR_E_BOOT, ETIMEDOUT,
				    "the guest agent did not answer within %u s", m->c->boot_timeout_s);
	return 0;
}

static void identity_timeout(void *user)
{
	omr_loop_quit(((struct mon *)user)->loop, 1);
}

/* A clone holds the template's memory: before it is reported ready it
 * gets host entropy and a reseed, its own hostname and the host's clock,
 * and then sets up its encrypted disk under a key drawn after the
 * reseed (the disk was never touched in the template). */
static int give_identity(struct mon *m, struct omr_err **err)
{
	unsigned char seed[64];
	_cleanup_free_ char *b64 = NULL, *s = NULL;
	struct timespec now;
	uint64_t timer;
	json_t *req;
	int rc;

	if (getrandom(seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot draw entropy for the guest");
	b64 = omr_b64_encode(seed, sizeof(seed));
	explicit_bzero(seed, sizeof(seed));
	clock_gettime(CLOCK_REALTIME, &now);
	req = json_pack("{s:s, s:s, s:s, s:I, s:s?, s:I, s:s?, s:s}", "op", "identity", "hostname",
			m->sb.id, "entropy", b64, "time_ns",
			(json_int_t)now.tv_sec * 1000000000 + now.tv_nsec, "disk",
			m->disk_fd >= 0 && m->snap ? "/dev/vda" : NULL, "pids",
			(json_int_t)m->sb.processes, "mac", m->net ? omr_net_mac(m->net) : NULL,
			"mac_was", m->snap ? OMR_VMM_TEMPLATE_MAC : m->fork_mac);
	s = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (!s)
		abort();
	mon_router_own_request(m->router, OWN_IDENTITY_GSID, s, strlen(s));
	explicit_bzero(s, strlen(s));
	explicit_bzero(b64, strlen(b64));
	mon_conns_kick(&m->conns);
	timer = omr_loop_add_timer(m->loop, IDENTITY_TIMEOUT_MS, identity_timeout, m);
	rc = omr_loop_run(m->loop);
	omr_loop_cancel_timer(m->loop, timer);
	if (rc < 0)
		return omr_err_set(err, OMR_E_FAIL, -rc, "cannot wait for events");
	if (m->identity_done < 0)
		return omr_err_setx(err, OMR_E_BOOT, 0, "the restored guest could not take its "
				    "identity: %s", m->identity_error);
	if (m->identity_done == 0)
		return omr_err_setx(err, OMR_E_BOOT, ETIMEDOUT, "the restored guest did not take "
				    "its identity in time");
	return 0;
}

/* Picks the template's snapshot when it fits this sandbox, else says in
 * the record why the sandbox boots cold. */
static void choose_boot(struct mon *m)
{
	_cleanup_free_ char *why = NULL;

	omr_strlcpy(m->sb.boot, "cold", sizeof(m->sb.boot));
	if (omr_snapshot_find(m->c, m->tpl, m->sb.accel, m->sb.cpus, m->sb.memory_mb,
			      m->sb.disk_mb, &m->snap, &why) <= 0) {
		omr_strlcpy(m->sb.boot_why, why ? why : "no snapshot", sizeof(m->sb.boot_why));
		return;
	}
	/* Deleted since it was checked: boot cold. */
	m->incoming_fd = open(m->snap->state, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (m->incoming_fd < 0) {
		omr_strlcpy(m->sb.boot_why, "the snapshot went away", sizeof(m->sb.boot_why));
		omr_snapshot_free(m->snap);
		m->snap = NULL;
		return;
	}
	omr_strlcpy(m->sb.boot, "restore", sizeof(m->sb.boot));
	m->sb.boot_why[0] = 0;
}

/* --- lifetime --- */

/* Forgets orphans past their time, then ends the sandbox when its
 * lifetime or idle time is over; else checks again at the next deadline
 * (at most MON_TICK_MS away). */
static void lifetime_check(void *user)
{
	struct mon *m = user;
	uint64_t now = omr_now_ms(), next = MON_TICK_MS, orphan;
	int64_t wall = (int64_t)omr_wall_ms();

	m->tick_timer = 0;
	orphan = mon_router_expire(m->router, now);
	if (orphan && orphan < next)
		next = orphan;
	if (m->sb.expires_at > 0) {
		int64_t left = m->sb.expires_at * 1000 - wall;
		if (left <= 0) {
			mon_end(m, "timeout");
			return;
		}
		if ((uint64_t)left < next)
			next = (uint64_t)left;
	}
	/* A paused sandbox is idle by choice: its idle time starts again on
	 * resume.  Its lifetime runs on (issue 9: the pause counts). */
	if (m->sb.idle_timeout_s > 0 && m->run == MON_RUN_RUNNING) {
		uint64_t idle = now - mon_router_last_activity(m->router, now);
		uint64_t max = (uint64_t)m->sb.idle_timeout_s * 1000;
		if (idle >= max && !strcmp(m->sb.idle_action, "persist")) {
			json_decref(mon_persist(m)); /* a failure is logged */
			if (m->persisted)
				return;
			mon_end(m, "idle"); /* it could not be kept: as kill */
			return;
		}
		if (idle >= max && strcmp(m->sb.idle_action, "pause")) {
			mon_end(m, "idle");
			return;
		}
		if (idle >= max)
			json_decref(mon_pause(m, NULL)); /* a failure is logged */
		else if (max - idle < next)
			next = max - idle;
	}
	m->tick_timer = omr_loop_add_timer(m->loop, next, lifetime_check, m);
}

void mon_lifetime_reschedule(struct mon *m)
{
	if (m->tick_timer)
		omr_loop_cancel_timer(m->loop, m->tick_timer);
	m->tick_timer = 0;
	lifetime_check(m);
}

/* Serves clients until the sandbox ends. */
static void serve(struct mon *m)
{
	struct omr_err *e = NULL;

	if (mon_conns_serve(&m->conns, m->listen_fd, &e) < 0) {
		omr_log(OMR_LOG_ERR, "%s", e->msg);
		omr_err_free(&e);
		m->end_reason = "vmm_exited";
		return;
	}
	m->listen_fd = -1; /* the connections own it now */
	/* Idleness counts from here, not from the start of the boot. */
	mon_router_touch(m->router, omr_now_ms());
	lifetime_check(m);
	if (!m->end_reason && omr_loop_run(m->loop) < 0)
		mon_end(m, "vmm_exited");
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

/* The end of a monitor whose sandbox lives on as a persisted image: it
 * was just persisted (the record says so already), or its resume failed
 * before it ran (the image is untouched: the record says persisted
 * again).  Whoever waits gets their answer first. */
static void persisted_teardown(struct mon *m)
{
	struct omr_err *e = NULL;

	if (m->from_persist) {
		_cleanup_close_ int lock = omr_sandbox_lock(m->c, m->sb.id, 10000, &e);
		struct omr_sandbox cur;
		/* Unless sbx-kill reaped it meanwhile. */
		if (lock >= 0 && omr_sandbox_load(m->c, m->sb.id, &cur, NULL) == 0 &&
		    cur.state != OMR_SB_STOPPED) {
			m->sb.state = OMR_SB_PERSISTED;
			m->sb.vmm_pid = 0;
			m->sb.monitor_pid = 0;
			if (omr_sandbox_save(m->c, &m->sb, &e) < 0)
				omr_log(OMR_LOG_ERR, "%s", e->msg);
		}
		omr_err_free(&e);
	}
	if (m->router) {
		mon_conns_flush_all(&m->conns, MON_DESTROY_FLUSH_MS);
		mon_conns_close_all(&m->conns);
	}
	omr_log(OMR_LOG_INFO, "sandbox %s %s", m->sb.id,
		m->persisted ? "persisted: its monitor ends" : "stays persisted");
}

/* Deterministic teardown: the VMM is killed and reaped first (so no guest
 * write is in flight), then the disk fd closed (its blocks are freed: the
 * file never had a name), then the runtime dir, then the record. */
static void teardown(struct mon *m)
{
	_cleanup_close_ int lock = -1;
	struct omr_err *e = NULL;
	struct omr_sandbox cur;
	const char *why;

	if (m->vmm.pid > 0) {
		kill(m->vmm.pid, SIGKILL);
		while (waitpid(m->vmm.pid, NULL, 0) < 0 && errno == EINTR)
			;
		m->vmm.pid = -1;
	}
	/* QEMU is reaped: its cgroup can go, its uid be given back.  The jail
	 * may know why QEMU died (seccomp, oom): more than "vmm_exited". */
	why = omr_vmm_reaped(&m->vmm, m->vmm_status);
	if (why && (!m->end_reason || !strcmp(m->end_reason, "vmm_exited")))
		m->end_reason = why;
	mon_lifecycle_close(m);
	mon_console_finish(&m->console);
	mon_net_close(m);
	if (m->disk_fd >= 0) {
		close(m->disk_fd);
		m->disk_fd = -1;
	}
	if (m->listen_fd >= 0)
		close(m->listen_fd);
	m->listen_fd = -1;
	if (m->router && m->conns.listen_fd >= 0) {
		/* Nobody new: the socket goes with the runtime dir. */
		omr_loop_remove_fd(m->loop, m->conns.listen_fd);
		close(m->conns.listen_fd);
		m->conns.listen_fd = -1;
	}
	omr_rm_rf_at(AT_FDCWD, m->run_path);
	if (m->persisted || m->from_persist) {
		persisted_teardown(m);
		return;
	}
	lock = omr_sandbox_lock(m->c, m->sb.id, 10000, &e);
	if (lock < 0)
		omr_log(OMR_LOG_WARN, "%s", e->msg);
	omr_err_free(&e);
	m->sb.state = OMR_SB_STOPPED;
	m->sb.ended_at = (int64_t)(omr_wall_ms() / 1000);
	m->sb.vmm_pid = 0;
	m->sb.monitor_pid = 0;
	m->sb.paused_at = 0;
	omr_strlcpy(m->sb.end_reason, m->end_reason ? m->end_reason : "vmm_exited",
		    sizeof(m->sb.end_reason));
	/* sbx-kill or sbx-gc may have reaped the record while we booted:
	 * their reason stands. */
	if (omr_sandbox_load(m->c, m->sb.id, &cur, NULL) == 0 && cur.state == OMR_SB_STOPPED &&
	    cur.end_reason[0])
		memcpy(m->sb.end_reason, cur.end_reason, sizeof(m->sb.end_reason));
	/* Only under the lock: without it, whoever holds it (sbx-kill's
	 * reap, sbx-gc) writes the record, and two writers must not race. */
	if (lock < 0)
		omr_log(OMR_LOG_WARN, "record of %s left to the holder of its lock", m->sb.id);
	else if (omr_sandbox_save(m->c, &m->sb, &e) < 0)
		omr_log(OMR_LOG_ERR, "%s", e->msg);
	omr_err_free(&e);
	if (m->history_dropped)
		omr_log(OMR_LOG_WARN, "history: %u commands were not recorded", m->history_dropped);
	/* Last, and without the lock: a client waiting on destroy sees it
	 * complete (within a bound). */
	if (lock >= 0)
		close(omr_steal_fd(lock));
	if (m->router) {
		mon_conns_answer_destroy(&m->conns, MON_DESTROY_FLUSH_MS);
		mon_conns_close_all(&m->conns);
	}
	omr_log(OMR_LOG_INFO, "sandbox %s stopped (%s)", m->sb.id, m->sb.end_reason);
}

static void mon_free(struct mon *m)
{
	if (m->router)
		mon_conns_close_all(&m->conns);
	mon_lifecycle_close(m);
	mon_console_close(&m->console);
	if (m->disk_fd >= 0)
		close(m->disk_fd);
	if (m->listen_fd >= 0)
		close(m->listen_fd);
	if (m->state_fd >= 0)
		close(m->state_fd);
	if (m->history_fd >= 0)
		close(m->history_fd);
	mon_router_free(m->router);
	omr_loop_free(m->loop);
	omr_vmm_release(&m->vmm);
	omr_template_free(m->tpl);
	omr_snapshot_free(m->snap);
	free(m->fork_mac);
	if (m->incoming_fd >= 0)
		close(m->incoming_fd);
	free(m->identity_error);
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
	if (mon_console_open(&m->console, m->state_fd, m->c->console_log_max, err) < 0)
		return -1;
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
	if ((mon_persist_present(m) ? mon_persist_take(m, err)
	     : m->sb.fork[0] ? mon_fork_take(m, err) : make_disk(m, err)) < 0)
		return -1;
	m->listen_fd = listen_unix(m->sock_path, err);
	if (m->listen_fd < 0)
		return -1;
	m->loop = omr_loop_new(err);
	if (!m->loop)
		return -1;
	m->router = mon_router_new(&router_ops, m, omr_now_ms());
	mon_conns_init(&m->conns, m->loop, m->router, m->sb.owner, &conns_ops, m);
	uint64_t t[5];

	t[0] = omr_now_ms();
	if (!m->sb.fork[0] && !m->from_persist)
		choose_boot(m);
	if (signals_setup(m, err) < 0 || mon_net_open(m, err) < 0 || spawn_vmm(m, err) < 0)
		return -1;
	t[1] = omr_now_ms();
	if (wait_agent(m, err) < 0)
		return omr_err_wrap(err, "%s", m->snap ? "restore from the snapshot"
				    : m->from_persist ? "resume" : m->sb.fork[0] ? "fork" : "boot");
	t[2] = omr_now_ms();
	if (restoring(m) && give_identity(m, err) < 0)
		return -1;
	t[3] = omr_now_ms();
	if (mon_net_start(m, err) < 0)
		return -1;
	t[4] = omr_now_ms();
	/* Where a start's time goes (bench/start reads it). */
	omr_log(OMR_LOG_INFO, "%s %s: VMM %llu ms, agent %llu ms, identity %llu ms, network %llu ms",
		m->from_persist ? "resume" : m->sb.boot, m->sb.id, (unsigned long long)(t[1] - t[0]),
		(unsigned long long)(t[2] - t[1]), (unsigned long long)(t[3] - t[2]),
		(unsigned long long)(t[4] - t[3]));
	return 0;
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
	m->sb.vmm_pid = m->vmm.pid;
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
	struct mon m = { .c = c, .state_fd = -1, .disk_fd = -1, .listen_fd = -1,
			 .history_fd = -1, .console = { .log_fd = -1, .pipe_fd = -1 },
			 .events_fd = -1, .incoming_fd = -1 };
	struct omr_err *e = NULL; /* the report needs it even when err is NULL */
	int resumed;

	omr_vmm_init(&m.vmm, omr_vmm_ops_find("qemu"));
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

	if (boot(&m, &e) < 0 || mark_running(&m, &e) < 0) {
		if (m.from_persist)
			omr_log(OMR_LOG_ERR, "resume of %s: %s", id, e ? e->msg : "failed");
		if (!m.end_reason)
			m.end_reason = "boot_failed";
		teardown(&m);
		omr_monitor_report_failure(ready_fd, e);
		mon_free(&m);
		return pass_err(err, &e);
	}
	resumed = m.from_persist;
	mon_persist_done(&m);
	{
		_cleanup_free_ char *pid = omr_strdup_printf("%d\n", (int)getpid());
		_cleanup_close_ int rfd = open(m.run_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (rfd >= 0)
			omr_write_file_atomic_at(rfd, "pid", pid, strlen(pid), 0600, NULL);
	}
	omr_log(OMR_LOG_INFO, "sandbox %s running (vmm pid %d, %s, %s%s%s)", id, (int)m.vmm.pid,
		m.sb.accel, m.sb.boot, m.sb.boot_why[0] ? ": " : "", m.sb.boot_why);
	/* If sbx-create was interrupted, nobody will ever learn this id:
	 * a sandbox nobody can name is torn down rather than leaked. */
	if (ready_report(ready_fd, json_pack("{s:b, s:i, s:s}", "ok", 1, "vmm_pid",
					     (int)m.vmm.pid, "accel", m.sb.accel)) < 0 && !resumed)
		m.end_reason = "creator_gone";
	close(ready_fd);

	if (!m.end_reason)
		serve(&m);
	teardown(&m);
	mon_free(&m);
	return 0;
}
