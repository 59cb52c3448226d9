/* Files in a sandbox; see omnirun/files.h. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/client/client.h"
#include "omnirun/client/exec.h"
#include "omnirun/client/files.h"
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
		rc = omr_stream_run(s, req, err);
		if (rc < 0)
			omr_err_wrap(err, "%s", path);
	}
	json_decref(req);
	return rc < 0 ? -1 : 0;
}

int omr_files_put(const struct omr_config *c, const char *id, int in_fd, const char *path,
		  int mode, int parents, uint64_t *size, struct omr_err **err)
{
	struct omr_stream s;
	int rc;

	omr_stream_init(&s, -1, 1);
	s.in_fd = in_fd;
	s.in_channel = OMR_CH_FILE;
	rc = file_stream(c, id, path, &s,
			 json_pack("{s:s, s:s, s:i, s:b}", "op", "file_write", "path", path,
				   "mode", mode >= 0 ? mode & 07777 : 0644, "parents", parents),
			 err);
	if (rc == 0 && size)
		*size = s.bytes_out;
	omr_stream_free(&s);
	return rc;
}

static int on_meta(void *user, json_t *reply)
{
	int *mode = user;
	json_t *m = json_object_get(reply, "mode");

	if (mode && json_is_integer(m))
		*mode = (int)json_integer_value(m);
	return 0;
}

int omr_files_get(const struct omr_config *c, const char *id, const char *path, int out_fd,
		  int *mode, uint64_t *size, struct omr_err **err)
{
	struct omr_stream s;
	int rc;

	omr_stream_init(&s, -1, 1);
	s.out_fd[OMR_CH_FILE] = out_fd;
	s.on_reply = on_meta;
	s.user = mode;
	rc = file_stream(c, id, path, &s, json_pack("{s:s, s:s}", "op", "file_read", "path", path),
			 err);
	if (rc == 0 && size)
		*size = s.bytes_in;
	omr_stream_free(&s);
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
	rc = file_stream(c, id, path, &s, json_pack("{s:s, s:s}", "op", "list", "path", path), err);
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
	return rc < 0 ? omr_err_wrap(err, "%s", path) : 0;
}

int omr_files_stat(const struct omr_config *c, const char *id, const char *path,
		   json_t **out, struct omr_err **err)
{
	if (omr_files_path_check(path, err) < 0)
		return -1;
	return simple(c, id, json_pack("{s:s, s:s}", "op", "stat", "path", path), out, path, err);
}

int omr_files_mkdir(const struct omr_config *c, const char *id, const char *path,
		    int parents, struct omr_err **err)
{
	if (omr_files_path_check(path, err) < 0)
		return -1;
	return simple(c, id, json_pack("{s:s, s:s, s:b}", "op", "mkdir", "path", path,
				       "parents", parents), NULL, path, err);
}

int omr_files_remove(const struct omr_config *c, const char *id, const char *path,
		     int recursive, struct omr_err **err)
{
	if (omr_files_path_check(path, err) < 0)
		return -1;
	return simple(c, id, json_pack("{s:s, s:s, s:b}", "op", "remove", "path", path,
				       "recursive", recursive), NULL, path, err);
}

int omr_files_rename(const struct omr_config *c, const char *id, const char *from,
		     const char *to, struct omr_err **err)
{
	if (omr_files_path_check(from, err) < 0 || omr_files_path_check(to, err) < 0)
		return -1;
	return simple(c, id, json_pack("{s:s, s:s, s:s}", "op", "rename", "from", from, "to", to),
		      NULL, from, err);
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
	int rc;

	omr_stream_init(&s, -1, 1);
	/* An interrupt is forwarded as SIGNAL, which ends a watch: the agent
	 * answers END and we return 0. */
	s.sig_fd = sig_fd;
	s.on_reply = watch_reply;
	s.user = &w;
	rc = file_stream(c, id, path, &s,
			 json_pack("{s:s, s:s, s:b}", "op", "watch", "path", path, "recursive",
				   recursive),
			 err);
	omr_stream_free(&s);
	return rc;
}
