/* Spawning children with exactly the fds they should have, and reading
 * their output with a bound and a timeout. */
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/base/spawn.h"
#include "omnirun/base/util.h"

#define SPAWN_KEEP_MAX 16

void omr_argv_free(char **argv)
{
	if (!argv)
		return;
	for (char **p = argv; *p; p++)
		free(*p);
	free(argv);
}

pid_t omr_spawn(char *const argv[], int out_fd, const int *keep_from,
		const int *keep_to, size_t nkeep, struct omr_err **err)
{
	const struct omr_spawn_opts o = {
		.out_fd = out_fd, .keep_from = keep_from, .keep_to = keep_to, .nkeep = nkeep,
	};
	return omr_spawn_ex(argv, &o, err);
}

pid_t omr_spawn_ex(char *const argv[], const struct omr_spawn_opts *o, struct omr_err **err)
{
	int errpipe[2];
	pid_t ppid = getpid(), pid;
	int child_errno = 0;
	ssize_t n;

	/* The child reports an exec failure through a CLOEXEC pipe. */
	if (pipe2(errpipe, O_CLOEXEC) < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot create pipe");
	pid = fork();
	if (pid < 0) {
		int e = errno;
		close(errpipe[0]);
		close(errpipe[1]);
		return omr_err_set(err, OMR_E_FAIL, e, "cannot fork");
	}
	if (pid == 0) {
		/* Only async-signal-safe calls from here to exec. */
		struct sigaction dfl = { .sa_handler = SIG_DFL };
		sigset_t none;
		int nullfd, errfd = errpipe[1];

		if (o->new_pgroup)
			setpgid(0, 0);
		/* If we die, the child dies with us rather than run on. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != ppid)
			_exit(127);
		for (int s = 1; s < NSIG; s++)
			if (s != SIGKILL && s != SIGSTOP)
				sigaction(s, &dfl, NULL);  /* fails harmlessly for 32, 33 */
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		/* Out of the way of the dup2s below (a caller may run with
		 * stdio closed). */
		if ((errfd = fcntl(errpipe[1], F_DUPFD_CLOEXEC, 64)) < 0) {
			errfd = errpipe[1];
			goto fail;
		}
		nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (nullfd < 0 || o->nkeep > SPAWN_KEEP_MAX)
			goto fail;
		/* Every source first moves above every target, so that no
		 * dup2 clobbers a source not yet moved, and none has source ==
		 * target (which would leave O_CLOEXEC set). */
		int from[3 + SPAWN_KEEP_MAX] = { nullfd, o->out_fd, o->out_fd };
		int to[3 + SPAWN_KEEP_MAX] = { 0, 1, 2 };
		int nfd = o->out_fd >= 0 ? 3 : 1;
		for (size_t i = 0; i < o->nkeep; i++, nfd++) {
			from[nfd] = o->keep_from[i];
			to[nfd] = o->keep_to[i];
		}
		for (int i = 0; i < nfd; i++)
			if ((from[i] = fcntl(from[i], F_DUPFD_CLOEXEC, 64)) < 0)
				goto fail;
		/* Nothing else reaches the child, whatever our own caller left
		 * open without O_CLOEXEC (dup2 below clears it on the targets;
		 * errfd stays open to report a failed exec).  Through
		 * syscall(): musl, which the guest agent links, has no
		 * wrapper. */
		syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
		for (int i = 0; i < nfd; i++)
			if (dup2(from[i], to[i]) < 0)
				goto fail;
		if (o->cwd && chdir(o->cwd) < 0)
			goto fail;
		if (o->envp)
			execvpe(argv[0], argv, o->envp);
		else
			execvp(argv[0], argv);
fail:
		child_errno = errno;
		(void)!write(errfd, &child_errno, sizeof(child_errno));
		_exit(127);
	}
	if (o->new_pgroup)
		setpgid(pid, pid);  /* also here: no race with a kill(-pid) */
	close(errpipe[1]);
	do
		n = read(errpipe[0], &child_errno, sizeof(child_errno));
	while (n < 0 && errno == EINTR);
	close(errpipe[0]);
	if (n == (ssize_t)sizeof(child_errno)) {
		pid_t p = pid;
		if (o->new_pgroup)
			kill(-pid, SIGKILL);
		omr_killp(&p);
		return omr_err_set(err, OMR_E_FAIL, child_errno, "cannot run %s", argv[0]);
	}
	return pid;
}

/* Whether pid has exited.  WNOWAIT: the zombie keeps its pid and process
 * group reserved until the caller has killed the rest of the group. */
static int child_exited(pid_t pid)
{
	siginfo_t si = { 0 };

	if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
		return errno == ECHILD;
	return si.si_pid == pid;
}

/* Feeds what fd has to the sink: 1 at EOF (or a read error), 2 when the
 * sink has enough, 0 when fd has nothing more for now. */
static int drain(int fd, const struct omr_capture_opts *o)
{
	char buf[4096];

	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r > 0) {
			if (o->sink(o->user, buf, (size_t)r))
				return 2;
			continue;
		}
		if (r == 0)
			return 1;
		if (errno == EINTR)
			continue;
		return errno == EAGAIN ? 0 : 1;
	}
}

int omr_capture(pid_t pid, int fd, const struct omr_capture_opts *o, int *status)
{
	uint64_t deadline = omr_now_ms() + o->timeout_ms;
	int timed_out = 0, eof = 0;
	pid_t r;

	omr_fd_set_nonblock(fd, 1);
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		uint64_t now = omr_now_ms();
		int wait_ms, d = 0;

		if (now >= deadline) {
			timed_out = 1;
			break;
		}
		wait_ms = deadline - now > 200 ? 200 : (int)(deadline - now);
		if (eof)
			poll(NULL, 0, wait_ms < 50 ? wait_ms : 50);
		else if (poll(&pfd, 1, wait_ms) > 0 && (d = drain(fd, o)) == 1)
			eof = 1;
		if (d == 2 || (eof && !o->until_exit))
			break;
		if (child_exited(pid)) {
			if (!eof)
				drain(fd, o);
			break;
		}
	}
	/* Harmless when it has exited: it is not reaped yet. */
	kill(o->group ? -pid : pid, SIGKILL);
	while ((r = waitpid(pid, status, 0)) < 0 && errno == EINTR)
		;
	if (r < 0)
		*status = -1;  /* reaped behind our back (a SIGCHLD handler): unknown */
	return timed_out ? -ETIMEDOUT : 0;
}
