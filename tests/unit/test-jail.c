/* Unit tests for the jail's parts that need no VM (libcore/vm/jail.c,
 * seccomp.c): uid claims, the choice of a seccomp list, and the filter
 * itself, installed in a child that then makes calls on and off the
 * list.  TAP.  (The jail around a real QEMU: tests/bats/40-jail.bats.) */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/seccomp.h>

#include "../../libcore/vm/jail-internal.h"
#include "omnirun/base/util.h"
#include "omnirun/state/config.h"

#include "tap.h"

static char dir[] = "/tmp/omr-test-jail.XXXXXX";

static void test_uids(void)
{
	struct omr_config *c = NULL;
	struct omr_err *err = NULL;
	char *conf = omr_strdup_printf("%s/omnirun.conf", dir);
	FILE *f = fopen(conf, "w");
	uid_t a = 0, b = 0, d = 0;
	int fa, fb, fd;

	fprintf(f, "[paths]\nrun_dir = %s/run\n[jail]\nuid_base = 70000\nuid_count = 2\n", dir);
	fclose(f);
	setenv("OMNIRUN_CONF", conf, 1);
	unsetenv("OMNIRUN_RUN_DIR");
	free(conf);
	if (!ok(omr_config_load(&c, &err) == 0, "config with a range of two uids")) {
		omr_err_free(&err);
		return;
	}
	fa = omr_jail_uid_claim(c, "sb_aaaaaaaaaa", &a, &err);
	fb = omr_jail_uid_claim(c, "sb_bbbbbbbbbb", &b, &err);
	ok(fa >= 0 && fb >= 0, "two claims in a range of two");
	ok(a != b && a >= 70000 && a < 70002 && b >= 70000 && b < 70002,
	   "two different uids of the range (%u, %u)", (unsigned)a, (unsigned)b);
	is_int(omr_jail_uids_taken(c), 2, "both are taken");
	fd = omr_jail_uid_claim(c, "sb_cccccccccc", &d, &err);
	ok(fd < 0 && err && omr_err_kind(err) == OMR_E_LIMIT, "a third is a limit error");
	like(err ? err->msg : "", "every jail uid is taken", "and says so");
	omr_err_free(&err);
	close(fa);
	is_int(omr_jail_uids_taken(c), 1, "a claim closed is given back");
	fd = omr_jail_uid_claim(c, "sb_cccccccccc", &d, &err);
	is_int(d, a, "the uid given back is claimed again");
	close(fd);
	close(fb);
	omr_config_free(c);
}

static void test_lists(void)
{
	int exact = -1;
	const struct omr_seccomp_list *l;

	l = omr_seccomp_list_for("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18)", &exact);
	ok(!strcmp(l->qemu, "7.2") && exact, "QEMU 7.2.22 gets the 7.2 list");
	l = omr_seccomp_list_for("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-1~bpo12+1)", &exact);
	ok(!strcmp(l->qemu, "10.0") && exact, "QEMU 10.0 gets the 10.0 list");
	l = omr_seccomp_list_for("QEMU emulator version 9.2.0", &exact);
	ok(!strcmp(l->qemu, "7.2") && !exact, "QEMU 9.2 gets the newest older list, not exact");
	ok(omr_seccomp_listed(omr_seccomp_list_for("10.0", &exact), "fstatfs") &&
		   !omr_seccomp_listed(omr_seccomp_list_for("7.2", &exact), "fstatfs"),
	   "10.0's list has what a restore needs (fstatfs, msync); 7.2's does not");
	l = omr_seccomp_list_for(NULL, &exact);
	ok(l && !exact, "an unknown version gets a list, not exact");
	ok(omr_seccomp_listed(l, "ppoll") && omr_seccomp_listed(l, "execve"), "ppoll, execve listed");
	ok(!omr_seccomp_listed(l, "mbind") && !omr_seccomp_listed(l, "ptrace") &&
	   !omr_seccomp_listed(l, "socket") && !omr_seccomp_listed(l, "fork"),
	   "mbind, ptrace, socket, fork not listed");
	ok(omr_seccomp_list_len(l) > 50, "the list has %zu calls", omr_seccomp_list_len(l));
}

/* Runs fn in a child under the 7.2 list (mode kill); returns its wait
 * status. */
static int under_filter(void (*fn)(void))
{
	static const char exec_path[] = "/nonexistent/qemu";
	struct sock_fprog prog;
	struct omr_err *err = NULL;
	int exact, status = -1;
	pid_t pid;

	if (omr_seccomp_build(omr_seccomp_list_for("7.2", &exact), "kill", exec_path, &prog,
			      &err) < 0) {
		diag("build: %s", err->msg);
		omr_err_free(&err);
		return -1;
	}
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
		    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
			_exit(99);
		fn();
		/* Straight to the kernel: a sanitizer's _exit makes calls
		 * of its own (sigaltstack) that are not on the list. */
		syscall(SYS_exit_group, 0);
	}
	free(prog.filter);
	waitpid(pid, &status, 0);
	return status;
}

static void do_listed(void)
{
	char b[8];

	/* write, read, getpid, exit_group: all on the list. */
	(void)!write(1, "", 0);
	(void)!read(0, b, 0);
	(void)syscall(SYS_getpid);
}

static void do_mbind(void)
{
	syscall(SYS_mbind, 0, 0, 0, 0, 0, 0);
}

static void do_fork(void)
{
	/* clone without CLONE_THREAD: a process, not a thread. */
	syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
}

static void do_execve(void)
{
	static char *const argv[] = { "/bin/true", NULL };
	execve("/bin/true", argv, argv + 1);
}

static void do_io_uring(void)
{
	syscall(SYS_exit_group, syscall(SYS_io_uring_setup, 1, NULL) < 0 && errno == ENOSYS ? 0 : 1);
}

static void test_filter(void)
{
	int st;

	st = under_filter(do_listed);
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "listed calls go through (status %#x)", st);
	st = under_filter(do_mbind);
	ok(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS, "mbind kills the process with SIGSYS");
	st = under_filter(do_fork);
	ok(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS, "clone without CLONE_THREAD kills");
	st = under_filter(do_execve);
	ok(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS, "execve of another path kills");
	st = under_filter(do_io_uring);
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "io_uring_setup is answered ENOSYS");
}

int main(void)
{
	if (!mkdtemp(dir))
		bail_out("mkdtemp: %s", strerror(errno));
	test_uids();
	test_lists();
	test_filter();
	omr_rm_rf_at(AT_FDCWD, dir);
	return done_testing();
}
