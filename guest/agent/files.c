/* File ops: file_read and file_write (streamed), stat, mkdir, remove,
 * rename.  Paths are absolute; symlinks in the last component are not
 * followed except by file_read. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "omnirun/base/cleanup.h"

static uint8_t iobuf[OMR_DATA_CHUNK];

const char *file_type_name(mode_t m)
{
	if (S_ISREG(m))
		return "file";
	if (S_ISDIR(m))
		return "dir";
	if (S_ISLNK(m))
		return "symlink";
	return "other";
}

void stat_json(json_t *o, const struct stat *st)
{
	json_object_set_new(o, "type", json_string(file_type_name(st->st_mode)));
	json_object_set_new(o, "size", json_integer((json_int_t)st->st_size));
	json_object_set_new(o, "mode", json_integer(st->st_mode & 07777));
	json_object_set_new(o, "mtime", json_integer((json_int_t)st->st_mtime));
}

static void send_errno(uint32_t id, int e, const char *what, const char *path)
{
	send_error(id, e, NULL, "%s %s: %s", what, path, strerror(e));
}

/* ---- file_read ---- */

struct read_stream {
	struct stream s;
	int fd;
	uint64_t left; /* bytes still to send */
	uint64_t sent;
};

static void read_tick(struct stream *s)
{
	struct read_stream *rs = container_of(s, struct read_stream, s);
	ssize_t n = 1;

	while (rs->left > 0 && s->credit > 0 && conn_can_produce()) {
		size_t max = sizeof(iobuf);
		if (max > s->credit)
			max = (size_t)s->credit;
		if (max > rs->left)
			max = (size_t)rs->left;
		n = read(rs->fd, iobuf, max);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		send_frame(OMR_F_DATA, OMR_CH_FILE, s->id, iobuf, (size_t)n);
		s->credit -= (size_t)n;
		rs->left -= (size_t)n;
		rs->sent += (size_t)n;
	}
	if (n < 0) {
		stream_end(s, error_json(errno, NULL, "read error: %s", strerror(errno)));
	} else if (n == 0 || rs->left == 0) {
		send_frame(OMR_F_EOF, OMR_CH_FILE, s->id, NULL, 0);
		stream_end(s, json_pack("{s:I}", "size", (json_int_t)rs->sent));
	}
}

static void read_poll(struct stream *s, struct pollctx *pc)
{
	if (s->credit > 0 && conn_can_produce())
		poll_wake_at(pc, omr_now_ms());
}

static void read_destroy(struct stream *s, bool conn_lost)
{
	struct read_stream *rs = container_of(s, struct read_stream, s);

	(void)conn_lost;
	omr_closep(&rs->fd);
}

static const struct stream_ops read_ops = {
	.poll = read_poll,
	.tick = read_tick,
	.destroy = read_destroy,
};

void op_file_read(uint32_t id, json_t *req)
{
	_cleanup_free_ char *path = NULL;
	_cleanup_close_ int fd = -1;
	struct read_stream *rs;
	struct stat st;
	struct jerr e;
	int64_t off, len;

	if (jget_path(req, "path", true, &path, NULL, &e) < 0 ||
	    jget_int(req, "offset", 0, INT64_MAX, 0, &off, &e) < 0 ||
	    jget_int(req, "length", -1, INT64_MAX, -1, &len, &e) < 0) {
		send_bad_request(id, &e);
		return;
	}
	/* O_NONBLOCK: opening a FIFO must not hang the agent. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0 || fstat(fd, &st) < 0) {
		send_errno(id, errno, "cannot open", path);
		return;
	}
	if (S_ISDIR(st.st_mode)) {
		send_errno(id, EISDIR, "cannot read", path);
		return;
	}
	if (!S_ISREG(st.st_mode)) {
		send_error(id, EINVAL, NULL, "%s: not a regular file", path);
		return;
	}
	fcntl(fd, F_SETFL, 0);
	if (off && lseek(fd, (off_t)off, SEEK_SET) < 0) {
		send_errno(id, errno, "cannot seek in", path);
		return;
	}
	rs = (struct read_stream *)stream_new(id, sizeof(*rs), &read_ops);
	if (!rs)
		return;
	rs->fd = omr_steal_fd(fd);
	rs->left = len < 0 ? UINT64_MAX : (uint64_t)len;
	send_json(OMR_F_REPLY, id,
		  json_pack("{s:I,s:i}", "size", (json_int_t)st.st_size, "mode",
			    (int)(st.st_mode & 07777)));
}

/* ---- file_write ---- */

struct write_stream {
	struct stream s;
	int dfd, fd;
	char *tmp;  /* name of the temporary file in dfd, until renamed */
	char *base; /* final name in dfd */
	mode_t mode;
	uid_t uid;
	gid_t gid;
	bool chown;
	uint64_t size;
};

static void write_fail(struct write_stream *ws, int e, const char *what)
{
	stream_end(&ws->s, error_json(e, NULL, "%s: %s", what, strerror(e)));
}

static void write_finish(struct write_stream *ws)
{
	if ((ws->chown && fchown(ws->fd, ws->uid, ws->gid) < 0) || fchmod(ws->fd, ws->mode) < 0) {
		write_fail(ws, errno, "cannot set owner or mode");
		return;
	}
	/* Data on disk before the name points at it: a crash leaves the old
	 * file or the new one, never a torn one. */
	if (fsync(ws->fd) < 0) {
		write_fail(ws, errno, "cannot write");
		return;
	}
	omr_closep(&ws->fd);
	if (renameat(ws->dfd, ws->tmp, ws->dfd, ws->base) < 0) {
		write_fail(ws, errno, "cannot rename into place");
		return;
	}
	free(ws->tmp);
	ws->tmp = NULL;
	fsync(ws->dfd);
	stream_end(&ws->s, json_pack("{s:I}", "size", (json_int_t)ws->size));
}

static void write_frame(struct stream *s, const struct omr_frame_hdr *h, const uint8_t *p)
{
	struct write_stream *ws = container_of(s, struct write_stream, s);
	int rc;

	switch (h->type) {
	case OMR_F_DATA:
		if (h->flags != OMR_CH_FILE) {
			send_window(s->id, h->len);
			return;
		}
		rc = omr_write_all(ws->fd, p, h->len);
		if (rc < 0) {
			write_fail(ws, -rc, "cannot write");
			return;
		}
		ws->size += h->len;
		send_window(s->id, h->len);
		return;
	case OMR_F_EOF:
		if (h->flags == OMR_CH_FILE)
			write_finish(ws);
		return;
	}
}

static void write_destroy(struct stream *s, bool conn_lost)
{
	struct write_stream *ws = container_of(s, struct write_stream, s);

	(void)conn_lost;
	omr_closep(&ws->fd);
	if (ws->tmp) /* failed, cancelled or abandoned: leave nothing behind */
		unlinkat(ws->dfd, ws->tmp, 0);
	omr_closep(&ws->dfd);
	free(ws->tmp);
	free(ws->base);
}

static const struct stream_ops write_ops = {
	.frame = write_frame,
	.destroy = write_destroy,
};

void op_file_write(uint32_t id, json_t *req)
{
	_cleanup_free_ char *path = NULL, *dir = NULL, *tmp = NULL;
	_cleanup_close_ int dfd = -1;
	struct write_stream *ws;
	struct user_info u = { 0 };
	const char *base, *user;
	struct stat st;
	struct jerr e;
	bool parents, exists, dir_form;
	mode_t mode;
	int fd, rc;

	if (jget_path(req, "path", true, &path, &dir_form, &e) < 0 ||
	    jget_mode(req, "mode", (mode_t)-1, &mode, &e) < 0 ||
	    jget_bool(req, "parents", false, &parents, &e) < 0 ||
	    jget_str(req, "user", false, &user, &e) < 0) {
		send_bad_request(id, &e);
		return;
	}
	if (!user)
		user = agent_cfg.default_user; /* a template's, or NULL: ours */
	/* path is normalized: its last component is a name, unless it is
	 * "/" (or was given as a directory, "/tmp/x/"). */
	base = strrchr(path, '/') + 1;
	if (!*base || dir_form) {
		send_errno(id, EISDIR, "cannot write", path);
		return;
	}
	dir = path_dirname(path);
	rc = parents ? omr_mkdir_p(dir, 0755, NULL) : 0;
	if (rc < 0) {
		send_errno(id, -rc, "cannot create", dir);
		return;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		send_errno(id, errno, "cannot open", dir);
		return;
	}
	exists = fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0;
	if (exists && S_ISDIR(st.st_mode)) {
		send_errno(id, EISDIR, "cannot write", path);
		return;
	}
	if (user && user_lookup(user, &u) < 0) {
		send_error(id, ENOENT, NULL, "unknown user \"%.64s\"", user);
		return;
	}
	fd = omr_open_temp_at(dfd, base, 0600, &tmp, NULL);
	if (fd < 0) {
		user_info_free(&u);
		send_errno(id, -fd, "cannot create a file in", path);
		return;
	}
	ws = (struct write_stream *)stream_new(id, sizeof(*ws), &write_ops);
	if (!ws) {
		unlinkat(dfd, tmp, 0);
		close(fd);
		user_info_free(&u);
		return;
	}
	ws->fd = fd;
	ws->dfd = omr_steal_fd(dfd);
	ws->tmp = omr_steal_ptr(tmp);
	ws->base = strdup(base);
	/* An existing regular file keeps its mode and owner unless told. */
	exists = exists && S_ISREG(st.st_mode);
	ws->mode = mode != (mode_t)-1 ? mode : exists ? st.st_mode & 07777 : 0644;
	ws->chown = user || (exists && (st.st_uid != geteuid() || st.st_gid != getegid()));
	ws->uid = user ? u.uid : st.st_uid;
	ws->gid = user ? u.gid : st.st_gid;
	user_info_free(&u);
	if (!ws->base)
		stream_end(&ws->s, error_json(ENOMEM, NULL, "out of memory"));
}

/* ---- stat, mkdir, remove, rename ---- */

void op_stat(uint32_t id, json_t *req)
{
	_cleanup_free_ char *path = NULL;
	struct stat st;
	struct jerr e;
	json_t *o;

	if (jget_path(req, "path", true, &path, NULL, &e) < 0) {
		send_bad_request(id, &e);
		return;
	}
	if (lstat(path, &st) < 0) {
		send_errno(id, errno, "cannot stat", path);
		return;
	}
	o = json_object();
	stat_json(o, &st);
	json_object_set_new(o, "uid", json_integer((int)st.st_uid));
	json_object_set_new(o, "gid", json_integer((int)st.st_gid));
	omr_json_set_bytes(o, "name", strcmp(path, "/") ? strrchr(path, '/') + 1 : "/");
	if (S_ISLNK(st.st_mode)) {
		char target[4096];
		ssize_t n = readlink(path, target, sizeof(target) - 1);
		if (n >= 0) {
			target[n] = 0;
			omr_json_set_bytes(o, "target", target);
		}
	}
	send_json(OMR_F_END, id, o);
}

void op_mkdir(uint32_t id, json_t *req)
{
	_cleanup_free_ char *path = NULL;
	struct jerr e;
	bool parents;
	mode_t mode;
	int rc = 0;

	if (jget_path(req, "path", true, &path, NULL, &e) < 0 ||
	    jget_bool(req, "parents", false, &parents, &e) < 0 ||
	    jget_mode(req, "mode", 0755, &mode, &e) < 0) {
		send_bad_request(id, &e);
		return;
	}
	if (parents)
		rc = omr_mkdir_p(path, 0755, NULL);
	else if (mkdir(path, mode) < 0)
		rc = -errno;
	/* Exact mode, whatever the umask. */
	if (rc == 0 && (!parents || json_object_get(req, "mode")) && chmod(path, mode) < 0)
		rc = -errno;
	if (rc < 0)
		send_errno(id, -rc, "cannot create directory", path);
	else
		send_json(OMR_F_END, id, json_object());
}

static bool is_root_dir(const struct stat *st)
{
	struct stat root;

	return S_ISDIR(st->st_mode) && stat("/", &root) == 0 && root.st_dev == st->st_dev &&
	       root.st_ino == st->st_ino;
}

void op_remove(uint32_t id, json_t *req)
{
	_cleanup_free_ char *path = NULL;
	struct stat st;
	struct jerr e;
	bool recursive;
	int rc = 0;

	if (jget_path(req, "path", true, &path, NULL, &e) < 0 ||
	    jget_bool(req, "recursive", false, &recursive, &e) < 0) {
		send_bad_request(id, &e);
		return;
	}
	/* On the normalized path: "/.", "//" and "/data/.." are "/". */
	if (!strcmp(path, "/")) {
		send_error(id, EINVAL, NULL, "refusing to remove /");
		return;
	}
	if (lstat(path, &st) < 0)
		rc = -errno;
	else if (is_root_dir(&st))
		rc = -EBUSY; /* "/" by another name: a bind mount of it */
	else if (!S_ISDIR(st.st_mode))
		rc = unlink(path) < 0 ? -errno : 0;
	else if (recursive)
		rc = omr_rm_rf_at(AT_FDCWD, path);
	else
		rc = rmdir(path) < 0 ? -errno : 0;
	if (rc < 0)
		send_errno(id, -rc, "cannot remove", path);
	else
		send_json(OMR_F_END, id, json_object());
}

void op_rename(uint32_t id, json_t *req)
{
	_cleanup_free_ char *from = NULL, *to = NULL;
	struct jerr e;

	if (jget_path(req, "from", true, &from, NULL, &e) < 0 ||
	    jget_path(req, "to", true, &to, NULL, &e) < 0) {
		send_bad_request(id, &e);
		return;
	}
	if (rename(from, to) < 0)
		send_errno(id, errno, "cannot rename", from);
	else
		send_json(OMR_F_END, id, json_object());
}
