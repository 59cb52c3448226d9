/* Starting a command: fork, set the child up, exec.
 *
 * Setup failures (user, cwd, terminal) travel back on a close-on-exec pipe
 * so the host gets an error instead of a command that never ran; a
 * command that cannot be found or executed is reported the way a shell
 * does (a message on its stderr, status 127 or 126) because scripts rely
 * on that. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "omnirun/base/cleanup.h"

enum stage { ST_SETSID = 1, ST_CGROUP, ST_TTY, ST_STDIO, ST_USER, ST_CWD };

struct child_err {
	int stage;
	int err;
};

struct child_fds {
	int in, out, err; /* what becomes 0, 1, 2 */
	int tty;          /* pty slave, or -1 */
	int report;       /* write end of the error pipe */
	int cgroup;       /* cgroup.procs of the command's cgroup, or -1 */
};

static _Noreturn void child_fail(int report, int stage)
{
	struct child_err ce = { stage, errno };

	(void)!write(report, &ce, sizeof(ce));
	_exit(127);
}

static const char *env_get(char **envp, const char *key)
{
	size_t kl = strlen(key);

	for (; envp && *envp; envp++)
		if (!strncmp(*envp, key, kl) && (*envp)[kl] == '=')
			return *envp + kl + 1;
	return NULL;
}

static void try_exec(const char *path, char **argv, char **envp)
{
	execve(path, argv, envp);
	if (errno == ENOEXEC) {
		/* No #! line: a shell script, as execvp and shells treat it. */
		size_t n = 0;
		while (argv[n])
			n++;
		char **sh = calloc(n + 2, sizeof(char *));
		if (!sh)
			return;
		sh[0] = "/bin/sh";
		sh[1] = (char *)path;
		memcpy(sh + 2, argv + 1, n * sizeof(char *));
		execve("/bin/sh", sh, envp);
		errno = ENOEXEC;
	}
}

static _Noreturn void exec_search(char **argv, char **envp)
{
	const char *cmd = argv[0], *path = env_get(envp, "PATH");
	int saved = ENOENT;

	if (strchr(cmd, '/')) {
		try_exec(cmd, argv, envp);
		saved = errno;
	} else {
		if (!path)
			path = AGENT_PATH_DEFAULT;
		while (*cmd) {
			size_t dl = strcspn(path, ":");
			char *full = malloc(dl + strlen(cmd) + 2);
			if (!full)
				break;
			snprintf(full, dl + strlen(cmd) + 2, "%.*s%s%s", (int)dl, path,
				 dl ? "/" : "", cmd);
			try_exec(full, argv, envp);
			free(full);
			/* Like execvp: EACCES is remembered but the search goes on. */
			if (errno == EACCES)
				saved = EACCES;
			else if (errno != ENOENT && errno != ENOTDIR) {
				saved = errno;
				break;
			}
			if (!path[dl])
				break;
			path += dl + 1;
		}
	}
	if (saved == ENOENT && !strchr(cmd, '/'))
		dprintf(2, "omnirun: %s: command not found\n", cmd);
	else
		dprintf(2, "omnirun: %s: %s\n", cmd, strerror(saved));
	_exit(saved == ENOENT || saved == ENOTDIR ? 127 : 126);
}

static _Noreturn void child(const struct spawn_req *r, const struct child_fds *f)
{
	sigset_t none;
	int fd;

	/* Signal state is inherited by exec: start the command clean. */
	for (int s = 1; s < NSIG; s++)
		signal(s, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (setsid() < 0)
		child_fail(f->report, ST_SETSID);
	/* Into the command's cgroup before anything can fork: a command
	 * outside it would escape the limits and the final kill. */
	if (f->cgroup >= 0 && write(f->cgroup, "0", 1) != 1)
		child_fail(f->report, ST_CGROUP);
	/* The agent is -1000 (never the OOM victim); commands must not be. */
	fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		(void)!write(fd, "0", 1);
		close(fd);
	}
	if (f->tty >= 0 && ioctl(f->tty, TIOCSCTTY, 0) < 0)
		child_fail(f->report, ST_TTY);
	if (dup2(f->in, 0) < 0 || dup2(f->out, 1) < 0 || dup2(f->err, 2) < 0)
		child_fail(f->report, ST_STDIO);
	if (r->user) {
		if (setgroups((size_t)r->user->ngroups, r->user->groups) < 0 ||
		    setgid(r->user->gid) < 0 || setuid(r->user->uid) < 0)
			child_fail(f->report, ST_USER);
	}
	if (r->cwd && chdir(r->cwd) < 0)
		child_fail(f->report, ST_CWD);
	if (!r->cwd) {
		const char *home = env_get(r->envp, "HOME");
		if (!home || chdir(home) < 0)
			(void)!chdir("/");
	}
	exec_search(r->argv, r->envp);
}

static void close_pair(int p[2])
{
	omr_closep(&p[0]);
	omr_closep(&p[1]);
}

static int fail_msg(struct jerr *e, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail_msg(struct jerr *e, int err, const char *fmt, ...)
{
	char m[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(m, sizeof(m), fmt, ap);
	va_end(ap);
	snprintf(e->msg, sizeof(e->msg), "%s: %s", m, strerror(err));
	return -err;
}

static int report_stage(const struct spawn_req *r, const struct child_err *ce, struct jerr *e)
{
	switch (ce->stage) {
	case ST_CWD:
		return fail_msg(e, ce->err, "cannot change directory to %s", r->cwd);
	case ST_USER:
		return fail_msg(e, ce->err, "cannot switch to user %s",
				r->user->name ? r->user->name : "(uid)");
	case ST_TTY:
		return fail_msg(e, ce->err, "cannot set up the terminal");
	case ST_CGROUP:
		return fail_msg(e, ce->err, "cannot move the command into its cgroup");
	default:
		return fail_msg(e, ce->err, "cannot set up the command");
	}
}

int spawn_proc(const struct spawn_req *r, struct proc *p, struct jerr *e)
{
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 }, rep[2] = { -1, -1 };
	int master = -1, slave = -1;
	_cleanup_close_ int cg = -1;
	struct child_fds f;
	struct child_err ce;
	sigset_t all, old;
	ssize_t n;
	pid_t pid;

	/* A cgroup of its own (released by the caller through p->cg, also
	 * on failure); else, as a fallback, the commands' shared one. */
	if (agent_cfg.cgroup) {
		p->cg = cg_create();
		_cleanup_free_ char *procs =
			path_join(p->cg ? p->cg : agent_cfg.cgroup, "cgroup.procs");
		cg = procs ? open(procs, O_WRONLY | O_CLOEXEC) : -1;
		if (cg < 0)
			omr_log(OMR_LOG_ERR, "cannot open %s: %s", procs ? procs : "cgroup.procs", strerror(errno));
	}
	if (r->pty) {
		struct winsize ws = { .ws_row = r->rows, .ws_col = r->cols };
		if (openpty(&master, &slave, NULL, NULL, &ws) < 0)
			return fail_msg(e, errno, "cannot open a pty");
		fcntl(master, F_SETFD, FD_CLOEXEC);
		fcntl(slave, F_SETFD, FD_CLOEXEC);
		in[1] = fcntl(master, F_DUPFD_CLOEXEC, 3);
		f = (struct child_fds){ slave, slave, slave, slave, -1, cg };
	} else {
		if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)
			goto sys_fail;
		if (r->stdin_pipe ? pipe2(in, O_CLOEXEC) < 0
				  : (in[0] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
			goto sys_fail;
		f = (struct child_fds){ in[0], out[1], err[1], -1, -1, cg };
	}
	if (pipe2(rep, O_CLOEXEC) < 0)
		goto sys_fail;
	f.report = rep[1];

	/* No handler may run in the child between fork and its reset. */
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	pid = fork();
	if (pid == 0)
		child(r, &f);
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (pid < 0)
		goto sys_fail;
	omr_closep(&rep[1]);
	omr_closep(&slave);
	omr_closep(&in[0]);
	omr_closep(&out[1]);
	omr_closep(&err[1]);

	/* Returns at exec (EOF) or with the child's setup error. */
	do
		n = read(rep[0], &ce, sizeof(ce));
	while (n < 0 && errno == EINTR);
	omr_closep(&rep[0]);
	if (n == (ssize_t)sizeof(ce)) {
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		omr_closep(&master);
		close_pair(in);
		close_pair(out);
		close_pair(err);
		return report_stage(r, &ce, e);
	}
	p->pid = pid;
	p->pty = r->pty;
	p->fd_in = r->pty ? in[1] : (r->stdin_pipe ? in[1] : -1);
	p->fd_out = r->pty ? master : out[0];
	p->fd_err = r->pty ? -1 : err[0];
	if (!r->stdin_pipe && !r->pty)
		omr_closep(&in[1]);
	if (p->fd_in >= 0)
		omr_fd_set_nonblock(p->fd_in, 1);
	omr_fd_set_nonblock(p->fd_out, 1);
	if (p->fd_err >= 0)
		omr_fd_set_nonblock(p->fd_err, 1);
	return 0;

sys_fail:
	{
		int saved = errno;
		omr_closep(&master);
		omr_closep(&slave);
		close_pair(in);
		close_pair(out);
		close_pair(err);
		close_pair(rep);
		return fail_msg(e, saved, "cannot start the command");
	}
}
