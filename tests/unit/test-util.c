/* Unit tests for libcore/base (str, fs, fd, spawn) and omr_spawn's fds (TAP). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/base/json.h"
#include "omnirun/base/spawn.h"
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

static void clean_is(const char *in, const char *want)
{
	char *got = omr_path_clean(in);

	is_str(got, want, "path_clean: '%s'", in);
	free(got);
}

static void test_path_clean(void)
{
	clean_is("/", "/");
	clean_is("/.", "/");
	clean_is("/./", "/");
	clean_is("//", "/");
	clean_is("/data/..", "/");
	clean_is("/data/../..", "/");
	clean_is("/../data", "/data");
	clean_is("/tmp//a/./b/", "/tmp/a/b");
	clean_is("/a/b/../c/..", "/a");
	clean_is("/a/..b/.c", "/a/..b/.c");
	clean_is("a/../..", "..");
	clean_is("../a/../../b", "../../b");
	clean_is("", ".");
	clean_is("/\xff/./\xfe/..", "/\xff");
}

static void test_utf8_b64(void)
{
	static const struct { const char *s; int valid; } u[] = {
		{ "plain", 1 }, { "caf\xc3\xa9", 1 }, { "\xf0\x9f\x98\x80", 1 },
		{ "\xff\xfe", 0 }, { "\xc0\xaf", 0 }, { "\xed\xa0\x80", 0 },
		{ "\xf4\x90\x80\x80", 0 }, { "\xe2\x82", 0 },
	};
	char *dec = NULL, *enc;
	size_t n = 0;

	for (size_t i = 0; i < OMR_ARRAY_SIZE(u); i++)
		is_int(omr_utf8_valid(u[i].s, strlen(u[i].s)), u[i].valid, "utf8: case %zu", i);
	for (size_t len = 0; len <= 5; len++) {
		const char bytes[] = "\xff\xfe\x00a=";
		enc = omr_b64_encode(bytes, len);
		ok(omr_b64_decode(enc, &dec, &n) == 0 && n == len && !memcmp(dec, bytes, len) &&
			   dec[len] == 0,
		   "b64: %zu bytes round trip as '%s'", len, enc);
		free(enc);
		free(dec);
		dec = NULL;
	}
	ok(omr_b64_decode("//4", &dec, &n) == -EINVAL && omr_b64_decode("/?4=", &dec, &n) == -EINVAL &&
		   omr_b64_decode("/=4=", &dec, &n) == -EINVAL,
	   "b64: a bad length, a bad character, '=' inside are refused");
}

static void test_json_bytes(void)
{
	char *argv[] = { "printf", "a\xff\xfe" "b", "", NULL }, **back = NULL, *s = NULL;
	json_t *o = json_object();

	omr_json_set_bytes(o, "path", "/tmp/ok");
	ok(json_object_get(o, "path") && !json_object_get(o, "path_b64"),
	   "json bytes: UTF-8 goes as text alone");
	omr_json_set_bytes(o, "name", "n\xff\xfe");
	ok(!strcmp(json_string_value(json_object_get(o, "name")), "n\xef\xbf\xbd\xef\xbf\xbd") &&
		   !strcmp(json_string_value(json_object_get(o, "name_b64")), "bv/+"),
	   "json bytes: other bytes as text with U+FFFD, and exactly in _b64");
	ok(omr_json_get_bytes(o, "name", &s) == 1 && !strcmp(s, "n\xff\xfe"),
	   "json bytes: read back exactly");
	free(s);
	ok(omr_json_get_bytes(o, "none", &s) == 0 && !s, "json bytes: a missing field is 0");
	json_object_set_new(o, "nul_b64", json_string("YQBi"));
	json_object_set_new(o, "nul", json_stringn("a\0b", 3));
	is_int(omr_json_get_bytes(o, "nul", &s), -EINVAL, "json bytes: NUL in _b64 refused");
	json_object_del(o, "nul_b64");
	is_int(omr_json_get_bytes(o, "nul", &s), -EINVAL, "json bytes: NUL in text refused");
	omr_json_set_bytes_array(o, "argv", argv);
	ok(json_array_size(json_object_get(o, "argv")) == 3 &&
		   json_array_size(json_object_get(o, "argv_b64")) == 3,
	   "json bytes: an array keeps every element, with a whole _b64 twin");
	ok(omr_json_get_bytes_array(o, "argv", 3, &back) == 1 && back[0] && back[1] && back[2] &&
		   !back[3] && !strcmp(back[1], argv[1]) && !strcmp(back[2], ""),
	   "json bytes: array read back exactly");
	omr_argv_free(back);
	is_int(omr_json_get_bytes_array(o, "argv", 2, &back), -E2BIG, "json bytes: array bounded");
	json_decref(o);
}

/* rm -rf says 0 for a missing path (callers clean up with it; the guest's
 * remove op looks first); mkdir -p says ENOTDIR for a file in the way. */
static void test_fs(void)
{
	char dir[] = "/tmp/omnirun-test-util.XXXXXX";
	int dfd;

	if (!mkdtemp(dir) || (dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		ok(0, "fs: setup");
		return;
	}
	is_int(omr_rm_rf_at(dfd, "missing"), 0, "rm_rf: a missing path is success");
	ok(mkdirat(dfd, "t", 0700) == 0 && mkdirat(dfd, "t/d", 0700) == 0 &&
		   close(openat(dfd, "t/d/f", O_CREAT | O_WRONLY | O_CLOEXEC, 0600)) == 0 &&
		   symlinkat(dir, dfd, "t/l") == 0 && omr_rm_rf_at(dfd, "t") == 0 &&
		   faccessat(dfd, "t", F_OK, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT &&
		   faccessat(AT_FDCWD, dir, F_OK, 0) == 0,
	   "rm_rf: a tree goes, a symlink in it is removed, not followed");
	_cleanup_free_ char *f = omr_strdup_printf("%s/file", dir);
	_cleanup_free_ char *deep = omr_strdup_printf("%s/a/b/c", dir);
	_cleanup_free_ char *under = omr_strdup_printf("%s/file/x", dir);
	close(openat(dfd, "file", O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
	ok(omr_mkdir_p(deep, 0700, NULL) == 0 && omr_mkdir_p(deep, 0700, NULL) == 0,
	   "mkdir_p: makes parents, and an existing directory is fine");
	ok(omr_mkdir_p(f, 0700, NULL) == -ENOTDIR && omr_mkdir_p(under, 0700, NULL) == -ENOTDIR,
	   "mkdir_p: a file in the way (at the end or before) is ENOTDIR");
	{
		/* 4 MiB with data at 1 MiB and at the end: the copy has the
		 * same bytes and no more blocks than the source. */
		int in = openat(dfd, "sparse", O_CREAT | O_RDWR | O_CLOEXEC, 0600);
		int out = openat(dfd, "copy", O_CREAT | O_RDWR | O_CLOEXEC, 0600);
		struct stat a, b;
		char buf[4096], got[4096];
		int same = 1;

		memset(buf, 'x', sizeof(buf));
		ok(in >= 0 && out >= 0 && ftruncate(in, 4 << 20) == 0 &&
			   pwrite(in, buf, sizeof(buf), 1 << 20) == (ssize_t)sizeof(buf) &&
			   pwrite(in, buf, 10, (4 << 20) - 10) == 10 && omr_copy_sparse(in, out, NULL) == 0,
		   "copy_sparse: copies");
		fstat(in, &a);
		fstat(out, &b);
		for (off_t o = 0; o < a.st_size; o += (off_t)sizeof(got)) {
			ssize_t n1 = pread(in, buf, sizeof(buf), o), n2 = pread(out, got, sizeof(got), o);
			same &= n1 == n2 && n1 > 0 && !memcmp(buf, got, (size_t)n1);
		}
		ok(same && a.st_size == b.st_size, "copy_sparse: the same bytes, the same size");
		ok(b.st_blocks <= a.st_blocks && b.st_blocks < 64, "copy_sparse: holes stay holes "
		   "(%lld blocks for %lld)", (long long)b.st_blocks, (long long)a.st_blocks);
		close(in);
		close(out);
	}
	close(dfd);
	ok(omr_rm_rf_at(AT_FDCWD, dir) == 0 && access(dir, F_OK) < 0, "rm_rf: cleans up");
}

int main(void)
{
	test_escape();
	test_parse();
	test_fd_move();
	test_spawn_fds();
	test_pidfd();
	test_path_clean();
	test_utf8_b64();
	test_json_bytes();
	test_fs();
	return done_testing();
}
