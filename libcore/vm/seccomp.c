/* The allow-list seccomp filter a jailed QEMU runs under (libseccomp).
 *
 * Default action: kill the process.  QEMU's own `-sandbox` (a deny-list
 * whose default is allow) stays on top: the kernel runs both filters and
 * the stricter answer wins.
 *
 * The lists are kept per QEMU release because each release makes its own
 * set of calls.  How a list is made (doc/jail.md has the commands): run
 * sandboxes under `strace -f` through boots, guest CPU, disk, network-less
 * I/O, exec and file traffic, QMP, and every way of ending (guest
 * poweroff, guest panic, QMP quit, SIGTERM, SIGINT, SIGHUP; SIGKILL makes
 * no call), under TCG and, for the KVM ioctls' neighbours, under KVM;
 * take the union of the call names; then run the whole test suite with
 * [jail] seccomp = log and check that the kernel logged no call (audit
 * type=1326) for a jailed uid.  A call QEMU can live without is answered
 * ENOSYS instead (QEMU falls back: clone3 to clone, io_uring to
 * epoll/ppoll, memfd_create to anonymous memory). */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jail-internal.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/base/util.h"

#define BPF_MAX (64 * 1024)

/* QEMU 7.2 (Debian 12's qemu-system-x86 1:7.2+dfsg-7+deb12u18), measured
 * on 2026-12-02 as doc/jail.md says: 64 calls seen under strace (less
 * socket, bind and unlink, made only for sockets QEMU binds itself, which
 * a jailed QEMU never does), and the ones below the blank line. */
static const char *const allow_7_2[] = {
	"accept4", "access", "arch_prctl", "brk", "clock_nanosleep", "clone",
	"close", "eventfd2", "execve", "exit", "exit_group", "fchdir", "fcntl",
	"fdatasync", "futex", "get_mempolicy", "getdents64", "getpeername",
	"getpid", "getrandom", "getsockname", "getsockopt", "gettid", "ioctl",
	"listen", "lseek", "madvise", "mmap", "mprotect", "munmap", "newfstatat",
	"openat", "poll", "ppoll", "prctl", "pread64", "preadv", "prlimit64",
	"pwrite64", "pwritev", "read", "readlink", "readv", "recvmsg", "rseq",
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sched_getaffinity",
	"seccomp", "sendmsg", "set_mempolicy", "set_robust_list",
	"set_tid_address", "signalfd4", "statfs", "sysinfo", "tgkill", "uname",
	"write", "writev",

	/* QEMU's main loop falls back to epoll when io_uring is refused. */
	"epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_wait",
	/* KVM: a vCPU thread is kicked with a signal and eats pending ones
	 * (accel/kvm/kvm-all.c); KVM_RUN could not run on the measuring host
	 * (kvm_pvm), so these come from the source. */
	"rt_sigpending", "rt_sigtimedwait",
	/* The kernel's own restart of an interrupted call; the clocks are the
	 * vDSO's but become calls where its clock source is unusable. */
	"restart_syscall", "clock_gettime", "clock_getres", "gettimeofday",
	/* discard=unmap: a guest discard punches a hole in the disk. */
	"fallocate",
	/* A fork's save (QMP migrate into a file): QEMU advises the kernel
	 * to drop the pages it wrote (seen killed by the filter, 2026-12-02). */
	"fadvise64",
	/* Seen only in the jail (seccomp = log), once at start. */
	"getppid",
	NULL,
};
/* clone3: glibc falls back to clone (QEMU's own -sandbox answers ENOSYS
 * too); io_uring: kernel surface the jail keeps out of reach, QEMU falls
 * back to epoll; memfd_create: only probed at start; unlink: QEMU removes
 * its sockets' paths at exit, which the jail's read-only root has not. */
static const struct omr_seccomp_refusal refuse_7_2[] = {
	{ "clone3", ENOSYS }, { "io_uring_setup", ENOSYS }, { "io_uring_enter", ENOSYS },
	{ "io_uring_register", ENOSYS }, { "memfd_create", ENOSYS }, { "unlink", EROFS },
	{ NULL, 0 },
};

/* QEMU 10.0 (bookworm-backports' qemu-system-x86
 * 1:10.0.2+ds-2+deb13u1~bpo12+1), measured on 2026-12-02 the short way:
 * 7.2's list under [jail] seccomp = log through cold boots, exec and
 * kill (no call logged), and restores from a template snapshot, which
 * logged the three calls below the blank line (a file-backed guest RAM:
 * fstatfs to tell hugetlbfs apart, msync; fadvise64 on the state's fd).  A full strace pass as
 * doc/jail.md describes is still to be done for 10.0. */
static const char *const allow_10_0[] = {
	"accept4", "access", "arch_prctl", "brk", "clock_nanosleep", "clone",
	"close", "eventfd2", "execve", "exit", "exit_group", "fchdir", "fcntl",
	"fdatasync", "futex", "get_mempolicy", "getdents64", "getpeername",
	"getpid", "getrandom", "getsockname", "getsockopt", "gettid", "ioctl",
	"listen", "lseek", "madvise", "mmap", "mprotect", "munmap", "newfstatat",
	"openat", "poll", "ppoll", "prctl", "pread64", "preadv", "prlimit64",
	"pwrite64", "pwritev", "read", "readlink", "readv", "recvmsg", "rseq",
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sched_getaffinity",
	"seccomp", "sendmsg", "set_mempolicy", "set_robust_list",
	"set_tid_address", "signalfd4", "statfs", "sysinfo", "tgkill", "uname",
	"write", "writev",
	"epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_wait",
	"rt_sigpending", "rt_sigtimedwait",
	"restart_syscall", "clock_gettime", "clock_getres", "gettimeofday",
	"fallocate", "getppid", "fadvise64",

	/* Restores: guest RAM in a file (memory-backend-file), the device
	 * state read from a file descriptor (posix_fadvise). */
	"fstatfs", "msync", "fadvise64",
	NULL,
};

static const struct omr_seccomp_list lists[] = {
	{ "7.2", allow_7_2, refuse_7_2 },
	{ "10.0", allow_10_0, refuse_7_2 },
};

static unsigned major_minor(const char *s)
{
	unsigned a = 0, b = 0;

	/* "QEMU emulator version 7.2.22 (Debian ...)" or just "7.2". */
	if (!s)
		return 0;
	while (*s && (*s < '0' || *s > '9'))
		s++;
	if (sscanf(s, "%u.%u", &a, &b) < 1)
		return 0;
	return a * 1000 + b;
}

const struct omr_seccomp_list *omr_seccomp_list_for(const char *version, int *exact)
{
	unsigned want = major_minor(version), best_v = 0;
	const struct omr_seccomp_list *best = &lists[0];

	*exact = 0;
	for (size_t i = 0; i < OMR_ARRAY_SIZE(lists); i++) {
		unsigned v = major_minor(lists[i].qemu);
		if (v == want) {
			*exact = 1;
			return &lists[i];
		}
		if (v < want && v > best_v) {
			best = &lists[i];
			best_v = v;
		}
	}
	return best;
}

size_t omr_seccomp_list_len(const struct omr_seccomp_list *l)
{
	size_t n = 0;

	while (l->allow[n])
		n++;
	return n;
}

int omr_seccomp_listed(const struct omr_seccomp_list *l, const char *name)
{
	for (size_t i = 0; l->allow[i]; i++)
		if (!strcmp(l->allow[i], name))
			return 1;
	return 0;
}

/* seccomp_export_bpf writes to an fd: a pipe brings it back to memory,
 * so that the child only has to hand it to the kernel. */
static int export_bpf(scmp_filter_ctx ctx, struct sock_fprog *out, struct omr_err **err)
{
	int p[2];
	_cleanup_free_ char *buf = NULL;
	ssize_t n;
	int rc;

	if (pipe2(p, O_CLOEXEC) < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot create pipe");
	/* The program is a few KB; a pipe holds 64 KB. */
	fcntl(p[1], F_SETPIPE_SZ, BPF_MAX);
	rc = seccomp_export_bpf(ctx, p[1]);
	close(p[1]);
	if (rc < 0) {
		close(p[0]);
		return omr_err_set(err, OMR_E_FAIL, -rc, "cannot export the seccomp filter");
	}
	buf = omr_xmalloc(BPF_MAX);
	n = omr_read_full(p[0], buf, BPF_MAX);
	close(p[0]);
	if (n <= 0 || n % sizeof(struct sock_filter) || n == BPF_MAX)
		return omr_err_setx(err, OMR_E_FAIL, EINVAL, "bad seccomp filter size %zd", n);
	out->len = (unsigned short)(n / sizeof(struct sock_filter));
	out->filter = (struct sock_filter *)omr_steal_ptr(buf);
	return 0;
}

int omr_seccomp_build(const struct omr_seccomp_list *l, const char *mode, const char *exec_path,
		      struct sock_fprog *out, struct omr_err **err)
{
	uint32_t dflt = !strcmp(mode, "log") ? SCMP_ACT_LOG : SCMP_ACT_KILL_PROCESS;
	scmp_filter_ctx ctx = seccomp_init(dflt);
	int rc = 0;

	memset(out, 0, sizeof(*out));
	if (!ctx)
		return omr_err_setx(err, OMR_E_FAIL, ENOMEM, "cannot make a seccomp filter");
	/* x32 and i386 calls: killed, whatever the mode. */
	seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
	for (size_t i = 0; l->allow[i] && rc == 0; i++) {
		const char *name = l->allow[i];
		int nr = seccomp_syscall_resolve_name(name);

		if (nr == __NR_SCMP_ERROR)
			continue; /* not on this architecture */
		if (!strcmp(name, "clone"))
			/* Threads only: a QEMU that forks is not ours. */
			rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
					      SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
		else if (!strcmp(name, "execve"))
			rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
					      SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)(uintptr_t)exec_path));
		else
			rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
	}
	for (size_t i = 0; l->refuse[i].name && rc == 0; i++) {
		int nr = seccomp_syscall_resolve_name(l->refuse[i].name);
		if (nr != __NR_SCMP_ERROR)
			rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO((uint32_t)l->refuse[i].err), nr, 0);
	}
	if (rc < 0) {
		seccomp_release(ctx);
		return omr_err_set(err, OMR_E_FAIL, -rc, "cannot add a seccomp rule");
	}
	rc = export_bpf(ctx, out, err);
	seccomp_release(ctx);
	return rc;
}

char *omr_seccomp_name(int nr)
{
	return seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
}

const char *omr_seccomp_lib_version(void)
{
	static char buf[32];
	const struct scmp_version *v = seccomp_version();

	if (v)
		snprintf(buf, sizeof(buf), "%u.%u.%u", v->major, v->minor, v->micro);
	return buf;
}
