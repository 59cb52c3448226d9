/* The watch op: inotify events as REPLY frames until the host cancels.
 *
 * The inotify fd is read only while the output queue has room, so a busy
 * tree cannot grow agent memory: the kernel's queue fills instead and
 * reports an overflow, which we pass on as {"event":"overflow"}. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "omnirun/base/cleanup.h"

#define WATCH_MASK                                                                  \
	(IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | \
	 IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_DONT_FOLLOW | IN_EXCL_UNLINK)
#define MAX_WATCHES 8192
#define MAX_DEPTH 64

struct wdent {
	int wd;
	char *path;
};

struct watch_stream {
	struct stream s;
	int ifd;
	bool recursive;
	struct wdent *w;
	size_t n, cap;
};

static struct wdent *wd_find(struct watch_stream *ws, int wd)
{
	for (size_t i = 0; i < ws->n; i++)
		if (ws->w[i].wd == wd)
			return &ws->w[i];
	return NULL;
}

static int add_watch(struct watch_stream *ws, const char *path)
{
	struct wdent *e;
	char *copy;
	int wd;

	if (ws->n >= MAX_WATCHES)
		return -ENOSPC;
	wd = inotify_add_watch(ws->ifd, path, WATCH_MASK);
	if (wd < 0)
		return -errno;
	copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	e = wd_find(ws, wd);
	if (e) { /* the same directory under a new name (moved) */
		free(e->path);
		e->path = copy;
		return 0;
	}
	if (ws->n == ws->cap) {
		size_t cap = ws->cap ? ws->cap * 2 : 16;
		struct wdent *w = realloc(ws->w, cap * sizeof(*w));
		if (!w) {
			free(copy);
			return -ENOMEM;
		}
		ws->w = w;
		ws->cap = cap;
	}
	ws->w[ws->n++] = (struct wdent){ wd, copy };
	return 0;
}

static void add_tree(struct watch_stream *ws, const char *path, int depth)
{
	struct dirent *de;
	DIR *d;

	if (add_watch(ws, path) < 0 || !ws->recursive || depth >= MAX_DEPTH)
		return;
	d = opendir(path);
	if (!d)
		return;
	while ((de = readdir(d))) {
		struct stat st;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (de->d_type != DT_DIR &&
		    (de->d_type != DT_UNKNOWN || fstatat(dirfd(d), de->d_name, &st,
							 AT_SYMLINK_NOFOLLOW) < 0 ||
		     !S_ISDIR(st.st_mode)))
			continue;
		_cleanup_free_ char *sub = path_join(path, de->d_name);
		if (sub)
			add_tree(ws, sub, depth + 1);
	}
	closedir(d);
}

static const char *event_name(uint32_t m)
{
	if (m & IN_CREATE) return "create";
	if (m & IN_MODIFY) return "modify";
	if (m & IN_CLOSE_WRITE) return "close_write";
	if (m & IN_DELETE) return "delete";
	if (m & IN_MOVED_FROM) return "rename_from";
	if (m & IN_MOVED_TO) return "rename_to";
	if (m & IN_ATTRIB) return "attrib";
	if (m & IN_DELETE_SELF) return "delete_self";
	if (m & IN_MOVE_SELF) return "move_self";
	return NULL;
}

static void handle_event(struct watch_stream *ws, const struct inotify_event *ev)
{
	struct wdent *e = wd_find(ws, ev->wd);
	const char *name = event_name(ev->mask);
	_cleanup_free_ char *full = NULL;
	json_t *o;

	if (ev->mask & IN_Q_OVERFLOW) {
		send_json(OMR_F_REPLY, ws->s.id, json_pack("{s:s}", "event", "overflow"));
		return;
	}
	if (!e)
		return;
	if (ev->mask & IN_IGNORED) { /* the watch is gone (directory removed) */
		free(e->path);
		*e = ws->w[--ws->n];
		if (ws->n == 0)
			stream_end(&ws->s, json_pack("{s:b}", "gone", 1));
		return;
	}
	if (!name)
		return;
	full = ev->len && ev->name[0] ? path_join(e->path, ev->name) : strdup(e->path);
	if (!full)
		return;
	o = json_pack("{s:s,s:b}", "event", name, "dir", (ev->mask & IN_ISDIR) != 0);
	omr_json_set_bytes(o, "path", full);
	if (ev->cookie) /* pairs rename_from with rename_to */
		json_object_set_new(o, "cookie", json_integer(ev->cookie));
	send_json(OMR_F_REPLY, ws->s.id, o);
	if (ws->recursive && (ev->mask & IN_ISDIR) && (ev->mask & (IN_CREATE | IN_MOVED_TO)))
		add_tree(ws, full, 1);
}

static void watch_ready(void *obj, int tag, short rev)
{
	struct watch_stream *ws = obj;
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n;

	(void)tag;
	(void)rev;
	if (ws->s.dead)
		return;
	n = read(ws->ifd, buf, sizeof(buf));
	for (char *p = buf; n > 0 && p < buf + n && !ws->s.dead;) {
		const struct inotify_event *ev = (const struct inotify_event *)(void *)p;
		handle_event(ws, ev);
		p += sizeof(*ev) + ev->len;
	}
}

static void watch_poll(struct stream *s, struct pollctx *pc)
{
	struct watch_stream *ws = container_of(s, struct watch_stream, s);

	if (conn_can_produce())
		poll_add(pc, ws->ifd, POLLIN, watch_ready, ws, 0);
}

static void watch_signal(struct stream *s, int sig)
{
	/* A watch has no process to signal: any SIGNAL (an interrupted
	 * client forwards its SIGINT) ends it cleanly. */
	(void)sig;
	stream_end(s, json_object());
}

static void watch_destroy(struct stream *s, bool conn_lost)
{
	struct watch_stream *ws = container_of(s, struct watch_stream, s);

	(void)conn_lost;
	omr_closep(&ws->ifd);
	for (size_t i = 0; i < ws->n; i++)
		free(ws->w[i].path);
	free(ws->w);
}

static const struct stream_ops watch_ops = {
	.signal = watch_signal,
	.poll = watch_poll,
	.destroy = watch_destroy,
};

void op_watch(uint32_t id, json_t *req)
{
	_cleanup_free_ char *path = NULL;
	struct watch_stream *ws;
	struct jerr e;
	bool recursive;
	int rc;

	if (jget_path(req, "path", true, &path, NULL, &e) < 0 ||
	    jget_bool(req, "recursive", false, &recursive, &e) < 0) {
		send_bad_request(id, &e);
		return;
	}
	ws = (struct watch_stream *)stream_new(id, sizeof(*ws), &watch_ops);
	if (!ws)
		return;
	ws->recursive = recursive;
	ws->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	rc = ws->ifd < 0 ? -errno : add_watch(ws, path);
	if (rc < 0) {
		stream_end(&ws->s, error_json(-rc, NULL, "cannot watch %s: %s", path, strerror(-rc)));
		return;
	}
	if (recursive) {
		/* The root is watched already; add_tree re-adds it harmlessly. */
		add_tree(ws, path, 0);
	}
	/* Tells the host that events from now on are seen. */
	send_json(OMR_F_REPLY, id, json_pack("{s:s,s:I}", "event", "ready", "watches",
					     (json_int_t)ws->n));
}
