/* envd's filesystem on the E2B listener (doc/e2b.md): Stat, ListDir,
 * MakeDir, Move, Remove, WatchDir, and GET and POST /files, through
 * libcore's file calls for the sandbox E2b-Sandbox-Id names. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "envd-internal.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/base/ids.h"
#include "omnirun/base/json.h"
#include "omnirun/base/log.h"
#include "omnirun/base/util.h"
#include "omnirun/client/files.h"

#define CHUNK 16384
#define LIST_ENTRIES_MAX 10000
#define LIST_DEPTH_MAX 32
#define PARTS_MAX 64

/* ---- filesystem ---- */

/* A path of a filesystem call: absolute (E2B's relative paths are the
 * guest user's home's, which the shim does not know). */
static const char *fs_path(struct omr_api_req *r, const char *key)
{
	const char *p = json_string_value(json_object_get(r->json, key));
	struct omr_err *err = NULL;

	if (!p || !*p) {
		omr_api_reply_error(r, 400, "bad_request", "%s is missing", key);
		return NULL;
	}
	if (p[0] != '/') {
		omr_api_reply_error(r, 400, "bad_request", "%s must be absolute", key);
		return NULL;
	}
	if (omr_files_path_check(p, &err) < 0) {
		omr_api_reply_err(r, &err);
		return NULL;
	}
	return p;
}

static void perm_string(const char *type, unsigned mode, char out[11])
{
	static const char rwx[] = "rwxrwxrwx";

	out[0] = !strcmp(type, "dir") ? 'd' : !strcmp(type, "symlink") ? 'l' :
		 !strcmp(type, "file") ? '-' : '?';
	for (int i = 0; i < 9; i++)
		out[i + 1] = mode & (1u << (8 - i)) ? rwx[i] : '-';
	out[10] = 0;
}

/* An OmniRun stat or list entry as envd's EntryInfo; path is the
 * entry's own. */
static json_t *entry_info(json_t *e, const char *path)
{
	const char *type = json_string_value(json_object_get(e, "type"));
	unsigned mode = (unsigned)json_integer_value(json_object_get(e, "mode")) & 07777;
	char size[24], perms[11], mtime[32], owner[16], group[16];
	const char *slash = strrchr(path, '/');
	json_t *o;

	type = type ? type : "other";
	snprintf(size, sizeof(size), "%lld", (long long)json_integer_value(json_object_get(e, "size")));
	perm_string(type, mode, perms);
	/* A Timestamp must parse: the epoch stands for "none" (and for the
	 * files of an initramfs, which carry it). */
	omr_format_time((int64_t)json_integer_value(json_object_get(e, "mtime")), mtime);
	if (!strcmp(mtime, "-"))
		strcpy(mtime, "1970-01-01T00:00:00Z");
	o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:s, s:s}", "name",
		      slash && slash[1] ? slash + 1 : path, "type",
		      !strcmp(type, "file") ? "FILE_TYPE_FILE" : !strcmp(type, "dir") ?
		      "FILE_TYPE_DIRECTORY" : !strcmp(type, "symlink") ? "FILE_TYPE_SYMLINK" :
		      "FILE_TYPE_UNSPECIFIED", "path", path, "size", size, "mode", (int)mode,
		      "permissions", perms, "modifiedTime", mtime);
	if (json_object_get(e, "uid")) {
		snprintf(owner, sizeof(owner), "%lld", (long long)json_integer_value(json_object_get(e, "uid")));
		snprintf(group, sizeof(group), "%lld", (long long)json_integer_value(json_object_get(e, "gid")));
		json_object_set_new(o, "owner", json_string(!strcmp(owner, "0") ? "root" : owner));
		json_object_set_new(o, "group", json_string(!strcmp(group, "0") ? "root" : group));
	}
	if (json_is_string(json_object_get(e, "target")))
		json_object_set(o, "symlinkTarget", json_object_get(e, "target"));
	return o;
}

/* {"entry": EntryInfo} of path (new ref), or NULL with *err. */
static json_t *stat_entry(struct omr_api_req *r, const char *id, const char *path,
			  struct omr_err **err)
{
	json_t *st = NULL, *o;

	if (omr_files_stat(r->api->c, id, path, &st, err) < 0)
		return NULL;
	o = json_pack("{s:o}", "entry", entry_info(st, path));
	json_decref(st);
	return o;
}

enum MHD_Result omr_envd_stat(struct omr_api_req *r)
{
	const char *id = omr_api_e2b_sandbox(r), *path;
	struct omr_err *err = NULL;
	json_t *o;

	if (!id || !(path = fs_path(r, "path")))
		return MHD_YES;
	if (!(o = stat_entry(r, id, path, &err)))
		return omr_api_reply_err(r, &err);
	return omr_api_reply_json(r, 200, o);
}

static char *join_path(const char *dir, const char *name)
{
	return omr_strdup_printf("%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", name);
}

/* Appends the entries of dir, and of its directories down to depth
 * levels, to out.  Returns 0 or < 0. */
static int list_into(struct omr_api_req *r, const char *id, const char *dir, unsigned depth,
		     json_t *out, struct omr_err **err)
{
	json_t *l = NULL, *e;
	size_t i;

	if (omr_files_list(r->api->c, id, dir, &l, err) < 0)
		return -1;
	json_array_foreach(l, i, e) {
		const char *name = json_string_value(json_object_get(e, "name"));
		_cleanup_free_ char *p = NULL;

		if (!name || json_array_size(out) >= LIST_ENTRIES_MAX)
			continue;
		p = join_path(dir, name);
		json_array_append_new(out, entry_info(e, p));
		if (depth > 1 && !strcmp(json_string_value(json_object_get(e, "type")) ?: "", "dir") &&
		    list_into(r, id, p, depth - 1, out, err) < 0) {
			json_decref(l);
			return -1;
		}
	}
	json_decref(l);
	return 0;
}

enum MHD_Result omr_envd_listdir(struct omr_api_req *r)
{
	const char *id = omr_api_e2b_sandbox(r), *path;
	json_t *dv = json_object_get(r->json, "depth"), *out;
	struct omr_err *err = NULL;
	json_int_t depth = json_integer_value(dv);

	if (!id || !(path = fs_path(r, "path")))
		return MHD_YES;
	if (depth < 1)
		depth = 1;
	if (depth > LIST_DEPTH_MAX)
		return omr_api_reply_error(r, 400, "bad_request", "depth is at most %d", LIST_DEPTH_MAX);
	out = json_array();
	if (list_into(r, id, path, (unsigned)depth, out, &err) < 0) {
		json_decref(out);
		return omr_api_reply_err(r, &err);
	}
	return omr_api_reply_json(r, 200, json_pack("{s:o}", "entries", out));
}

enum MHD_Result omr_envd_mkdir(struct omr_api_req *r)
{
	const char *id = omr_api_e2b_sandbox(r), *path;
	struct omr_err *err = NULL;
	json_t *o;

	if (!id || !(path = fs_path(r, "path")))
		return MHD_YES;
	/* envd tells an existing directory apart (makeDir() answers false). */
	if ((o = stat_entry(r, id, path, &err))) {
		json_decref(o);
		return omr_api_reply_error(r, 409, "already_exists", "'%s' exists", path);
	}
	omr_err_free(&err);
	if (omr_files_mkdir(r->api->c, id, path, 1, &err) < 0 ||
	    !(o = stat_entry(r, id, path, &err)))
		return omr_api_reply_err(r, &err);
	omr_api_audit(r, "file_mkdir", id, NULL);
	return omr_api_reply_json(r, 200, o);
}

enum MHD_Result omr_envd_move(struct omr_api_req *r)
{
	const char *id = omr_api_e2b_sandbox(r), *from, *to;
	struct omr_err *err = NULL;
	json_t *o;

	if (!id || !(from = fs_path(r, "source")) || !(to = fs_path(r, "destination")))
		return MHD_YES;
	if (omr_files_rename(r->api->c, id, from, to, &err) < 0 ||
	    !(o = stat_entry(r, id, to, &err)))
		return omr_api_reply_err(r, &err);
	omr_api_audit(r, "file_rename", id, NULL);
	return omr_api_reply_json(r, 200, o);
}

enum MHD_Result omr_envd_remove(struct omr_api_req *r)
{
	const char *id = omr_api_e2b_sandbox(r), *path;
	struct omr_err *err = NULL;

	if (!id || !(path = fs_path(r, "path")))
		return MHD_YES;
	if (omr_files_remove(r->api->c, id, path, 1, &err) < 0)
		return omr_api_reply_err(r, &err);
	omr_api_audit(r, "file_remove", id, NULL);
	return omr_api_reply_json(r, 200, json_object());
}

/* ---- WatchDir: a stream of inotify events ---- */

struct wstream {
	const struct omr_config *c;
	char id[OMR_ID_MAX];
	char *path;
	int recursive;
	int fd[2];                      /* events, one JSON text a line */
	int sig[2];                     /* ends the watch */
	pthread_t th;
	int started, joined, rc;
	struct omr_err *e;
	int eof, ended, keepalive_ms, client_fd;
	uint8_t *pend;
	size_t pend_len, pend_off;
	char line[16384];
	size_t line_len;
};

/* An agent watch event as a WatchDirResponse (new ref), or NULL for one
 * envd does not report.  Types as envd's (fsnotify's): a file moved in
 * is a create, one moved out a rename. */
static json_t *watch_msg(struct wstream *w, json_t *ev)
{
	static const struct { const char *ours, *theirs; } types[] = {
		{ "create", "EVENT_TYPE_CREATE" }, { "rename_to", "EVENT_TYPE_CREATE" },
		{ "modify", "EVENT_TYPE_WRITE" }, { "delete", "EVENT_TYPE_REMOVE" },
		{ "delete_self", "EVENT_TYPE_REMOVE" }, { "rename_from", "EVENT_TYPE_RENAME" },
		{ "move_self", "EVENT_TYPE_RENAME" }, { "attrib", "EVENT_TYPE_CHMOD" },
	};
	const char *name = json_string_value(json_object_get(ev, "event"));
	const char *path = json_string_value(json_object_get(ev, "path")), *rel;
	size_t pl = strlen(w->path);

	if (name && !strcmp(name, "ready"))
		return json_pack("{s:{}}", "start");
	for (size_t i = 0; name && path && i < OMR_ARRAY_SIZE(types); i++) {
		if (strcmp(name, types[i].ours))
			continue;
		rel = path;
		if (!strncmp(path, w->path, pl) && (path[pl] == '/' || !path[pl]))
			rel = path[pl] ? path + pl + 1 : path + pl;
		else if (pl == 1 && path[0] == '/')
			rel = path + 1;
		return json_pack("{s:{s:s, s:s}}", "filesystem", "name", rel, "type", types[i].theirs);
	}
	return NULL;
}

static int wd_event(void *user, json_t *ev)
{
	struct wstream *w = user;
	json_t *m = watch_msg(w, ev);
	char *text;
	int rc;

	if (!m)
		return 0;
	text = json_dumps(m, JSON_COMPACT);
	json_decref(m);
	text = omr_xrealloc(text, strlen(text) + 2);
	strcat(text, "\n");
	/* The reader is gone: the watch ends. */
	rc = omr_write_all(w->fd[1], text, strlen(text)) < 0 ? -1 : 0;
	free(text);
	return rc;
}

static void *wd_main(void *p)
{
	struct wstream *w = p;

	w->rc = omr_files_watch(w->c, w->id, w->path, w->recursive, w->sig[0], wd_event, w, &w->e);
	omr_envd_close_fd(&w->fd[1]);
	return NULL;
}

static void wd_free(struct wstream *w)
{
	for (int i = 0; i < 2; i++) {
		omr_envd_close_fd(&w->fd[i]);
		omr_envd_close_fd(&w->sig[i]);
	}
	free(w->path);
	omr_err_free(&w->e);
	free(w->pend);
	free(w);
}

static ssize_t wd_read(void *cls, uint64_t pos, char *out, size_t max)
{
	struct wstream *w = cls;

	(void)pos;
	while (w->pend_off == w->pend_len) {
		struct pollfd p[2];
		ssize_t n;
		char *nl;

		w->pend_off = w->pend_len = 0;
		if (w->ended)
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (w->eof) {
			if (w->started && !w->joined) {
				pthread_join(w->th, NULL);
				w->joined = 1;
			}
			omr_connect_push(&w->pend, &w->pend_len, OMR_CONNECT_END_STREAM, w->rc < 0 ?
				      json_pack("{s:{s:s, s:s}}", "error", "code",
						omr_err_kind(w->e) == OMR_E_NOT_FOUND ? "not_found" :
						"unavailable", "message", w->e->msg) : json_object());
			w->ended = 1;
			break;
		}
		p[0] = (struct pollfd){ .fd = w->fd[0], .events = POLLIN };
		p[1] = (struct pollfd){ .fd = w->client_fd, .events = POLLRDHUP };
		int k = poll(p, 2, w->keepalive_ms);
		if (k > 0 && (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR)))
			return MHD_CONTENT_READER_END_WITH_ERROR;
		if (k <= 0 || !p[0].revents) {
			omr_connect_push(&w->pend, &w->pend_len, 0, json_pack("{s:{}}", "keepalive"));
			break;
		}
		n = read(w->fd[0], w->line + w->line_len, sizeof(w->line) - 1 - w->line_len);
		if (n <= 0) {
			if (!(n < 0 && errno == EINTR))
				w->eof = 1;
			continue;
		}
		w->line_len += (size_t)n;
		w->line[w->line_len] = 0;
		while ((nl = strchr(w->line, '\n'))) {
			json_t *m;

			*nl = 0;
			if ((m = json_loads(w->line, 0, NULL)))
				omr_connect_push(&w->pend, &w->pend_len, 0, m);
			w->line_len -= (size_t)(nl + 1 - w->line);
			memmove(w->line, nl + 1, w->line_len + 1);
		}
		/* A line longer than the buffer (no path is) is dropped. */
		if (w->line_len == sizeof(w->line) - 1)
			w->line_len = 0;
	}
	size_t n = w->pend_len - w->pend_off < max ? w->pend_len - w->pend_off : max;
	memcpy(out, w->pend + w->pend_off, n);
	w->pend_off += n;
	return (ssize_t)n;
}

/* The client is gone or the watch ended: a signal ends the agent's
 * watch (a second one, unanswered, the stream at once). */
static void wd_done(void *cls)
{
	struct wstream *w = cls;
	struct signalfd_siginfo si = { .ssi_signo = SIGINT };

	if (w->started && !w->joined) {
		(void)!write(w->sig[1], &si, sizeof(si));
		omr_envd_close_fd(&w->fd[0]);
		pthread_join(w->th, NULL);
		w->joined = 1;
	}
	wd_free(w);
}

enum MHD_Result omr_envd_watch(struct omr_api_req *r)
{
	const char *id = omr_api_e2b_sandbox(r), *path;
	struct MHD_Response *resp;
	struct wstream *w;

	if (!id || !(path = fs_path(r, "path")))
		return MHD_YES;
	if (json_is_true(json_object_get(r->json, "includeEntry")))
		return omr_api_reply_error(r, 501, "unsupported", "entries in watch events are not "
					   "supported");
	w = omr_xcalloc(1, sizeof(*w));
	w->c = r->api->c;
	omr_strlcpy(w->id, id, sizeof(w->id));
	w->path = omr_xstrdup(path);
	/* Events name paths below the watched one: no trailing slash. */
	for (size_t n = strlen(w->path); n > 1 && w->path[n - 1] == '/'; n--)
		w->path[n - 1] = 0;
	w->recursive = json_is_true(json_object_get(r->json, "recursive"));
	w->fd[0] = w->fd[1] = w->sig[0] = w->sig[1] = -1;
	w->client_fd = omr_api_client_fd(r);
	w->keepalive_ms = omr_envd_keepalive_ms(r);
	if (pipe2(w->fd, O_CLOEXEC) < 0 || pipe2(w->sig, O_CLOEXEC | O_NONBLOCK) < 0 ||
	    pthread_create(&w->th, NULL, wd_main, w) != 0) {
		wd_free(w);
		return omr_api_reply_error(r, 500, "failed", "cannot start the watch");
	}
	w->started = 1;
	omr_api_audit(r, "file_watch", id, NULL);
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, CHUNK, wd_read, w, wd_done);
	if (!resp) {
		wd_done(w);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "application/connect+json");
	return omr_api_reply_response(r, 200, resp);
}

/* ---- GET and POST /files ---- */

enum MHD_Result omr_envd_files_get(struct omr_api_req *r)
{
	if (!omr_api_e2b_sandbox(r))
		return MHD_YES;
	return omr_api_files_get(r);
}

/* An upload: one raw body (application/octet-stream), or the "file"
 * parts of a multipart form, each streamed to a transfer of its own. */
struct upload {
	char id[OMR_ID_MAX];
	char *qpath;                    /* the path query argument, or NULL */
	struct MHD_PostProcessor *pp;
	struct omr_api_put *parts[PARTS_MAX];
	uint64_t sent[PARTS_MAX];
	size_t nparts;
	struct omr_api_req *r;
	char *error;                    /* a bad part: said at the end */
};

static void upload_free(struct omr_api_req *r)
{
	struct upload *u = r->ctx;

	if (!u)
		return;
	if (u->pp)
		MHD_destroy_post_processor(u->pp);
	for (size_t i = 0; i < u->nparts; i++) {
		if (r->sink_fd == omr_api_put_fd(u->parts[i]))
			r->sink_fd = -1; /* the part's, closed by it */
		omr_api_put_free(u->parts[i]);
	}
	free(u->qpath);
	free(u->error);
	free(u);
	r->ctx = NULL;
}

/* A path the client named for a part (its file name), checked as the
 * query argument is. */
static int part_path_ok(const char *p)
{
	struct omr_err *err = NULL;

	if (!p || p[0] != '/' || strstr(p, "/../") || !strcmp(p + strlen(p) - (strlen(p) > 2 ? 3 : 0), "/..") ||
	    omr_files_path_check(p, &err) < 0) {
		omr_err_free(&err);
		return 0;
	}
	return 1;
}

static enum MHD_Result on_part(void *cls, enum MHD_ValueKind kind, const char *key,
			       const char *filename, const char *content_type,
			       const char *transfer_encoding, const char *data, uint64_t off,
			       size_t size)
{
	struct upload *u = cls;
	struct omr_api_put *p;

	(void)kind;
	(void)content_type;
	(void)transfer_encoding;
	if (u->error || !key || strcmp(key, "file"))
		return MHD_YES;
	/* A part begins at offset 0; MHD may call more than once there
	 * (its headers, then its first bytes). */
	if (off == 0 && (!u->nparts || u->sent[u->nparts - 1] ||
			 strcmp(omr_api_put_path(u->parts[u->nparts - 1]),
				u->qpath ? u->qpath : filename ? filename : ""))) {
		const char *path = u->qpath ? u->qpath : filename;

		if (u->nparts == PARTS_MAX) {
			u->error = omr_strdup_printf("at most %d files at once", PARTS_MAX);
			return MHD_YES;
		}
		if (!part_path_ok(path)) {
			u->error = omr_xstrdup("each file needs an absolute path (the path query "
					       "argument or the part's file name)");
			return MHD_YES;
		}
		/* Errors of the start are queued on r: there is one. */
		if (!(p = omr_api_put_start(u->r, u->id, path, -1)))
			return MHD_NO;
		u->parts[u->nparts++] = p;
	}
	if (!u->nparts)
		return MHD_YES;
	if (size && omr_write_all(omr_api_put_fd(u->parts[u->nparts - 1]), data, size) < 0)
		return MHD_NO;
	u->sent[u->nparts - 1] += size;
	return MHD_YES;
}

static int upload_chunk(struct omr_api_req *r, const char *data, size_t n)
{
	struct upload *u = r->ctx;

	return MHD_post_process(u->pp, data, n) == MHD_YES ? 0 : -1;
}

enum MHD_Result omr_envd_files_put_begin(struct omr_api_req *r)
{
	const char *id = omr_api_e2b_sandbox(r), *path;
	const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
						     MHD_HTTP_HEADER_CONTENT_TYPE);
	const char *ce = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
						     MHD_HTTP_HEADER_CONTENT_ENCODING);
	struct upload *u;

	if (!id)
		return MHD_YES;
	if (ce && strcasecmp(ce, "identity"))
		return omr_api_reply_error(r, 501, "unsupported", "compressed uploads are not "
					   "supported");
	u = omr_xcalloc(1, sizeof(*u));
	omr_strlcpy(u->id, id, sizeof(u->id));
	u->r = r;
	r->ctx = u;
	r->ctx_free = upload_free;
	if (ct && !strncasecmp(ct, "multipart/form-data", 19)) {
		if ((path = omr_api_query(r, "path", NULL)) && !(path = omr_api_req_path(r)))
			return MHD_YES;
		u->qpath = path ? omr_xstrdup(path) : NULL;
		u->pp = MHD_create_post_processor(r->conn, 65536, on_part, u);
		if (!u->pp)
			return omr_api_reply_error(r, 400, "bad_request", "a multipart body without "
						   "a boundary");
		r->on_chunk = upload_chunk;
		return MHD_YES;
	}
	if (!(path = omr_api_req_path(r)))
		return MHD_YES;
	if (!(u->parts[0] = omr_api_put_start(r, id, path, -1)))
		return MHD_YES;
	u->nparts = 1;
	r->sink_fd = omr_api_put_fd(u->parts[0]);
	return MHD_YES;
}

enum MHD_Result omr_envd_files_put_end(struct omr_api_req *r)
{
	struct upload *u = r->ctx;
	json_t *out;

	if (!u->pp)
		u->sent[0] = r->sink_bytes;
	for (size_t i = 0; i < u->nparts; i++)
		if (omr_api_put_finish(r, u->parts[i], u->sent[i]) < 0)
			return MHD_YES;
	if (u->error)
		return omr_api_reply_error(r, 400, "bad_request", "%s", u->error);
	if (r->sink_failed)
		return omr_api_reply_error(r, 500, "failed", "the upload was cut short");
	if (!u->nparts)
		return omr_api_reply_error(r, 400, "bad_request", "no file in the upload");
	out = json_array();
	for (size_t i = 0; i < u->nparts; i++) {
		const char *p = omr_api_put_path(u->parts[i]), *slash = strrchr(p, '/');
		json_array_append_new(out, json_pack("{s:s, s:s, s:s}", "name", slash ? slash + 1 : p,
						     "type", "file", "path", p));
	}
	return omr_api_reply_json(r, 200, out);
}

void omr_envd_files_put_abort(struct omr_api_req *r)
{
	struct upload *u = r->ctx;

	if (!u)
		return;
	for (size_t i = 0; i < u->nparts; i++)
		omr_api_put_abort(u->parts[i]);
	r->sink_fd = -1;
}
