/* Files under a directory fd: bounded reads, atomic writes, mkdir -p, rm -rf. See omnirun/base/util.h. */
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
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/base/util.h"

int omr_read_file_at(int dirfd, const char *name, size_t max, char **out,
		     size_t *len, struct omr_err **err)
{
	_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	_cleanup_free_ char *buf = NULL;
	ssize_t n;

	if (fd < 0)
		return omr_err_set(err, omr_err_kind_missing(errno), errno, "cannot open %s", name);
	buf = omr_xmalloc(max + 1);
	n = omr_read_full(fd, buf, max + 1);
	if (n < 0)
		return omr_err_set(err, OMR_E_FAIL, (int)-n, "cannot read %s", name);
	if ((size_t)n > max)
		return omr_err_setx(err, OMR_E_TOO_LARGE, EFBIG, "%s is larger than %zu bytes", name, max);
	buf[n] = 0;
	if (len)
		*len = (size_t)n;
	*out = omr_steal_ptr(buf);
	return 0;
}

/* A full disk is a limit the caller can act on, not a plain failure. */
static enum omr_err_kind write_kind(int e)
{
	return e == ENOSPC || e == EDQUOT ? OMR_E_LIMIT : OMR_E_FAIL;
}

int omr_open_temp_at(int dirfd, const char *name, mode_t mode, char **tmp, struct omr_err **err)
{
	for (int tries = 0; tries < 16; tries++) {
		uint64_t r;
		char *t;
		int fd;

		if (getrandom(&r, sizeof(r), 0) != sizeof(r))
			r = omr_now_ms() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)tries;
		/* NAME cut so that the whole stays within NAME_MAX (255). */
		t = omr_strdup_printf(".%.200s.%016llx", name, (unsigned long long)r);
		fd = openat(dirfd, t, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
		if (fd >= 0) {
			*tmp = t;
			return fd;
		}
		free(t);
		if (errno != EEXIST)
			return omr_err_set(err, write_kind(errno), errno,
					   "cannot create a temporary file for %s", name);
	}
	return omr_err_setx(err, OMR_E_FAIL, EEXIST, "cannot create a temporary file for %s", name);
}

int omr_write_file_atomic_at(int dirfd, const char *name, const void *data,
			     size_t len, mode_t mode, struct omr_err **err)
{
	_cleanup_free_ char *tmp = NULL;
	_cleanup_close_ int fd = -1;
	int rc;

	/* A name of its own for each writer: two writers never share (and
	 * truncate) one temporary file. */
	fd = omr_open_temp_at(dirfd, name, mode, &tmp, err);
	if (fd < 0)
		return -1;
	rc = omr_write_all(fd, data, len);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (rc < 0) {
		unlinkat(dirfd, tmp, 0);
		return omr_err_set(err, write_kind(-rc), -rc, "cannot write %s", name);
	}
	if (renameat(dirfd, tmp, dirfd, name) < 0) {
		rc = errno;
		unlinkat(dirfd, tmp, 0);
		return omr_err_set(err, write_kind(rc), rc, "cannot rename %s into place", name);
	}
	/* The rename is durable only once the directory is synced. */
	if (fsync(dirfd) < 0 && errno != EINVAL)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot sync directory of %s", name);
	return 0;
}

int omr_mkdir_p(const char *path, mode_t mode, struct omr_err **err)
{
	_cleanup_free_ char *p = omr_xstrdup(path);
	struct stat st;

	for (char *s = p + 1;; s++) {
		char c = *s;

		if (c && c != '/')
			continue;
		*s = 0;
		if (mkdir(p, mode) < 0) {
			/* Something else in the way is ENOTDIR, the last
			 * component too. */
			if (errno != EEXIST || stat(p, &st) < 0)
				return omr_err_set(err, OMR_E_FAIL, errno, "cannot create %s", p);
			if (!S_ISDIR(st.st_mode))
				return omr_err_set(err, OMR_E_FAIL, ENOTDIR, "cannot create %s", p);
		}
		if (!c)
			return 0;
		*s = c;
	}
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

int omr_dir_private(const char *path, int create, struct omr_err **err)
{
	_cleanup_close_ int fd = -1;
	struct stat st;

	if (create && omr_mkdir_p(path, 0700, err) < 0)
		return -1;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return omr_err_set(err, omr_err_kind_missing(errno), errno, "cannot open %s", path);
	if (fstat(fd, &st) < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot check %s", path);
	/* Someone else's directory, or one others can write to, could hold
	 * records and sockets we did not make. */
	if (st.st_uid != geteuid() || (st.st_mode & 022))
		return omr_err_setx(err, OMR_E_DENIED, EPERM,
				    "refusing %s: owned by uid %u with mode %04o; it must be owned by "
				    "uid %u and writable by nobody else", path, (unsigned)st.st_uid,
				    (unsigned)(st.st_mode & 07777), (unsigned)geteuid());
	return omr_steal_fd(fd);
}

char *omr_path_clean(const char *path)
{
	size_t o = 0, dotdot = 0; /* out[..dotdot) is never backed over */
	char *out = omr_xmalloc(strlen(path) + 2);
	int rooted = path[0] == '/';
	const char *p = path;

	if (rooted)
		out[o++] = '/', dotdot = 1;
	while (*p) {
		size_t n = strcspn(p, "/");
		if (n == 0 || (n == 1 && p[0] == '.')) {
			/* an empty or "." component */
		} else if (n == 2 && p[0] == '.' && p[1] == '.') {
			if (o > dotdot) { /* back over the last component */
				for (o--; o > dotdot && out[o] != '/'; o--)
					;
			} else if (!rooted) { /* a relative path keeps its "..": */
				if (o > 0)
					out[o++] = '/';
				out[o++] = '.';
				out[o++] = '.';
				dotdot = o;
			} /* "/.." is "/" */
		} else {
			if (o > (size_t)rooted)
				out[o++] = '/';
			memcpy(out + o, p, n);
			o += n;
		}
		p += n;
		while (*p == '/')
			p++;
	}
	if (o == 0)
		out[o++] = '.';
	out[o] = 0;
	return out;
}

int omr_copy_sparse(int in, int out, struct omr_err **err)
{
	struct stat st;
	off_t data = 0, hole;

	if (fstat(in, &st) < 0 || ftruncate(out, st.st_size) < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot size the copy");
	/* Data ranges only: holes stay holes (a fresh disk is mostly one). */
	while (data < st.st_size) {
		data = lseek(in, data, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			break; /* nothing but a hole to the end */
		hole = data < 0 ? -1 : lseek(in, data, SEEK_HOLE);
		if (hole < 0)
			return omr_err_set(err, OMR_E_FAIL, errno, "cannot find the data to copy");
		while (data < hole) {
			loff_t from = data, to = data;
			ssize_t n = copy_file_range(in, &from, out, &to, (size_t)(hole - data), 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return omr_err_set(err, OMR_E_FAIL, n < 0 ? errno : EIO, "cannot copy");
			data += n;
		}
	}
	return 0;
}
