/* QEMU microvm command line and process spawning; see omnirun/vmm.h. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "omnirun/cleanup.h"
#include "omnirun/proto.h"
#include "omnirun/util.h"
#include "omnirun/vmm.h"

#define SPAWN_KEEP_MAX 16

struct argv_buf {
	char **v;
	size_t n, cap;
};

static void add(struct argv_buf *a, const char *s)
{
	if (a->n + 2 > a->cap) {
		a->cap = a->cap ? a->cap * 2 : 32;
		a->v = omr_xrealloc(a->v, a->cap * sizeof(char *));
	}
	a->v[a->n++] = omr_xstrdup(s);
	a->v[a->n] = NULL;
}

static void addf2(struct argv_buf *a, const char *opt, char *val_owned)
{
	add(a, opt);
	add(a, val_owned);
	free(val_owned);
}

char **omr_vmm_argv(const struct omr_vmm_spec *s)
{
	struct argv_buf a = { 0 };

	add(&a, s->qemu);
	/* microvm: no PCI, no firmware ROMs; the legacy PIT/PIC/RTC are
	 * needed for TSC calibration under TCG (HOSTS.md). */
	add(&a, "-M");
	add(&a, "microvm,x-option-roms=off,isa-serial=on,rtc=on,pit=on,pic=on");
	if (s->accel == OMR_ACCEL_KVM) {
		add(&a, "-accel");
		add(&a, "kvm");
		add(&a, "-cpu");
		add(&a, "host");
	} else {
		addf2(&a, "-accel", omr_strdup_printf("tcg,tb-size=%u", s->tb_size_mb));
		add(&a, "-cpu");
		add(&a, "max");
	}
	addf2(&a, "-smp", omr_strdup_printf("%u", s->cpus));
	addf2(&a, "-m", omr_strdup_printf("%u", s->memory_mb));
	add(&a, "-nodefaults");
	add(&a, "-no-user-config");
	add(&a, "-display");
	add(&a, "none");
	add(&a, "-no-reboot");
	/* The console goes to QEMU's stdout, which the monitor caps. */
	add(&a, "-serial");
	add(&a, "stdio");
	add(&a, "-kernel");
	add(&a, s->kernel);
	add(&a, "-initrd");
	add(&a, s->initrd);
	add(&a, "-append");
	add(&a, s->cmdline);
	add(&a, "-device");
	add(&a, "virtio-serial-device");
	addf2(&a, "-chardev",
	      omr_strdup_printf("socket,id=agent,path=%s,server=on,wait=off", s->agent_sock));
	add(&a, "-device");
	add(&a, "virtserialport,chardev=agent,name=" OMR_AGENT_PORT);
	if (s->bench_sock) {
		/* A second port with no protocol: the floor bench/exec
		 * measures the protocol against. */
		addf2(&a, "-chardev",
		      omr_strdup_printf("socket,id=bench,path=%s,server=on,wait=off", s->bench_sock));
		add(&a, "-device");
		add(&a, "virtserialport,chardev=bench,name=omnirun.bench");
	}
	add(&a, "-object");
	add(&a, "rng-random,id=rng0,filename=/dev/urandom");
	add(&a, "-device");
	add(&a, "virtio-rng-device,rng=rng0");
	if (s->disk_fd >= 0) {
		/* The disk is an unlinked file handed over by fd: nothing on
		 * the host names it, and it is gone with the last fd.  No
		 * locking: it would want a second, read-only fd. */
		addf2(&a, "-add-fd", omr_strdup_printf("fd=%d,set=1", s->disk_fd));
		addf2(&a, "-add-fd", omr_strdup_printf("fd=%d,set=1", s->disk_fd + 1));
		add(&a, "-drive");
		/* The disk is sparse: when the host's filesystem fills up, the
		 * guest gets I/O errors instead of the VM being paused. */
		add(&a, "if=none,id=data,file=/dev/fdset/1,format=raw,file.locking=off,"
			"cache=writeback,discard=unmap,werror=report,rerror=report");
		add(&a, "-device");
		add(&a, "virtio-blk-device,drive=data");
	}
	addf2(&a, "-qmp", omr_strdup_printf("unix:%s,server=on,wait=off", s->qmp_sock));
	add(&a, "-sandbox");
	add(&a, "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
	return a.v;
}

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
		return omr_err_set(err, errno, "cannot create pipe");
	pid = fork();
	if (pid < 0) {
		int e = errno;
		close(errpipe[0]);
		close(errpipe[1]);
		return omr_err_set(err, e, "cannot fork");
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
		 * errfd stays open to report a failed exec). */
		close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
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
		return omr_err_set(err, child_errno, "cannot run %s", argv[0]);
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
