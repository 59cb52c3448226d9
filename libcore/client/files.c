/* Files in a sandbox; see omnirun/files.h. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <fcntl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/client/client.h"
#include "omnirun/client/exec.h"
#include "omnirun/client/files.h"
#include "omnirun/base/json.h"
#include "omnirun/base/proto.h"
#include "omnirun/client/stream.h"
#include "omnirun/base/util.h"

#define GUEST_PATH_MAX 4096

int omr_files_path_check(const char *path, struct omr_err **err)
{
	if (!path || path[0] != '/')
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "guest path '%s' must be absolute", path ? path : "");
	if (strlen(path) > GUEST_PATH_MAX)
		return omr_err_setx(err, OMR_E_USAGE, ENAMETOOLONG, "guest path longer than %d bytes", GUEST_PATH_MAX);
	return 0;
}

/* Puts the path in front of an error, as one line whatever it holds. */
static int wrap_path(struct omr_err **err, const char *path)
{
	_cleanup_free_ char *line = omr_str_escape_line(path);

	return omr_err_wrap(err, "%s", line);
}

/* A request {"op": op} naming path: its text, and its bytes in path_b64
 * when they are not UTF-8 (omnirun/base/json.h). */
static json_t *path_req(const char *op, const char *path)
{
	json_t *req = json_pack("{s:s}", "op", op);

	omr_json_set_bytes(req, "path", path);
	return req;
}

/* Runs one file stream: s is prepared by the caller (outputs, callbacks)
 * with omr_stream_init(s, -1, 1); this connects, sends req (released),
 * pumps until END, and puts the path in front of an error.  The caller
 * frees s with omr_stream_free. */
static int file_stream(const struct omr_config *c, const char *id, const char *path,
		       struct omr_stream *s, json_t *req, struct omr_err **err)
{
	_cleanup_close_ int fd = -1;
	int rc = -1;

	if (omr_files_path_check(path, err) == 0 && (fd = omr_client_connect(c, id, err)) >= 0) {
		s->fd = fd;
		/* A guest that stops answering never holds a caller forever;
		 * a watch is quiet by nature and ends on the caller's signal. */
		if (s->idle_timeout_ms == 0)
			s->idle_timeout_ms = (int)c->files_timeout_s * 1000;
		rc = omr_stream_run(s, req, err);
		if (rc < 0)
			wrap_path(err, path);
	}
	json_decref(req);
	return rc < 0 ? -1 : 0;
}

int omr_files_put(const struct omr_config *c, const char *id, int in_fd, const char *path,
		  int mode, int parents, uint64_t *size, struct omr_err **err)
{
	struct omr_stream s;
	json_t *req;
	int rc;

	omr_stream_init(&s, -1, 1);
	s.in_fd = in_fd;
	s.in_channel = OMR_CH_FILE;
	req = path_req("file_write", path);
	json_object_set_new(req, "mode", json_integer(mode >= 0 ? mode & 07777 : 0644));
	json_object_set_new(req, "parents", json_boolean(parents));
	rc = file_stream(c, id, path, &s, req, err);
	if (rc == 0 && size)
		*size = s.bytes_out;
	omr_stream_free(&s);
	return rc;
}

/* What a download checks as the data comes in. */
struct get_ctx {
	struct omr_stream *s;
	const struct omr_config *c;
	int *mode;
	int out_fd;
	int check_space;          /* out_fd is a file on a filesystem */
	uint64_t since_check;     /* bytes written since the last statvfs */
};

#define SPACE_CHECK_BYTES (1u << 20)

/* The first REPLY announces the file's size and mode: the download never
 * takes more than that, nor more than the configured maximum. */
static int on_meta(void *user, json_t *reply)
{
	struct get_ctx *g = user;
	json_t *m = json_object_get(reply, "mode"), *sz = json_object_get(reply, "size");
	uint64_t max = (uint64_t)g->c->max_download_mb << 20;

	if (g->mode && json_is_integer(m))
		*g->mode = (int)json_integer_value(m);
	if (json_is_integer(sz) && json_integer_value(sz) >= 0 &&
	    (uint64_t)json_integer_value(sz) < max)
		max = (uint64_t)json_integer_value(sz);
	g->s->max_in = max;
	return 0;
}

/* Stops before the host's filesystem is full: a guest must not be able
 * to fill the disk that holds the host's records. */
static int on_data(void *user, uint8_t channel, size_t n, struct omr_err **err)
{
	struct get_ctx *g = user;
	struct statvfs st;
	uint64_t reserve = (uint64_t)g->c->host_reserve_mb << 20;

	if (channel != OMR_CH_FILE || !g->check_space)
		return 0;
	g->since_check += n;
	if (g->since_check < SPACE_CHECK_BYTES && g->s->bytes_in)
		return 0;
	g->since_check = 0;
	if (fstatvfs(g->out_fd, &st) < 0)
		return 0;
	/* Up to SPACE_CHECK_BYTES more are written before the next look. */
	if ((uint64_t)st.f_bavail * st.f_frsize < reserve + SPACE_CHECK_BYTES + n)
		return omr_err_setx(err, OMR_E_LIMIT, ENOSPC,
				    "stopped: the host's filesystem would have less than %u MB free",
				    g->c->host_reserve_mb);
	return 0;
}

int omr_files_get(const struct omr_config *c, const char *id, const char *path, int out_fd,
		  int *mode, uint64_t *size, struct omr_err **err)
{
	return omr_files_get_ex(c, id, path, out_fd, -1, mode, size, err);
}

int omr_files_get_ex(const struct omr_config *c, const char *id, const char *path, int out_fd,
		     int sig_fd, int *mode, uint64_t *size, struct omr_err **err)
{
	struct omr_stream s;
	struct get_ctx g = { .s = &s, .c = c, .mode = mode, .out_fd = out_fd };
	struct stat st;
	int rc;

	g.check_space = fstat(out_fd, &st) == 0 && S_ISREG(st.st_mode);
	omr_stream_init(&s, -1, 1);
	s.out_fd[OMR_CH_FILE] = out_fd;
	s.sig_fd = sig_fd;
	s.on_reply = on_meta;
	s.on_data = on_data;
	s.user = &g;
	s.max_in = (uint64_t)c->max_download_mb << 20;
	rc = file_stream(c, id, path, &s, path_req("file_read", path), err);
	if (rc == 0 && size)
		*size = s.bytes_in;
	omr_stream_free(&s);
	return rc;
}

/* The directory of dst, open, and dst's last component (malloc'ed). */
static int open_parent(const char *dst, char **base, struct omr_err **err)
{
	_cleanup_free_ char *dir = omr_xstrdup(dst);
	char *slash = strrchr(dir, '/');
	int dfd;

	if (slash && !slash[1])
		return omr_err_setx(err, OMR_E_USAGE, EISDIR, "%s names a directory", dst);
	*base = omr_xstrdup(slash ? slash + 1 : dst);
	if (slash)
		*slash = 0;
	dfd = open(slash ? (*dir ? dir : "/") : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		int rc = omr_err_set(err, omr_err_kind_missing(errno), errno, "cannot open the "
				     "directory of %s", dst);
		free(*base);
		*base = NULL;
		return rc;
	}
	return dfd;
}

int omr_files_download(const struct omr_config *c, const char *id, const char *src,
		       const char *dst, const struct omr_download_opts *o, uint64_t *size,
		       struct omr_err **err)
{
	_cleanup_free_ char *tmp = NULL, *base = NULL;
	_cleanup_close_ int fd = -1, dfd = -1;
	struct stat st;
	int mode = 0644, rc;
	mode_t mask = umask(0);

	umask(mask);
	if (!*dst)
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "empty destination");
	if (lstat(dst, &st) == 0) {
		if (S_ISLNK(st.st_mode))
			return omr_err_setx(err, OMR_E_USAGE, ELOOP,
					    "%s is a symbolic link: name its target instead", dst);
		if (S_ISDIR(st.st_mode))
			return omr_err_setx(err, OMR_E_USAGE, EISDIR, "%s is a directory", dst);
		if (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) ||
		    S_ISBLK(st.st_mode)) {
			/* A device, FIFO or terminal is written in place:
			 * replacing it would destroy it (/dev/null). */
			fd = open(dst, O_WRONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
			if (fd < 0)
				return omr_err_set(err, OMR_E_FAIL, errno, "cannot open %s", dst);
			return omr_files_get_ex(c, id, src, fd, o ? o->sig_fd : -1, NULL, size, err);
		}
		if (!(st.st_mode & 0222) && !(o && o->force))
			return omr_err_setx(err, OMR_E_DENIED, EACCES,
					    "%s is read-only (-f replaces it)", dst);
	} else if (errno != ENOENT) {
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot check %s", dst);
	}
	/* A temporary file of its own next to dst (O_EXCL, random name):
	 * never one that was there. */
	dfd = open_parent(dst, &base, err);
	if (dfd < 0 || (fd = omr_open_temp_at(dfd, base, 0600, &tmp, err)) < 0)
		return -1;
	rc = omr_files_get_ex(c, id, src, fd, o ? o->sig_fd : -1, &mode, size, err);
	/* The guest chooses the mode: permission bits only (never setuid,
	 * setgid or sticky on the host), and our umask applies. */
	if (rc == 0 && (fchmod(fd, (mode_t)mode & 0777 & ~mask) < 0 || fsync(fd) < 0))
		rc = omr_err_set(err, OMR_E_FAIL, errno, "cannot write %s", dst);
	if (rc == 0 && renameat(dfd, tmp, dfd, base) < 0)
		rc = omr_err_set(err, OMR_E_FAIL, errno, "cannot rename %s into place", dst);
	if (rc < 0)
		unlinkat(dfd, tmp, 0);
	return rc;
}

static int collect_entries(void *user, json_t *reply)
{
	json_t *arr = user, *e = json_object_get(reply, "entries");

	if (json_is_array(e))
		json_array_extend(arr, e);
	return 0;
}

int omr_files_list(const struct omr_config *c, const char *id, const char *path,
		   json_t **out, struct omr_err **err)
{
	struct omr_stream s;
	json_t *arr = json_array();
	int rc;

	omr_stream_init(&s, -1, 1);
	s.on_reply = collect_entries;
	s.user = arr;
	rc = file_stream(c, id, path, &s, path_req("list", path), err);
	omr_stream_free(&s);
	if (rc < 0) {
		json_decref(arr);
		return rc;
	}
	*out = arr;
	return 0;
}

static int simple(const struct omr_config *c, const char *id, json_t *req, json_t **out,
		  const char *path, struct omr_err **err)
{
	int rc = omr_sandbox_call(c, id, req, out, err);

	json_decref(req);
	return rc < 0 ? wrap_path(err, path) : 0;
}

int omr_files_stat(const struct omr_config *c, const char *id, const char *path,
		   json_t **out, struct omr_err **err)
{
	if (omr_files_path_check(path, err) < 0)
		return -1;
	return simple(c, id, path_req("stat", path), out, path, err);
}

int omr_files_mkdir(const struct omr_config *c, const char *id, const char *path,
		    int parents, struct omr_err **err)
{
	json_t *req;

	if (omr_files_path_check(path, err) < 0)
		return -1;
	req = path_req("mkdir", path);
	json_object_set_new(req, "parents", json_boolean(parents));
	return simple(c, id, req, NULL, path, err);
}

int omr_files_remove(const struct omr_config *c, const char *id, const char *path,
		     int recursive, struct omr_err **err)
{
	json_t *req;

	if (omr_files_path_check(path, err) < 0)
		return -1;
	req = path_req("remove", path);
	json_object_set_new(req, "recursive", json_boolean(recursive));
	return simple(c, id, req, NULL, path, err);
}

int omr_files_rename(const struct omr_config *c, const char *id, const char *from,
		     const char *to, struct omr_err **err)
{
	json_t *req;

	if (omr_files_path_check(from, err) < 0 || omr_files_path_check(to, err) < 0)
		return -1;
	req = json_pack("{s:s}", "op", "rename");
	omr_json_set_bytes(req, "from", from);
	omr_json_set_bytes(req, "to", to);
	return simple(c, id, req, NULL, from, err);
}

struct watch_ctx {
	int (*on_event)(void *user, json_t *ev);
	void *user;
};

static int watch_reply(void *user, json_t *reply)
{
	struct watch_ctx *w = user;
	return w->on_event(w->user, reply);
}

int omr_files_watch(const struct omr_config *c, const char *id, const char *path,
		    int recursive, int sig_fd, int (*on_event)(void *user, json_t *ev),
		    void *user, struct omr_err **err)
{
	struct watch_ctx w = { on_event, user };
	struct omr_stream s;
	json_t *req;
	int rc;

	omr_stream_init(&s, -1, 1);
	/* An interrupt is forwarded as SIGNAL, which ends a watch: the agent
	 * answers END and we return 0. */
	s.sig_fd = sig_fd;
	s.idle_timeout_ms = -1;
	s.on_reply = watch_reply;
	s.user = &w;
	req = path_req("watch", path);
	json_object_set_new(req, "recursive", json_boolean(recursive));
	rc = file_stream(c, id, path, &s, req, err);
	omr_stream_free(&s);
	return rc;
}
