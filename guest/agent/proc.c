/* The commands we started: reaping, timeouts, background output, and the
 * ps and kill ops.
 *
 * Every command leads its own session and process group (pgid == pid), so
 * signals reach everything it started.  With cgroups (the guest), each
 * command also has a cgroup of its own (cgroup.c): SIGKILL, timeouts and
 * the end of a command kill the whole cgroup, which no process can leave
 * or outrun by forking.  A command is over when its main process has
 * exited and its output is closed (the END of a foreground command, the
 * pipes' end for a background one): what it left running is killed then.
 * Background commands write into a ring (ring.c) that attach streams
 * replay and follow. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "omnirun/base/cleanup.h"

#define MAX_EXITED_BG 64
#define PS_BYTES_MAX (96u * 1024u)

static struct proc *procs;
static int sigfd = -1;
static uint8_t iobuf[OMR_DATA_CHUNK];

struct proc *proc_new(void)
{
	struct proc *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->fd_in = p->fd_out = p->fd_err = -1;
	p->next = procs;
	procs = p;
	return p;
}

struct proc *proc_find(pid_t pid)
{
	for (struct proc *p = procs; p; p = p->next)
		if (p->pid == pid && !p->dead)
			return p;
	return NULL;
}

size_t procs_count(void)
{
	size_t n = 0;

	for (struct proc *p = procs; p; p = p->next)
		n += p->running;
	return n;
}

void proc_close_fd(int *fd)
{
	omr_closep(fd);
}

static void proc_close_fds(struct proc *p)
{
	proc_close_fd(&p->fd_in);
	proc_close_fd(&p->fd_out);
	proc_close_fd(&p->fd_err);
}

void proc_signal(struct proc *p, int sig)
{
	/* SIGKILL empties the command's cgroup, even after the main
	 * process exited (what it left behind). */
	if (sig == SIGKILL && p->cg) {
		int rc = cg_kill(p->cg);
		if (rc < 0)
			omr_log(OMR_LOG_ERR, "cgroup.kill %s: %s", p->cg, strerror(-rc));
	}
	if (!p->running)
		return;
	if (kill(-p->pid, sig) < 0 && errno == ESRCH)
		kill(p->pid, sig);
}

/* The command is over: what is left in its cgroup dies, the cgroup goes. */
static void proc_cg_release(struct proc *p)
{
	cg_release(p->cg);
	p->cg = NULL;
}

void proc_release(struct proc *p, bool kill_group)
{
	p->fg = NULL;
	if (kill_group)
		proc_signal(p, SIGKILL);
	proc_close_fds(p);
	proc_cg_release(p);
	if (!p->running)
		p->dead = true; /* else freed once reaped */
}

json_t *proc_status_json(const struct proc *p)
{
	uint64_t end = p->running ? omr_now_ms() : p->end_mono;
	json_t *o = json_object();

	json_object_set_new(o, "exit_code", !p->running && WIFEXITED(p->status)
						     ? json_integer(WEXITSTATUS(p->status))
						     : json_null());
	json_object_set_new(o, "signal", !p->running && WIFSIGNALED(p->status)
						  ? json_integer(WTERMSIG(p->status))
						  : json_null());
	json_object_set_new(o, "timed_out", json_boolean(p->timed_out));
	json_object_set_new(o, "duration_ms", json_integer((json_int_t)(end - p->start_mono)));
	if (p->cancelled)
		json_object_set_new(o, "cancelled", json_true());
	return o;
}

/* Keeps at most MAX_EXITED_BG exited background commands for ps/attach. */
static void bg_evict(void)
{
	size_t n = 0;

	for (struct proc *p = procs; p; p = p->next)
		n += p->background && !p->running && !p->dead;
	while (n-- > MAX_EXITED_BG) {
		struct proc *old = NULL;
		for (struct proc *p = procs; p; p = p->next)
			if (p->background && !p->running && !p->dead && !p->attached &&
			    (!old || p->end_mono < old->end_mono))
				old = p;
		if (!old)
			return;
		old->dead = true;
	}
}

static void reap(void)
{
	int st;
	pid_t pid;

	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		struct proc *p = proc_find(pid);
		if (!p)
			continue;
		p->running = false;
		p->status = st;
		p->end_mono = omr_now_ms();
		p->quiet_until = p->end_mono + PROC_LINGER_MS;
		if (p->background)
			bg_evict();
		else if (!p->fg)
			p->dead = true; /* its stream is gone */
	}
}

static void sigchld_ready(void *obj, int tag, short rev)
{
	struct signalfd_siginfo si;

	(void)obj;
	(void)tag;
	(void)rev;
	while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		;
	reap();
}

void procs_init(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, NULL);
	sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sigfd < 0)
		omr_log(OMR_LOG_ERR, "signalfd: %s (reaping by timer)", strerror(errno));
	cgroups_init();
}

static void bg_output_ready(void *obj, int ch, short rev)
{
	struct proc *p = obj;
	int *fd = ch == OMR_CH_STDOUT ? &p->fd_out : &p->fd_err;
	ssize_t n;

	(void)rev;
	if (p->dead || *fd < 0)
		return;
	n = read(*fd, iobuf, sizeof(iobuf));
	if (n > 0) {
		ring_append(p->ring, (uint8_t)ch, iobuf, (size_t)n);
		if (!p->running)
			p->quiet_until = omr_now_ms() + PROC_LINGER_MS;
	} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
		proc_close_fd(fd); /* EOF; EIO on a pty master is EOF too */
	}
}

void procs_poll(struct pollctx *pc)
{
	if (sigfd >= 0)
		poll_add(pc, sigfd, POLLIN, sigchld_ready, NULL, 0);
	else
		poll_wake_at(pc, omr_now_ms() + 100);
	cgroups_poll(pc);
	for (struct proc *p = procs; p; p = p->next) {
		if (p->dead)
			continue;
		if ((p->running || p->cg) && p->deadline)
			poll_wake_at(pc, p->deadline);
		if (!p->background)
			continue;
		if (p->fd_out >= 0)
			poll_add(pc, p->fd_out, POLLIN, bg_output_ready, p, OMR_CH_STDOUT);
		if (p->fd_err >= 0)
			poll_add(pc, p->fd_err, POLLIN, bg_output_ready, p, OMR_CH_STDERR);
		if (!p->running && (p->fd_out >= 0 || p->fd_err >= 0))
			poll_wake_at(pc, p->quiet_until);
	}
}

void procs_tick(void)
{
	uint64_t now = omr_now_ms();

	if (sigfd < 0)
		reap();
	for (struct proc *p = procs; p; p = p->next) {
		if (p->dead)
			continue;
		/* The timeout covers the command and what it started, as long
		 * as they keep its output open (a fork bomb whose shell is
		 * gone): they die with timed_out. */
		if (p->deadline && now >= p->deadline) {
			if (p->running || (p->cg && cg_populated(p->cg))) {
				p->timed_out = true;
				proc_signal(p, SIGKILL);
			}
			p->deadline = 0;
		}
		/* Output from processes that escaped the group ends with a
		 * short quiet period after the command itself exited. */
		if (p->background && !p->running && now >= p->quiet_until) {
			proc_close_fd(&p->fd_out);
			proc_close_fd(&p->fd_err);
			proc_close_fd(&p->fd_in);
		}
		/* A background command is over once its output is. */
		if (p->background && !p->running && p->fd_out < 0 && p->fd_err < 0)
			proc_cg_release(p);
	}
	cgroups_tick();
}

static void proc_free(struct proc *p)
{
	proc_close_fds(p);
	proc_cg_release(p);
	ring_free(p->ring);
	json_decref(p->what);
	free(p);
}

void procs_collect(void)
{
	struct proc **pp = &procs;

	while (*pp) {
		struct proc *p = *pp;
		if (p->dead && !p->attached && !p->running && !p->fg) {
			*pp = p->next;
			proc_free(p);
		} else {
			pp = &p->next;
		}
	}
}

void procs_shutdown(void)
{
	while (procs) {
		struct proc *p = procs;
		procs = p->next;
		proc_signal(p, SIGKILL);
		proc_free(p);
	}
	cgroups_shutdown();
}

/* ---- ps, kill ---- */

static json_t *ps_entry(const struct proc *p)
{
	json_t *o = proc_status_json(p);

	json_object_del(o, "timed_out");
	json_object_set_new(o, "pid", json_integer(p->pid));
	json_object_update(o, p->what);
	json_object_set_new(o, "started_ms", json_integer((json_int_t)p->start_wall));
	json_object_set_new(o, "background", json_boolean(p->background));
	json_object_set_new(o, "running", json_boolean(p->running));
	if (p->timed_out)
		json_object_set_new(o, "timed_out", json_true());
	if (p->ring)
		json_object_set_new(o, "dropped", json_integer((json_int_t)ring_dropped(p->ring)));
	return o;
}

void op_ps(uint32_t id, json_t *req)
{
	json_t *list = json_array(), *o = json_object();
	size_t bytes = 0;
	bool truncated = false;

	(void)req;
	for (struct proc *p = procs; p; p = p->next) {
		/* Foreground commands while their stream lasts. */
		if (p->dead || (!p->background && (!p->running || !p->fg)))
			continue;
		json_t *e = ps_entry(p);
		char *s = json_dumps(e, JSON_COMPACT);
		bytes += s ? strlen(s) + 1 : 0;
		free(s);
		if (bytes > PS_BYTES_MAX) {
			/* argv is trimmed at start, so only a huge count gets here. */
			json_decref(e);
			truncated = true;
			break;
		}
		json_array_append_new(list, e);
	}
	json_object_set_new(o, "processes", list);
	if (truncated)
		json_object_set_new(o, "truncated", json_true());
	send_json(OMR_F_END, id, o);
}

int proc_lookup(uint32_t id, json_t *req, struct proc **out)
{
	struct jerr e;
	int64_t pid;

	if (jget_int(req, "pid", 1, INT32_MAX, 0, &pid, &e) < 0 || pid == 0) {
		snprintf(e.msg, sizeof(e.msg), "\"pid\" must be a positive integer");
		send_bad_request(id, &e);
		return -1;
	}
	*out = proc_find((pid_t)pid);
	if (!*out) {
		send_error(id, ESRCH, "not_found", "no command with pid %lld", (long long)pid);
		return -1;
	}
	return 0;
}

void op_kill(uint32_t id, json_t *req)
{
	struct proc *p;
	struct jerr e;
	int64_t sig;

	if (jget_int(req, "signal", 0, 64, SIGTERM, &sig, &e) < 0) {
		send_bad_request(id, &e);
		return;
	}
	if (proc_lookup(id, req, &p) < 0)
		return;
	if (!p->running) {
		send_error(id, ESRCH, "not_running", "command %d has exited", p->pid);
		return;
	}
	proc_signal(p, (int)sig);
	send_json(OMR_F_END, id, json_object());
}
