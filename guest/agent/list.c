/* The list op: a directory in REPLY batches, produced only while the
 * output queue has room, so a directory of a million names streams in
 * bounded memory.
 *
 * Names are bytes; JSON needs UTF-8.  "name" is the name with invalid
 * sequences replaced by U+FFFD, and "name_b64" (the exact bytes) is added
 * when they were not valid UTF-8.  Every path field of a request accepts a
 * PATH_b64 twin for such names. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "omnirun/base/cleanup.h"

/* A batch stops past this estimate of its JSON size: well under
 * OMR_FRAME_MAX even when every byte of a name needs \uXXXX escaping. */
#define BATCH_BYTES (32u * 1024u)

struct list_stream {
	struct stream s;
	DIR *d;
	uint64_t count;
};

static json_t *entry_json(int dfd, const char *name, size_t *est)
{
	struct stat st;
	json_t *o = json_object();

	omr_json_set_bytes(o, "name", name);
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		stat_json(o, &st);
	} else {
		json_object_set_new(o, "type", json_string("other")); /* vanished meanwhile */
	}
	*est += 6 * strlen(name) + 4 * strlen(name) / 3 + 128;
	return o;
}

/* readdir with errno telling the end (0) from a failure. */
static struct dirent *next_entry(DIR *d, int *err)
{
	struct dirent *de;

	errno = 0;
	de = readdir(d);
	*err = errno;
	return de;
}

static void list_tick(struct stream *s)
{
	struct list_stream *ls = container_of(s, struct list_stream, s);
	json_t *batch;
	struct dirent *de = NULL;
	size_t est;
	int err = 0;

	while (conn_can_produce()) {
		batch = json_array();
		est = 0;
		while (est < BATCH_BYTES && (de = next_entry(ls->d, &err))) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			json_array_append_new(batch, entry_json(dirfd(ls->d), de->d_name, &est));
		}
		if (json_array_size(batch)) {
			ls->count += json_array_size(batch);
			send_json(OMR_F_REPLY, s->id, json_pack("{s:o}", "entries", batch));
		} else {
			json_decref(batch);
		}
		if (!de) {
			if (err)
				stream_end(s, error_json(err, NULL, "cannot read directory: %s",
							 strerror(err)));
			else
				stream_end(s, json_pack("{s:I}", "count", (json_int_t)ls->count));
			return;
		}
	}
}

static void list_poll(struct stream *s, struct pollctx *pc)
{
	(void)s;
	if (conn_can_produce())
		poll_wake_at(pc, omr_now_ms());
}

static void list_destroy(struct stream *s, bool conn_lost)
{
	struct list_stream *ls = container_of(s, struct list_stream, s);

	(void)conn_lost;
	if (ls->d)
		closedir(ls->d);
}

static const struct stream_ops list_ops = {
	.poll = list_poll,
	.tick = list_tick,
	.destroy = list_destroy,
};

void op_list(uint32_t id, json_t *req)
{
	_cleanup_free_ char *path = NULL;
	struct list_stream *ls;
	struct jerr e;
	DIR *d;
	int fd;

	if (jget_path(req, "path", true, &path, NULL, &e) < 0) {
		send_bad_request(id, &e);
		return;
	}
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || !(d = fdopendir(fd))) {
		int err = errno;
		if (fd >= 0)
			close(fd);
		send_error(id, err, NULL, "cannot list %s: %s", path, strerror(err));
		return;
	}
	ls = (struct list_stream *)stream_new(id, sizeof(*ls), &list_ops);
	if (!ls) {
		closedir(d);
		return;
	}
	ls->d = d;
}
