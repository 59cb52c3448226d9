/* Environment vectors and the env file (/tmp/.omnirun-env).
 *
 * The file holds KEY=VALUE lines; in values a newline is written "\n" and
 * a backslash "\\", so multi-line secrets survive.  Values are never
 * logged. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "omnirun/base/cleanup.h"

#define ENV_FILE_MAX (1u << 20)

void strv_free(struct strv *sv)
{
	for (size_t i = 0; i < sv->n; i++)
		free(sv->v[i]);
	free(sv->v);
	memset(sv, 0, sizeof(*sv));
}

static ssize_t strv_findn(const struct strv *sv, const char *key, size_t kl)
{
	for (size_t i = 0; i < sv->n; i++)
		if (!strncmp(sv->v[i], key, kl) && sv->v[i][kl] == '=')
			return (ssize_t)i;
	return -1;
}

/* Appends s (taken: freed on failure); the vector stays NULL-terminated. */
static int strv_push_owned(struct strv *sv, char *s)
{
	if (sv->n + 2 > sv->cap) {
		size_t cap = sv->cap ? sv->cap * 2 : 16;
		char **v = realloc(sv->v, cap * sizeof(*v));
		if (!v) {
			free(s);
			return -1;
		}
		sv->v = v;
		sv->cap = cap;
	}
	sv->v[sv->n++] = s;
	sv->v[sv->n] = NULL; /* always a valid envp */
	return 0;
}

int strv_push(struct strv *sv, const char *s)
{
	char *d = strdup(s);

	return d ? strv_push_owned(sv, d) : -1;
}

/* Sets s ("KEY=VALUE", taken), replacing an existing KEY. */
static void strv_put(struct strv *sv, char *s)
{
	ssize_t i = strv_findn(sv, s, (size_t)(strchr(s, '=') - s));

	if (i >= 0) {
		free(sv->v[i]);
		sv->v[i] = s;
		return;
	}
	strv_push_owned(sv, s);
}

void strv_setenv(struct strv *sv, const char *key, const char *val)
{
	ssize_t i;
	char *s;

	if (!val) {
		i = strv_findn(sv, key, strlen(key));
		if (i >= 0) {
			free(sv->v[i]);
			sv->v[i] = sv->v[--sv->n];
			sv->v[sv->n] = NULL;
		}
		return;
	}
	if (asprintf(&s, "%s=%s", key, val) < 0)
		return;
	strv_put(sv, s);
}

bool env_key_ok(const char *k)
{
	return *k && !strpbrk(k, "=\n") && strlen(k) < 1024;
}

/* The parsed env file, reused while the file is unchanged. */
static struct {
	bool valid;
	dev_t dev;
	ino_t ino;
	struct timespec mtim;
	off_t size;
	struct strv sv; /* KEY=VALUE, one per key */
} env_cache;

static void env_cache_drop(void)
{
	strv_free(&env_cache.sv);
	env_cache.valid = false;
}

static bool env_cache_fresh(const struct stat *st)
{
	return env_cache.valid && env_cache.dev == st->st_dev && env_cache.ino == st->st_ino &&
	       env_cache.size == st->st_size && env_cache.mtim.tv_sec == st->st_mtim.tv_sec &&
	       env_cache.mtim.tv_nsec == st->st_mtim.tv_nsec;
}

/* Parses KEY=VALUE lines of buf (modified) into sv. */
static void env_parse(char *buf, struct strv *sv)
{
	char *line, *next;

	for (line = buf; line && *line; line = next) {
		char *eq, *r, *w;
		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		eq = strchr(line, '=');
		if (!eq || eq == line)
			continue;
		*eq = 0;
		for (r = w = eq + 1; *r; r++) {
			if (*r == '\\' && r[1]) {
				r++;
				*w++ = *r == 'n' ? '\n' : *r;
			} else {
				*w++ = *r;
			}
		}
		*w = 0;
		strv_setenv(sv, line, eq + 1);
	}
}

/* Refreshes env_cache from the file, read only if it is ours: /tmp is
 * world-writable, and a user's symlink or file there must not feed (or
 * leak) anything.  Returns 0 or -errno. */
static int env_cache_load(const char *path)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	_cleanup_free_ char *buf = NULL;
	struct stat st;
	ssize_t n;

	if (fd < 0 || fstat(fd, &st) < 0)
		goto fail;
	if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077)) {
		errno = EPERM;
		goto fail;
	}
	if (env_cache_fresh(&st))
		return 0;
	env_cache_drop();
	buf = malloc(ENV_FILE_MAX + 1);
	if (!buf)
		return -ENOMEM;
	n = omr_read_full(fd, buf, ENV_FILE_MAX);
	if (n < 0)
		return (int)n;
	buf[n] = 0;
	env_parse(buf, &env_cache.sv);
	env_cache.dev = st.st_dev;
	env_cache.ino = st.st_ino;
	env_cache.mtim = st.st_mtim;
	env_cache.size = st.st_size;
	env_cache.valid = true;
	return 0;
fail:
	n = -errno;
	env_cache_drop();
	return (int)n;
}

int env_file_load(const char *path, struct strv *sv)
{
	int rc = env_cache_load(path);

	if (rc < 0)
		return rc;
	for (size_t i = 0; i < env_cache.sv.n; i++) {
		char *d = strdup(env_cache.sv.v[i]);
		if (d)
			strv_put(sv, d);
	}
	return 0;
}

/* Written whole under a fresh name (O_EXCL, 0600: nothing planted in
 * /tmp is reused) and renamed (omr_write_file_atomic_at). */
static int env_file_write(const char *path, const struct strv *sv)
{
	const char *slash = strrchr(path, '/');
	_cleanup_free_ char *dir = slash ? path_dirname(path) : omr_xstrdup(".");
	_cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	char *buf = NULL;
	size_t len = 0;
	FILE *f;
	int rc;

	if (dfd < 0)
		return -errno;
	f = open_memstream(&buf, &len);
	if (!f)
		return -ENOMEM;
	for (size_t i = 0; i < sv->n; i++) {
		const char *v = sv->v[i];
		const char *eq = strchr(v, '=');
		fwrite(v, 1, (size_t)(eq - v + 1), f);
		for (v = eq + 1; *v; v++) {
			if (*v == '\n')
				fputs("\\n", f);
			else if (*v == '\\')
				fputs("\\\\", f);
			else
				fputc(*v, f);
		}
		fputc('\n', f);
	}
	rc = fclose(f) == 0 ? 0 : -ENOMEM;
	if (rc == 0)
		rc = omr_write_file_atomic_at(dfd, slash ? slash + 1 : path, buf, len, 0600, NULL);
	explicit_bzero(buf, len); /* values are secrets */
	free(buf);
	return rc;
}

void op_env_set(uint32_t id, json_t *req)
{
	json_t *vars = json_object_get(req, "vars"), *v;
	struct strv sv = { 0 };
	const char *k;
	int rc;

	if (!json_is_object(vars)) {
		send_error(id, EINVAL, NULL, "\"vars\" must be an object");
		return;
	}
	json_object_foreach(vars, k, v) {
		if (!env_key_ok(k) || !(json_is_string(v) || json_is_null(v))) {
			send_error(id, EINVAL, NULL,
				   "env names must be non-empty without '=' and values strings or null");
			return;
		}
	}
	rc = env_file_load(agent_cfg.env_file, &sv);
	if (rc < 0 && rc != -ENOENT) {
		/* Not ours (or unreadable): replaced by the rename below. */
		omr_log(OMR_LOG_INFO, "ignoring %s: %s", agent_cfg.env_file, strerror(-rc));
		strv_free(&sv);
	}
	json_object_foreach(vars, k, v)
		strv_setenv(&sv, k, json_string_value(v));
	rc = env_file_write(agent_cfg.env_file, &sv);
	strv_free(&sv);
	env_cache_drop();
	if (rc < 0)
		send_error(id, -rc, NULL, "cannot write %s", agent_cfg.env_file);
	else
		send_json(OMR_F_END, id, json_object());
}
