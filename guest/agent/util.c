/* Small helpers: logging, clocks, errno codes, UTF-8, base64, paths. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "omnirun/base/cleanup.h"

static int log_fd = 2;
static bool log_kmsg;

void alog_use_kmsg(void)
{
	int fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0)
		fd = open("/dev/console", O_WRONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return;
	if (log_kmsg)
		close(log_fd);
	log_fd = fd;
	log_kmsg = true;
}

static void vlog(int level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void vlog(int level, const char *fmt, va_list ap)
{
	char line[512];
	int n;

	/* kmsg takes a <level> prefix; errors (3) reach the console even
	 * when the kernel runs "quiet", routine lines (6) only dmesg. */
	n = log_kmsg ? snprintf(line, sizeof(line), "<%d>", level) : 0;
	n += snprintf(line + n, sizeof(line) - (size_t)n, "omnirun-agent[%d]: ", (int)getpid());
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	n = (int)strnlen(line, sizeof(line) - 2);
	line[n++] = '\n';
	(void)!write(log_fd, line, (size_t)n);
}

void alog(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(6, fmt, ap);
	va_end(ap);
}

void aerr(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(3, fmt, ap);
	va_end(ap);
}

static uint64_t clock_ms(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t now_ms(void)
{
	return clock_ms(CLOCK_MONOTONIC);
}

uint64_t wall_ms(void)
{
	return clock_ms(CLOCK_REALTIME);
}

int fd_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

ssize_t file_read_small(const char *path, char *buf, size_t size)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	ssize_t len;

	if (fd < 0)
		return -errno;
	len = omr_read_full(fd, buf, size - 1);
	if (len >= 0)
		buf[len] = 0;
	return len;
}

int file_write_str(const char *path, const char *s)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
	ssize_t w;

	if (fd < 0)
		return -errno;
	/* sysfs/procfs take one write per value: no retry loop. */
	w = write(fd, s, strlen(s));
	if (w < 0)
		return -errno;
	return 0;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len, i;
	uint32_t cp;

	if (c < 0x80)
		return c ? 1 : 0;
	if ((c & 0xe0) == 0xc0)
		len = 2, cp = c & 0x1f;
	else if ((c & 0xf0) == 0xe0)
		len = 3, cp = c & 0x0f;
	else if ((c & 0xf8) == 0xf0)
		len = 4, cp = c & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	/* Overlong forms, surrogates and values past U+10FFFF are invalid. */
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return len;
}

bool utf8_valid(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < n) {
		size_t l = utf8_seq(p + i, n - i);
		if (!l)
			return false;
		i += l;
	}
	return true;
}

json_t *json_bytes(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	_cleanup_free_ char *out = NULL;
	size_t i = 0, o = 0;

	if (utf8_valid(s, n))
		return json_stringn(s, n);
	out = malloc(n * 3 + 1);
	if (!out)
		return NULL;
	while (i < n) {
		size_t l = utf8_seq(p + i, n - i);
		if (l) {
			memcpy(out + o, p + i, l);
			o += l;
			i += l;
		} else {
			memcpy(out + o, "\xef\xbf\xbd", 3); /* U+FFFD */
			o += 3;
			i++;
		}
	}
	return json_stringn(out, o);
}

void json_set_name(json_t *o, const char *key, const char *s)
{
	size_t n = strlen(s);

	json_object_set_new(o, key, json_bytes(s, n));
	if (!utf8_valid(s, n)) {
		char k[64];
		_cleanup_free_ char *b = b64_encode(s, n);
		snprintf(k, sizeof(k), "%s_b64", key);
		if (b)
			json_object_set_new(o, k, json_string(b));
	}
}

static const char b64chars[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *b64_encode(const void *data, size_t n)
{
	const unsigned char *p = data;
	char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
	size_t i;

	if (!out)
		return NULL;
	for (i = 0; i + 2 < n; i += 3) {
		*o++ = b64chars[p[i] >> 2];
		*o++ = b64chars[(p[i] & 3) << 4 | p[i + 1] >> 4];
		*o++ = b64chars[(p[i + 1] & 15) << 2 | p[i + 2] >> 6];
		*o++ = b64chars[p[i + 2] & 63];
	}
	if (i < n) {
		*o++ = b64chars[p[i] >> 2];
		if (i + 1 < n) {
			*o++ = b64chars[(p[i] & 3) << 4 | p[i + 1] >> 4];
			*o++ = b64chars[(p[i + 1] & 15) << 2];
		} else {
			*o++ = b64chars[(p[i] & 3) << 4];
			*o++ = '=';
		}
		*o++ = '=';
	}
	*o = 0;
	return out;
}

char *b64_decode(const char *s, size_t *n)
{
	size_t len = strlen(s), o = 0, i;
	unsigned acc = 0;
	int bits = 0;
	char *out;

	if (len % 4)
		return NULL;
	out = malloc(len / 4 * 3 + 1);
	if (!out)
		return NULL;
	for (i = 0; i < len; i++) {
		const char *c = strchr(b64chars, s[i]);
		if (s[i] == '=' && i >= len - 2) {
			if (i == len - 2 && s[i + 1] != '=')
				goto bad;
			break;
		}
		if (!c || !s[i])
			goto bad;
		acc = acc << 6 | (unsigned)(c - b64chars);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (char)(acc >> bits);
		}
	}
	out[o] = 0;
	*n = o;
	return out;
bad:
	free(out);
	return NULL;
}

char *path_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash || slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

char *path_join(const char *dir, const char *name)
{
	size_t d = strlen(dir), n = strlen(name);
	bool sep = d == 0 || dir[d - 1] != '/';
	char *p = malloc(d + sep + n + 1);

	if (!p)
		return NULL;
	memcpy(p, dir, d);
	if (sep)
		p[d] = '/';
	memcpy(p + d + sep, name, n + 1);
	return p;
}

int mkdir_parents(const char *path, mode_t mode)
{
	_cleanup_free_ char *p = strdup(path);
	struct stat st;
	char *s = p;

	if (!p)
		return -ENOMEM;
	for (;;) {
		s = *s ? strchr(s + 1, '/') : NULL;
		if (s)
			*s = 0;
		if (*p) {
			if (mkdir(p, mode) < 0 && errno != EEXIST)
				return -errno;
			if (stat(p, &st) < 0)
				return -errno;
			if (!S_ISDIR(st.st_mode))
				return -ENOTDIR;
		}
		if (!s)
			return 0;
		*s = '/';
	}
}

int remove_tree_at(int dfd, const char *name)
{
	int fd, rc = 0;
	DIR *d;
	struct dirent *de;

	if (unlinkat(dfd, name, 0) == 0)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -errno;
	/* O_NOFOLLOW: a symlink swapped in for a directory is not walked. */
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		int r = remove_tree_at(dirfd(d), de->d_name);
		if (r < 0 && !rc)
			rc = r;
	}
	closedir(d);
	if (rc)
		return rc;
	return unlinkat(dfd, name, AT_REMOVEDIR) < 0 ? -errno : 0;
}
