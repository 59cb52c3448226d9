/* /sandboxes/:id/files?path=P: upload, download (or list=1), remove.
 *
 * Bodies are streamed both ways with bounded memory: an upload goes from
 * MHD's buffer into a socket pair that a transfer thread reads
 * (omr_files_put), a download from a transfer thread (omr_files_get_ex)
 * through a pipe into the response; the kernel's buffers are all that
 * is held. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api-internal.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/base/ids.h"
#include "omnirun/base/log.h"
#include "omnirun/base/spawn.h"
#include "omnirun/base/util.h"
#include "omnirun/client/files.h"

#define CHUNK 65536
#define PATH_MAX_API 4096

struct xfer {
	const struct omr_config *c;
	char id[OMR_ID_MAX];
	char *path;
	int mode;
	int fd[2];        /* upload: socket pair; download: pipe */
	int sig[2];       /* download: a cancel for omr_files_get_ex */
	pthread_t th;
	int started, joined, rc;
	uint64_t size;
	struct omr_err *e;
	int eof;
	char first[CHUNK];
	size_t first_len, first_off;
};

static void xfer_join(struct xfer *x)
{
	if (x->started && !x->joined) {
		pthread_join(x->th, NULL);
		x->joined = 1;
	}
}

static void xfer_free(struct xfer *x)
{
	if (!x)
		return;
	xfer_join(x);
	for (int i = 0; i < 2; i++) {
		if (x->fd[i] >= 0)
			close(x->fd[i]);
		if (x->sig[i] >= 0)
			close(x->sig[i]);
	}
	free(x->path);
	omr_err_free(&x->e);
	free(x);
}

static struct xfer *xfer_new(struct omr_api_req *r, const char *id, const char *path)
{
	struct xfer *x = omr_xcalloc(1, sizeof(*x));

	x->c = r->api->c;
	omr_strlcpy(x->id, id, sizeof(x->id));
	x->path = omr_xstrdup(path);
	x->fd[0] = x->fd[1] = x->sig[0] = x->sig[1] = -1;
	x->mode = -1;
	return x;
}

const char *omr_api_req_path(struct omr_api_req *r)
{
	int nul;
	const char *p = omr_api_query(r, "path", &nul);

	if (!p) {
		omr_api_reply_error(r, 400, "bad_request", "the path query argument is missing");
		return NULL;
	}
	if (nul) {
		omr_api_reply_error(r, 400, "bad_request", "a path holds no NUL byte");
		return NULL;
	}
	if (strlen(p) > PATH_MAX_API) {
		omr_api_reply_error(r, 400, "bad_request", "path longer than %d bytes", PATH_MAX_API);
		return NULL;
	}
	if (p[0] != '/') {
		omr_api_reply_error(r, 400, "bad_request", "the path must be absolute");
		return NULL;
	}
	/* ".." is refused, not resolved: what a caller meant by it is not
	 * ours to guess. */
	for (const char *s = p; *s; ) {
		size_t n = strcspn(s, "/");
		if (n == 2 && s[0] == '.' && s[1] == '.') {
			omr_api_reply_error(r, 400, "bad_request", "a path has no '..' component");
			return NULL;
		}
		s += n;
		while (*s == '/')
			s++;
	}
	return p;
}

/* ---- upload ---- */

static void *put_main(void *p)
{
	struct xfer *x = p;

	x->rc = omr_files_put(x->c, x->id, x->fd[0], x->path, x->mode, 1, &x->size, &x->e);
	/* Whatever the client still sends is dropped (EPIPE on the sink). */
	shutdown(x->fd[0], SHUT_RDWR);
	return NULL;
}

static void put_ctx_free(struct omr_api_req *r)
{
	struct xfer *x = r->ctx;

	/* The sink is the request's: closed here, once. */
	if (r->sink_fd >= 0 && x && r->sink_fd == x->fd[1]) {
		close(r->sink_fd);
		r->sink_fd = -1;
		x->fd[1] = -1;
	}
	xfer_free(x);
	r->ctx = NULL;
}

struct omr_api_put *omr_api_put_start(struct omr_api_req *r, const char *id, const char *path,
				      int mode)
{
	struct xfer *x = xfer_new(r, id, path);

	x->mode = mode;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, x->fd) < 0 ||
	    pthread_create(&x->th, NULL, put_main, x) != 0) {
		xfer_free(x);
		omr_api_reply_error(r, 500, "failed", "cannot start the transfer");
		return NULL;
	}
	x->started = 1;
	return (struct omr_api_put *)x;
}

int omr_api_put_fd(struct omr_api_put *p)
{
	return ((struct xfer *)p)->fd[1];
}

int omr_api_put_finish(struct omr_api_req *r, struct omr_api_put *p, uint64_t sent)
{
	struct xfer *x = (struct xfer *)p;

	/* EOF: the guest renames its temporary file into place. */
	shutdown(x->fd[1], SHUT_WR);
	xfer_join(x);
	if (x->rc < 0)
		return omr_api_reply_err(r, &x->e), -1;
	if (x->size != sent)
		return omr_api_reply_error(r, 500, "failed", "the upload was cut short"), -1;
	omr_api_audit(r, "file_write", x->id, NULL);
	return 0;
}

void omr_api_put_abort(struct omr_api_put *p)
{
	struct xfer *x = (struct xfer *)p;

	if (!x)
		return;
	/* The client went away mid-upload: the transfer must fail, not
	 * take the bytes so far for the whole file.  Closing an AF_UNIX
	 * socket with unread data makes its peer's read fail with
	 * ECONNRESET (an EOF would commit the file). */
	(void)!write(x->fd[0], "x", 1);
	if (x->fd[1] >= 0)
		close(x->fd[1]);
	x->fd[1] = -1;
	xfer_join(x);
}

void omr_api_put_free(struct omr_api_put *p)
{
	xfer_free((struct xfer *)p);
}

const char *omr_api_put_path(struct omr_api_put *p)
{
	return ((struct xfer *)p)->path;
}

enum MHD_Result omr_api_files_put_begin(struct omr_api_req *r)
{
	const char *id = omr_api_own_sandbox(r), *path, *mode;
	uint64_t m;
	int md = -1;
	struct omr_api_put *p;

	if (!id || !(path = omr_api_req_path(r)))
		return MHD_YES;
	if ((mode = omr_api_query(r, "mode", NULL))) {
		/* Octal, as chmod takes it. */
		char *end;
		errno = 0;
		m = strtoull(mode, &end, 8);
		if (!*mode || *end || errno || m > 07777)
			return omr_api_reply_error(r, 400, "bad_request", "mode must be octal, at "
						   "most 7777");
		md = (int)m;
	}
	if (!(p = omr_api_put_start(r, id, path, md)))
		return MHD_YES;
	r->ctx = p;
	r->ctx_free = put_ctx_free;
	r->sink_fd = omr_api_put_fd(p);
	return MHD_YES;
}

enum MHD_Result omr_api_files_put_end(struct omr_api_req *r)
{
	struct xfer *x = r->ctx;

	omr_log(OMR_LOG_DEBUG, "upload to %s complete: %llu bytes", x->id,
		(unsigned long long)r->sink_bytes);
	if (omr_api_put_finish(r, r->ctx, r->sink_bytes) < 0)
		return MHD_YES;
	if (r->sink_failed)
		return omr_api_reply_error(r, 500, "failed", "the upload was cut short");
	return omr_api_reply_json(r, 201, json_pack("{s:s, s:I}", "path", x->path, "size",
						   (json_int_t)x->size));
}

void omr_api_files_put_abort(struct omr_api_req *r)
{
	struct xfer *x = r->ctx;

	if (!x)
		return;
	omr_log(OMR_LOG_DEBUG, "upload to %s cut after %llu bytes: discarded", x->id,
		(unsigned long long)r->sink_bytes);
	omr_api_put_abort(r->ctx);
	r->sink_fd = -1;
}

/* ---- download ---- */

static void *get_main(void *p)
{
	struct xfer *x = p;

	x->rc = omr_files_get_ex(x->c, x->id, x->path, x->fd[1], x->sig[0], NULL, &x->size, &x->e);
	close(x->fd[1]);
	x->fd[1] = -1;
	return NULL;
}

static ssize_t get_read(void *cls, uint64_t pos, char *out, size_t max)
{
	struct xfer *x = cls;
	ssize_t n;

	(void)pos;
	if (x->first_off < x->first_len) {
		size_t k = x->first_len - x->first_off < max ? x->first_len - x->first_off : max;
		memcpy(out, x->first + x->first_off, k);
		x->first_off += k;
		return (ssize_t)k;
	}
	do
		n = read(x->fd[0], out, max);
	while (n < 0 && errno == EINTR);
	if (n > 0)
		return n;
	xfer_join(x);
	/* A transfer that failed half-way cannot change the status sent:
	 * the connection is cut, so the client sees no clean end. */
	return x->rc < 0 ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
}

static void get_free(void *cls)
{
	struct xfer *x = cls;
	struct signalfd_siginfo si = { .ssi_signo = SIGTERM };

	if (!x->joined)
		(void)!write(x->sig[1], &si, sizeof(si));
	close(x->fd[0]);
	x->fd[0] = -1;
	xfer_free(x);
}

static enum MHD_Result list_dir(struct omr_api_req *r, const char *id, const char *path)
{
	struct omr_err *err = NULL;
	json_t *l, *c;

	if (omr_files_list(r->api->c, id, path, &l, &err) < 0)
		return omr_api_reply_err(r, &err);
	c = omr_api_camel(l);
	json_decref(l);
	return omr_api_reply_json(r, 200, c);
}

enum MHD_Result omr_api_files_get(struct omr_api_req *r)
{
	const char *id = omr_api_own_sandbox(r), *path, *list;
	struct xfer *x;
	struct MHD_Response *resp;
	ssize_t n;

	if (!id || !(path = omr_api_req_path(r)))
		return MHD_YES;
	list = omr_api_query(r, "list", NULL);
	if (list && strcmp(list, "0"))
		return list_dir(r, id, path);
	x = xfer_new(r, id, path);
	if (pipe2(x->fd, O_CLOEXEC) < 0 || pipe2(x->sig, O_CLOEXEC | O_NONBLOCK) < 0 ||
	    pthread_create(&x->th, NULL, get_main, x) != 0) {
		xfer_free(x);
		return omr_api_reply_error(r, 500, "failed", "cannot start the transfer");
	}
	x->started = 1;
	/* The first bytes (or the end) before the status: a missing file
	 * or a directory is a 4xx, not a 200 with nothing after it. */
	do
		n = read(x->fd[0], x->first, sizeof(x->first));
	while (n < 0 && errno == EINTR);
	if (n <= 0) {
		xfer_join(x);
		if (x->rc < 0) {
			enum MHD_Result rc = omr_api_reply_err(r, &x->e);
			xfer_free(x);
			return rc;
		}
	}
	x->first_len = n > 0 ? (size_t)n : 0;
	omr_api_audit(r, "file_read", id, NULL);
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, CHUNK, get_read, x, get_free);
	if (!resp) {
		get_free(x);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "application/octet-stream");
	return omr_api_reply_response(r, 200, resp);
}

enum MHD_Result omr_api_files_delete(struct omr_api_req *r)
{
	const char *id = omr_api_own_sandbox(r), *path, *rec;
	struct omr_err *err = NULL;

	if (!id || !(path = omr_api_req_path(r)))
		return MHD_YES;
	rec = omr_api_query(r, "recursive", NULL);
	if (omr_files_remove(r->api->c, id, path, rec && strcmp(rec, "0"), &err) < 0)
		return omr_api_reply_err(r, &err);
	omr_api_audit(r, "file_remove", id, NULL);
	return omr_api_reply_empty(r, 204);
}
