/* Unit tests for libcore/base (str, fs, fd, spawn) and omr_spawn's fds (TAP). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "omnirun/base/util.h"
#include "omnirun/vm/vmm.h"

#include "tap.h"

static void escape_is(const char *in, const char *want, const char *what)
{
	char *got = omr_str_escape_ctl(in);

	ok(!strcmp(got, want), "escape: %s", what);
	free(got);
}

static void test_escape(void)
{
	escape_is("plain text", "plain text", "plain text unchanged");
	escape_is("a\nb\tc", "a\nb\tc", "newline and tab kept");
	escape_is("\x1b[31mred", "\\x1b[31mred", "ESC escaped");
	escape_is("x\x7fy\x01", "x\\x7fy\\x01", "DEL and C0 escaped");
	escape_is("a\xc2\x9b" "b", "a\\xc2\\x9bb", "C1 CSI (U+009B) escaped");
	escape_is("a\x9b" "b", "a\\x9bb", "a stray 8-bit CSI escaped");
	escape_is("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
		  "UTF-8 kept (é, €, an emoji)");
	escape_is("\xe0\x80\x9b", "\\xe0\\x80\\x9b", "an overlong form escaped");
	escape_is("\xe2\x82", "\\xe2\\x82", "a truncated sequence escaped");
}

static void test_parse(void)
{
	struct omr_err *err = NULL;
	uint64_t v = 0;

	ok(omr_parse_u64("42", 1, 100, &v, "size", &err) == 0 && v == 42, "parse: in range");
	ok(omr_parse_u64("420", 1, 100, &v, "size", &err) == -ERANGE && err &&
		   !strcmp(err->msg, "invalid size '420': must be between 1 and 100"),
	   "parse: a range error has no strerror suffix");
	omr_err_free(&err);
	ok(omr_parse_u64("99999999999999999999999", 1, 100, &v, "size", &err) == -ERANGE && err &&
		   !strstr(err->msg, "out of range"),
	   "parse: overflow is a range error without strerror");
	omr_err_free(&err);
}

static void test_fd_move(void)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	ok(fd >= 0 && omr_fd_move(fd, fd) == 0 && !(fcntl(fd, F_GETFD) & FD_CLOEXEC),
	   "fd_move onto itself clears O_CLOEXEC");
	close(fd);
}

/* Runs sh listing its fds into a pipe; leak (fd 20) is open without
 * O_CLOEXEC, as a careless caller of ours might leave one. */
static void test_spawn_fds(void)
{
	char *argv[] = { "/bin/sh", "-c", "ls /proc/self/fd | sort -n | tr '\\n' ' '", NULL };
	int leak = dup2(1, 20), keep = open("/dev/null", O_RDONLY | O_CLOEXEC);
	int from[1] = { keep }, to[1] = { 3 }, p[2];
	char buf[256] = { 0 };
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0 || leak < 0 || keep < 0) {
		ok(0, "spawn: setup");
		return;
	}
	pid = omr_spawn(argv, p[1], from, to, 1, NULL);
	close(p[1]);
	(void)!omr_read_full(p[0], buf, sizeof(buf) - 1);
	close(p[0]);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	/* ls itself opens one fd for /proc/self/fd: 0 1 2 3 and that one. */
	ok(pid > 0 && !strncmp(buf, "0 1 2 3 4 ", 10) && buf[10] == 0,
	   "spawn: only stdio and the kept fd reach the child, not fd %d (got '%s')", leak, buf);
	close(leak);
	close(keep);
}

static void test_pidfd(void)
{
	pid_t pid = fork();
	int pfd;

	if (pid == 0) {
		pause();
		_exit(0);
	}
	pfd = omr_pidfd_open(pid);
	ok(pfd >= 0 && omr_pidfd_wait(pfd, 50) == 0, "pidfd: a live process is not done");
	ok(omr_pidfd_signal(pfd, SIGKILL) == 0 && omr_pidfd_wait(pfd, 3000) == 1,
	   "pidfd: signalled, then seen exiting");
	waitpid(pid, NULL, 0);
	is_int(omr_pidfd_signal(pfd, SIGKILL), -ESRCH, "pidfd: a reaped process is never signalled");
	close(pfd);
	is_int(omr_pidfd_open(0), -ESRCH, "pidfd: pid 0 refused");
}

int main(void)
{
	test_escape();
	test_parse();
	test_fd_move();
	test_spawn_fds();
	test_pidfd();
	return done_testing();
}
