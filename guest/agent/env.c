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
#include "omnirun/cleanup.h"

#define ENV_FILE_MAX (1u << 20)

void strv_free(struct strv *sv)
{
	for (size_t i = 0; i < sv->n; i++)
		free(sv->v[i]);
	free(sv->v);
	memset(sv, 0, sizeof(*sv));
}

static ssize_t strv_find(const struct strv *sv, const char *key)
{
	size_t kl = strlen(key);

	for (size_t i = 0; i < sv->n; i++)
		if (!strncmp(sv->v[i], key, kl) && sv->v[i][kl] == '=')
			return (ssize_t)i;
	return -1;
}

void strv_setenv(struct strv *sv, const char *key, const char *val)
{
	ssize_t i = strv_find(sv, key);
	char *s;

	if (!val) {
		if (i >= 0) {
			free(sv->v[i]);
			sv->v[i] = sv->v[--sv->n];
			sv->v[sv->n] = NULL;
		}
		return;
	}
	if (asprintf(&s, "%s=%s", key, val) < 0)
		return;
	if (i >= 0) {
		free(sv->v[i]);
		sv->v[i] = s;
		return;
	}
	if (sv->n + 2 > sv->cap) {
		size_t cap = sv->cap ? sv->cap * 2 : 32;
		char **v = realloc(sv->v, cap * sizeof(*v));
		if (!v) {
			free(s);
			return;
		}
		sv->v = v;
		sv->cap = cap;
	}
	sv->v[sv->n++] = s;
	sv->v[sv->n] = NULL; /* always a valid envp */
}

static bool env_key_ok(const char *k)
{
	return *k && !strpbrk(k, "=\n") && strlen(k) < 1024;
}

/* Reads the file only if it is ours: /tmp is world-writable, and a user's
 * symlink or file there must not feed (or leak) anything. */
static ssize_t env_file_read(const char *path, char *buf, size_t size)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	struct stat st;
	size_t len = 0;
	ssize_t r;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077))
		return -EPERM;
	while (len + 1 < size && (r = read(fd, buf + len, size - 1 - len)) > 0)
		len += (size_t)r;
	buf[len] = 0;
	return (ssize_t)len;
}

int env_file_load(const char *path, struct strv *sv)
{
	_cleanup_free_ char *buf = malloc(ENV_FILE_MAX + 1);
	char *line, *next;
	ssize_t n;

	if (!buf)
		return -ENOMEM;
	n = env_file_read(path, buf, ENV_FILE_MAX + 1);
	if (n < 0)
		return (int)n;
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
	return 0;
}

static int env_file_write(const char *path, const struct strv *sv)
{
	_cleanup_free_ char *tmp = NULL;
	_cleanup_fclose_ FILE *f = NULL;
	int fd, rc = 0;

	/* A fresh name (O_EXCL, 0600): nothing planted in /tmp is reused. */
	if (asprintf(&tmp, "%s.XXXXXX", path) < 0)
		return -ENOMEM;
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		unlink(tmp);
		return -ENOMEM;
	}
	for (size_t i = 0; i < sv->n; i++) {
		const char *s = sv->v[i];
		const char *eq = strchr(s, '=');
		fwrite(s, 1, (size_t)(eq - s + 1), f);
		for (s = eq + 1; *s; s++) {
			if (*s == '\n')
				fputs("\\n", f);
			else if (*s == '\\')
				fputs("\\\\", f);
			else
				fputc(*s, f);
		}
		fputc('\n', f);
	}
	if (fflush(f) != 0 || fsync(fd) < 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0)
		unlink(tmp);
	return rc;
}

void op_env_set(uint32_t id, json_t *req)
{
	json_t *vars = json_object_get(req, "vars"), *v;
	struct strv sv = { 0 };
	const char *k;
	int rc;

	if (!json_is_object(vars)) {
		send_error(id, EINVAL, "bad_request", "\"vars\" must be an object");
		return;
	}
	json_object_foreach(vars, k, v) {
		if (!env_key_ok(k) || !(json_is_string(v) || json_is_null(v))) {
			send_error(id, EINVAL, "bad_request",
				   "env names must be non-empty without '=' and values strings or null");
			return;
		}
	}
	rc = env_file_load(agent_cfg.env_file, &sv);
	if (rc < 0 && rc != -ENOENT) {
		/* Not ours (or unreadable): replaced by the rename below. */
		alog("ignoring %s: %s", agent_cfg.env_file, strerror(-rc));
		strv_free(&sv);
	}
	json_object_foreach(vars, k, v)
		strv_setenv(&sv, k, json_string_value(v));
	rc = env_file_write(agent_cfg.env_file, &sv);
	strv_free(&sv);
	if (rc < 0)
		send_error(id, -rc, NULL, "cannot write %s", agent_cfg.env_file);
	else
		send_json(OMR_F_END, id, json_object());
}
