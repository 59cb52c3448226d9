/* Bounded helpers of omnirun/util.h. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "omnirun/cleanup.h"
#include "omnirun/util.h"

int omr_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out,
		  const char *what, struct omr_err **err)
{
	unsigned long long v;
	char *end;

	if (!s || !*s || !isdigit((unsigned char)*s))
		return omr_err_setx(err, EINVAL, "invalid %s '%s': not a number",
				   what, s ? s : "");
	errno = 0;
	v = strtoull(s, &end, 10);
	if (*end)
		return omr_err_setx(err, EINVAL, "invalid %s '%s': not a number",
				   what, s);
	if (errno == ERANGE || v < min || v > max)
		return omr_err_setx(err, ERANGE,
				    "invalid %s '%s': must be between %llu and %llu",
				    what, s, (unsigned long long)min,
				    (unsigned long long)max);
	*out = v;
	return 0;
}

int omr_strlcpy(char *dst, const char *src, size_t n)
{
	size_t len = strlen(src);

	if (n == 0 || len >= n)
		return -ENAMETOOLONG;
	memcpy(dst, src, len + 1);
	return 0;
}

void *omr_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		abort();
	return p;
}

void *omr_xcalloc(size_t n, size_t m)
{
	void *p = calloc(n ? n : 1, m ? m : 1);
	if (!p)
		abort();
	return p;
}

void *omr_xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		abort();
	return p;
}

char *omr_xstrdup(const char *s)
{
	char *p = strdup(s);
	if (!p)
		abort();
	return p;
}

char *omr_strdup_printf(const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	va_end(ap);
	return s;
}

int omr_read_file_at(int dirfd, const char *name, size_t max, char **out,
		     size_t *len, struct omr_err **err)
{
	_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	_cleanup_free_ char *buf = NULL;
	ssize_t n;

	if (fd < 0)
		return omr_err_set(err, errno, "cannot open %s", name);
	buf = omr_xmalloc(max + 1);
	n = omr_read_full(fd, buf, max + 1);
	if (n < 0)
		return omr_err_set(err, (int)-n, "cannot read %s", name);
	if ((size_t)n > max)
		return omr_err_setx(err, EFBIG, "%s is larger than %zu bytes", name, max);
	buf[n] = 0;
	if (len)
		*len = (size_t)n;
	*out = omr_steal_ptr(buf);
	return 0;
}

int omr_write_file_atomic_at(int dirfd, const char *name, const void *data,
			     size_t len, mode_t mode, struct omr_err **err)
{
	_cleanup_free_ char *tmp = omr_strdup_printf("%s.tmp", name);
	_cleanup_close_ int fd = -1;
	int rc;

	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0)
		return omr_err_set(err, errno, "cannot create %s", tmp);
	rc = omr_write_all(fd, data, len);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (rc < 0) {
		unlinkat(dirfd, tmp, 0);
		return omr_err_set(err, -rc, "cannot write %s", tmp);
	}
	if (renameat(dirfd, tmp, dirfd, name) < 0) {
		rc = errno;
		unlinkat(dirfd, tmp, 0);
		return omr_err_set(err, rc, "cannot rename %s", tmp);
	}
	/* The rename is durable only once the directory is synced. */
	if (fsync(dirfd) < 0 && errno != EINVAL)
		return omr_err_set(err, errno, "cannot sync directory of %s", name);
	return 0;
}

uint64_t omr_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t omr_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void omr_format_time(int64_t secs, char buf[32])
{
	time_t t = (time_t)secs;
	struct tm tm;

	if (secs <= 0 || !gmtime_r(&t, &tm)) {
		strcpy(buf, "-");
		return;
	}
	strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int omr_mkdir_p(const char *path, mode_t mode, struct omr_err **err)
{
	_cleanup_free_ char *p = omr_xstrdup(path);

	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(p, mode) < 0 && errno != EEXIST)
			return omr_err_set(err, errno, "cannot create %s", p);
		*s = '/';
	}
	if (mkdir(p, mode) < 0 && errno != EEXIST)
		return omr_err_set(err, errno, "cannot create %s", p);
	return 0;
}

int omr_rm_rf_at(int dirfd, const char *name)
{
	struct stat st;
	int fd, rc = 0;
	DIR *d;
	struct dirent *de;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlinkat(dirfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		rc = -errno;
		close(fd);
		return rc;
	}
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		int r = omr_rm_rf_at(fd, de->d_name);
		if (r < 0 && rc == 0)
			rc = r;
	}
	closedir(d);
	if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT && rc == 0)
		rc = -errno;
	return rc;
}

int omr_fd_set_nonblock(int fd, int on)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return -errno;
	fl = on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
	return fcntl(fd, F_SETFL, fl) < 0 ? -errno : 0;
}

int omr_fd_set_cloexec(int fd, int on)
{
	int fl = fcntl(fd, F_GETFD);
	if (fl < 0)
		return -errno;
	fl = on ? fl | FD_CLOEXEC : fl & ~FD_CLOEXEC;
	return fcntl(fd, F_SETFD, fl) < 0 ? -errno : 0;
}

/* Length of the well-formed UTF-8 sequence at p (1 for ASCII), 0 if it
 * is not one: overlong forms and surrogates included. */
static size_t utf8_len(const unsigned char *p)
{
	size_t n;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4;
	else
		return 0;
	for (size_t i = 1; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0; /* also stops at the NUL */
	if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] > 0x9f) ||
	    (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] > 0x8f))
		return 0;
	return n;
}

char *omr_str_escape_ctl(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	char *out = omr_xmalloc(4 * strlen(s) + 1), *o = out;

	while (*p) {
		size_t n = utf8_len(p), bad = 0;

		if (n == 0)
			bad = 1; /* not UTF-8: a C1 control on an 8-bit terminal */
		else if (n == 2 && p[0] == 0xc2 && p[1] < 0xa0)
			bad = 2; /* U+0080..U+009F, the C1 controls */
		else if (n == 1 && ((*p < 0x20 && *p != '\n' && *p != '\t') || *p == 0x7f))
			bad = 1; /* C0 and DEL */

		if (!bad) {
			memcpy(o, p, n);
			o += n;
			p += n;
			continue;
		}
		for (size_t i = 0; i < bad; i++, p++)
			o += sprintf(o, "\\x%02x", *p);
	}
	*o = 0;
	return out;
}

char *omr_proc_cmdline(pid_t pid)
{
	_cleanup_free_ char *path = omr_strdup_printf("/proc/%d/cmdline", (int)pid);
	char *cmd = NULL;
	size_t len;

	if (pid <= 0 || omr_read_file_at(AT_FDCWD, path, 65536, &cmd, &len, NULL) < 0)
		return NULL;
	for (size_t i = 0; i < len; i++)
		if (!cmd[i])
			cmd[i] = ' ';
	return cmd;
}

/* Through syscall(): glibc has the wrappers only since 2.36. */
int omr_pidfd_open(pid_t pid)
{
	long fd;

	if (pid <= 0)
		return -ESRCH;
	fd = syscall(SYS_pidfd_open, pid, 0);
	return fd < 0 ? -errno : (int)fd;
}

int omr_pidfd_signal(int pidfd, int sig)
{
	return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0 ? -errno : 0;
}

int omr_pidfd_wait(int pidfd, int timeout_ms)
{
	uint64_t deadline = omr_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);

	for (;;) {
		struct pollfd p = { .fd = pidfd, .events = POLLIN };
		uint64_t now = omr_now_ms();
		int r = poll(&p, 1, now >= deadline ? 0 : (int)(deadline - now));

		if (r > 0)
			return 1;
		if (r == 0 || errno != EINTR)
			return 0;
	}
}

int omr_fd_move(int fd, int to)
{
	if (fd == to)
		return omr_fd_set_cloexec(fd, 0);
	return dup2(fd, to) < 0 ? -errno : 0;
}

static int is_executable(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0;
}

char *omr_find_program(const char *name, const char *extra_dirs)
{
	const char *path = getenv("PATH");
	_cleanup_free_ char *dirs = NULL;
	char *save = NULL;

	if (strchr(name, '/'))
		return is_executable(name) ? omr_xstrdup(name) : NULL;
	dirs = omr_strdup_printf("%s%s%s", path && *path ? path : "/usr/local/bin:/usr/bin:/bin",
				 extra_dirs ? ":" : "", extra_dirs ? extra_dirs : "");
	for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		if (*d != '/')
			continue;
		_cleanup_free_ char *cand = omr_strdup_printf("%s/%s", d, name);
		if (is_executable(cand))
			return omr_steal_ptr(cand);
	}
	return NULL;
}
