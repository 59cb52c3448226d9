/* Templates: building one from its recipe and installing it atomically.
 * See omnirun/vm/template.h and DESIGN.md §5. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/vm/template.h"
#include "template-internal.h"
#include "omnirun/base/util.h"
#include "omnirun/vm/vmm.h"


/* ---- running a recipe ------------------------------------------------- */

/* The last lines a recipe printed, for the error message. */
struct out_tail {
	char line[TAIL_LINE_MAX + 1];  /* line being assembled */
	size_t len;
	int overlong;
	char *tail[TAIL_LINES];
	unsigned next, count;
	omr_progress_fn progress;
	void *user;
};

static void tail_end_line(struct out_tail *o)
{
	static const char pfx[] = "progress: ";

	o->line[o->len] = 0;
	if (!strncmp(o->line, pfx, sizeof(pfx) - 1)) {
		if (o->progress)
			o->progress(o->user, o->line + sizeof(pfx) - 1);
	}
	free(o->tail[o->next]);
	o->tail[o->next] = omr_strdup_printf("%s%s", o->line, o->overlong ? "..." : "");
	o->next = (o->next + 1) % TAIL_LINES;
	if (o->count < TAIL_LINES)
		o->count++;
	o->len = 0;
	o->overlong = 0;
}

static void tail_feed(struct out_tail *o, const char *buf, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char ch = buf[i];
		if (ch == '\n') {
			tail_end_line(o);
		} else if (o->len < TAIL_LINE_MAX) {
			/* Control bytes would garble the terminal the error lands on. */
			o->line[o->len++] = (ch == '\t' || (unsigned char)ch >= 0x20) && ch != 0x7f ? ch : '?';
		} else {
			o->overlong = 1;
		}
	}
}

static char *tail_text(struct out_tail *o)
{
	char *s = omr_xstrdup("");

	if (o->len)
		tail_end_line(o);
	for (unsigned i = 0; i < o->count; i++) {
		unsigned k = (o->next + TAIL_LINES - o->count + i) % TAIL_LINES;
		char *n = omr_strdup_printf("%s\n  %s", s, o->tail[k]);
		free(s);
		s = n;
	}
	return s;
}

static void tail_free(struct out_tail *o)
{
	for (unsigned i = 0; i < TAIL_LINES; i++)
		free(o->tail[i]);
}

static int tail_sink(void *user, const char *buf, size_t n)
{
	tail_feed(user, buf, n);
	return 0;
}

/* Runs argv[0] in cwd with envp, its output captured, in its own process
 * group which is killed when the leader exits or time runs out.  Returns
 * 0 when it exits 0, else < 0 with the output's last lines in the error. */
static int run_captured(char *const argv[], char *const envp[], const char *cwd,
			unsigned timeout_s, omr_progress_fn progress, void *user,
			struct omr_err **err)
{
	_cleanup_close_ int out_r = -1, out_w = -1;
	struct out_tail o = { .progress = progress, .user = user };
	const struct omr_capture_opts co = {
		.timeout_ms = timeout_s * 1000, .until_exit = 1, .group = 1,
		.sink = tail_sink, .user = &o,
	};
	_cleanup_free_ char *tail = NULL;
	int fds[2], status = 0, timed_out, rc;
	pid_t pid;

	if (pipe2(fds, O_CLOEXEC) < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "pipe");
	out_r = fds[0];
	out_w = fds[1];
	const struct omr_spawn_opts so = {
		.out_fd = out_w, .envp = envp, .cwd = cwd, .new_pgroup = 1,
	};
	pid = omr_spawn_ex(argv, &so, err);
	if (pid < 0)
		return (int)pid;
	omr_closep(&out_w);

	/* Whatever the recipe left running in its group goes too. */
	timed_out = omr_capture(pid, out_r, &co, &status) == -ETIMEDOUT;

	tail = tail_text(&o);
	tail_free(&o);
	if (timed_out)
		rc = omr_err_set(err, OMR_E_FAIL, 0, "%s timed out after %u s; last output:%s", argv[0],
				 timeout_s, tail);
	else if (status == -1)
		rc = omr_err_set(err, OMR_E_FAIL, ECHILD, "lost the exit status of %s", argv[0]);
	else if (WIFSIGNALED(status))
		rc = omr_err_set(err, OMR_E_FAIL, 0, "%s killed by signal %d; last output:%s", argv[0],
				 WTERMSIG(status), tail);
	else if (WEXITSTATUS(status) != 0)
		rc = omr_err_set(err, OMR_E_FAIL, 0, "%s failed with exit status %d; last output:%s", argv[0],
				 WEXITSTATUS(status), tail);
	else
		rc = 0;
	return rc;
}

/* ---- building --------------------------------------------------------- */

/* Disk space of the regular files under dfd/name, a few levels deep. */
static uint64_t tree_size(int dfd, const char *name, int depth)
{
	struct stat st;
	uint64_t sum = 0;
	struct dirent *de;
	DIR *d;
	int fd;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return 0;
	/* Blocks, not lengths: an image is sparse where its filesystem is free. */
	if (S_ISREG(st.st_mode))
		return (uint64_t)st.st_blocks * 512;
	if (!S_ISDIR(st.st_mode) || depth > SIZE_WALK_DEPTH)
		return 0;
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return 0;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return 0;
	}
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			sum += tree_size(dirfd(d), de->d_name, depth + 1);
	closedir(d);
	return sum;
}

static void say(omr_progress_fn progress, void *user, const char *what)
{
	if (progress)
		progress(user, what);
}

/* Validates the finished build in bfd, stamps template.conf, syncs. */
static int finish_build(int tfd, int bfd, const char *abs_build, const char *name,
			struct omr_err **err)
{
	struct omr_template *t = NULL;
	struct tconf conf = { 0 };
	_cleanup_free_ char *text = NULL;
	int rc;

	rc = tpl_load_dir(bfd, abs_build, name, &conf, &t, err);
	omr_template_free(t);
	if (rc < 0)
		goto out;
	free(conf.name);
	conf.name = omr_xstrdup(name);
	conf.built_at = (uint64_t)time(NULL);
	/* Size of what the template will occupy: every file the recipe left. */
	conf.size_bytes = tree_size(tfd, strrchr(abs_build, '/') + 1, 0);
	text = tpl_conf_format(&conf);
	rc = omr_write_file_atomic_at(bfd, CONF_NAME, text, strlen(text), 0644, err);
	if (rc < 0)
		goto out;
	if (fchmod(bfd, 0755) < 0) {
		rc = omr_err_set(err, OMR_E_FAIL, errno, "chmod %s", abs_build);
		goto out;
	}
	/* Everything on disk before the rename makes it visible. */
	if (syncfs(bfd) < 0)
		rc = omr_err_set(err, OMR_E_FAIL, errno, "syncfs %s", abs_build);
out:
	tpl_conf_clear(&conf);
	return rc;
}

/* Puts build dir tmp in place of name, atomically when the filesystem can. */
static int install_build(int tfd, const char *tdir, const char *tmp, const char *name,
			 struct omr_err **err)
{
	_cleanup_free_ char *old = NULL;
	int rc;

	if (renameat2(tfd, tmp, tfd, name, RENAME_NOREPLACE) == 0)
		goto done;
	if (errno != EEXIST && errno != EINVAL && errno != ENOSYS)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot rename %s/%s to %s", tdir, tmp, name);
	if (errno == EEXIST && renameat2(tfd, tmp, tfd, name, RENAME_EXCHANGE) == 0) {
		/* tmp now holds the old build. */
		rc = omr_rm_rf_at(tfd, tmp);
		(void)rc;  /* a leftover is removed by the next build */
		goto done;
	}
	/* No RENAME_EXCHANGE here: move the old one aside, then the new in. */
	old = omr_strdup_printf(".%s.old.%llu", name, (unsigned long long)getpid());
	if (renameat(tfd, name, tfd, old) < 0 && errno != ENOENT)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot rename %s/%s", tdir, name);
	if (renameat(tfd, tmp, tfd, name) < 0) {
		int e = errno;
		renameat(tfd, old, tfd, name);
		return omr_err_set(err, OMR_E_FAIL, e, "cannot rename %s/%s to %s", tdir, tmp, name);
	}
	omr_rm_rf_at(tfd, old);
done:
	fsync(tfd);
	return 0;
}

/* What a build script may take from the caller's environment: proxies
 * and the npm registry's settings (a mirror, a CA bundle), nothing else. */
static const char *const env_pass[] = {
	"TMPDIR", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY",
	"NO_PROXY", "SOURCE_DATE_EPOCH", "npm_config_registry", "npm_config_fetch_retries",
	"npm_config_cafile", "NODE_EXTRA_CA_CERTS",
};

char **tpl_env_new(size_t own)
{
	return omr_xcalloc(OMR_ARRAY_SIZE(env_pass) + own + 1, sizeof(char *));
}

char **tpl_env_finish(char **env, size_t n)
{
	for (size_t i = 0; i < OMR_ARRAY_SIZE(env_pass); i++) {
		const char *v = getenv(env_pass[i]);
		if (v)
			env[n++] = omr_strdup_printf("%s=%s", env_pass[i], v);
	}
	env[n] = NULL;
	return env;
}

static char **build_env(const char *out, const char *agent, const char *cache,
			const char *recipe_dir, const char *name)
{
	char **env = tpl_env_new(9);
	const char *home = getenv("HOME");
	size_t n = 0;

	env[n++] = omr_strdup_printf("PATH=%s", CLEAN_PATH);
	env[n++] = omr_strdup_printf("HOME=%s", home && *home == '/' ? home : "/");
	env[n++] = omr_xstrdup("LC_ALL=C");
	env[n++] = omr_strdup_printf("OUT=%s", out);
	env[n++] = omr_strdup_printf("AGENT=%s", agent);
	env[n++] = omr_strdup_printf("CACHE=%s", cache);
	env[n++] = omr_strdup_printf("RECIPE_DIR=%s", recipe_dir);
	env[n++] = omr_strdup_printf("TEMPLATE=%s", name);
	return tpl_env_finish(env, n);
}

/* The recipe must be an executable regular file only its owner can change:
 * it runs with our privileges. */
static int check_recipe(const char *recipe, const char *name, struct omr_err **err)
{
	struct stat st;

	if (stat(recipe, &st) < 0) {
		if (errno == ENOENT)
			return omr_err_setx(err, OMR_E_NOT_FOUND, ENOENT, "no recipe for template '%s' (%s missing)", name,
					 recipe);
		return omr_err_set(err, omr_err_kind_missing(errno), errno, "%s", recipe);
	}
	if (!S_ISREG(st.st_mode))
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "%s is not a regular file", recipe);
	if (access(recipe, X_OK) < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "%s is not executable", recipe);
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		return omr_err_setx(err, OMR_E_DENIED, EPERM, "%s is writable by group or others", recipe);
	return 0;
}

/* Unmounts whatever a killed build left mounted below dir (mmdebstrap's
 * /proc, /dev, /sys in its chroot), deepest first, so that removing the
 * build cannot reach into the host's filesystems. */
static void unmount_below(const char *dir)
{
	_cleanup_free_ char *mi = NULL;
	size_t l = strlen(dir);
	int again = 1;

	for (int round = 0; again && round < 64; round++) {
		char *best = NULL;
		size_t best_len = 0;

		again = 0;
		free(mi);
		mi = NULL;
		if (omr_read_file_at(AT_FDCWD, "/proc/self/mountinfo", 1 << 22, &mi, NULL, NULL) < 0)
			return;
		for (char *line = strtok(mi, "\n"); line; line = strtok(NULL, "\n")) {
			char *f = line;
			/* The fifth field is the mount point (octal escapes aside). */
			for (int i = 0; i < 4 && f; i++)
				f = strchr(f, ' ') ? strchr(f, ' ') + 1 : NULL;
			if (!f)
				continue;
			size_t fl = strcspn(f, " ");
			if (fl > l && !strncmp(f, dir, l) && f[l] == '/' && fl > best_len) {
				best = f;
				best_len = fl;
			}
		}
		if (best) {
			best[best_len] = 0;
			if (umount2(best, MNT_DETACH) == 0)
				again = 1;
		}
	}
}

/* rm -rf that stays on one filesystem: a mount that outlived
 * unmount_below (busy, or made after it looked) is left, not emptied. */
static void rm_rf_xdev(int dfd, const char *name, dev_t dev, int depth)
{
	struct stat st;
	struct dirent *de;
	DIR *d;
	int fd;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || st.st_dev != dev)
		return;
	if (S_ISDIR(st.st_mode) && depth < 64) {
		fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		d = fd >= 0 ? fdopendir(fd) : NULL;
		if (!d && fd >= 0)
			close(fd);
		while (d && (de = readdir(d)))
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
				rm_rf_xdev(dirfd(d), de->d_name, dev, depth + 1);
		if (d)
			closedir(d);
	}
	unlinkat(dfd, name, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0);
}

void tpl_rm_tree(int tfd, const char *name)
{
	char link[64], dir[PATH_MAX];
	struct stat st;
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", tfd);
	n = readlink(link, dir, sizeof(dir) - 1);
	if (n > 0) {
		_cleanup_free_ char *path = NULL;
		dir[n] = 0;
		path = omr_strdup_printf("%s/%s", dir, name);
		unmount_below(path);
	}
	if (fstat(tfd, &st) == 0)
		rm_rf_xdev(tfd, name, st.st_dev, 0);
}

void tpl_build_abort(struct tpl_build *b)
{
	if (b->tfd >= 0 && b->tmp_name)
		tpl_rm_tree(b->tfd, b->tmp_name);
	tpl_build_free(b);
}

void tpl_build_free(struct tpl_build *b)
{
	omr_closep(&b->tfd);
	omr_closep(&b->lock);
	free(b->abs_tdir);
	free(b->tmp_path);
	free(b->tmp_name);
	memset(b, 0, sizeof(*b));
	b->tfd = b->lock = -1;
}

int tpl_build_start(const struct omr_config *c, const char *name, struct tpl_build *b,
		    struct omr_err **err)
{
	_cleanup_free_ char *tdir = tpl_dir(c);
	int rc;

	memset(b, 0, sizeof(*b));
	b->tfd = b->lock = -1;
	/* The templates live in the state dir: both ours alone. */
	if ((rc = omr_dir_private(c->state_dir, 1, err)) < 0 ||
	    (close(rc), rc = omr_dir_private(tdir, 1, err)) < 0)
		return rc;
	close(rc);
	b->abs_tdir = realpath(tdir, NULL);
	if (!b->abs_tdir)
		return omr_err_set(err, OMR_E_FAIL, errno, "%s", tdir);
	b->tfd = open(b->abs_tdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (b->tfd < 0) {
		rc = omr_err_set(err, OMR_E_FAIL, errno, "cannot open %s", b->abs_tdir);
		goto fail;
	}
	if ((b->lock = tpl_lock(b->tfd, name, err)) < 0) {
		rc = b->lock;
		goto fail;
	}
	tpl_remove_leftovers(b->tfd, name);
	b->tmp_path = omr_strdup_printf("%s/.%s.build.XXXXXX", b->abs_tdir, name);
	if (!mkdtemp(b->tmp_path)) {
		rc = omr_err_set(err, OMR_E_FAIL, errno, "cannot create %s", b->tmp_path);
		goto fail;
	}
	b->tmp_name = omr_xstrdup(strrchr(b->tmp_path, '/') + 1);
	return 0;
fail:
	tpl_build_free(b);
	return rc;
}

int tpl_build_finish(struct tpl_build *b, const char *name, struct omr_err **err)
{
	_cleanup_close_ int bfd = -1;
	int rc;

	bfd = openat(b->tfd, b->tmp_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (bfd < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot open %s", b->tmp_path);
	rc = finish_build(b->tfd, bfd, b->tmp_path, name, err);
	if (rc < 0)
		return rc;
	return install_build(b->tfd, b->abs_tdir, b->tmp_name, name, err);
}

int tpl_run(char *const argv[], char *const envp[], const char *cwd, omr_progress_fn progress,
	    void *user, struct omr_err **err)
{
	return run_captured(argv, envp, cwd, BUILD_TIMEOUT_S, progress, user, err);
}

static int build_script(const struct omr_config *c, const char *name, const char *recipe_dir,
			const char *recipe, omr_progress_fn progress, void *user,
			struct omr_err **err)
{
	_cleanup_free_ char *libexec = NULL, *agent = NULL, *cache = NULL;
	_cleanup_close_ int bfd = -1;
	struct tpl_build b;
	char **env = NULL;
	int rc;

	if ((rc = check_recipe(recipe, name, err)) < 0)
		return rc;
	cache = tpl_abs_path(c->cache_dir);
	if ((rc = omr_mkdir_p(cache, 0755, err)) < 0)
		return rc;
	libexec = tpl_abs_path(c->libexec_dir);
	agent = omr_strdup_printf("%s/omnirun-agent", libexec);
	if ((rc = tpl_build_start(c, name, &b, err)) < 0)
		return rc;

	say(progress, user, "running recipe");
	env = build_env(b.tmp_path, agent, cache, recipe_dir, name);
	rc = run_captured((char *[]){ (char *)recipe, NULL }, env, b.tmp_path, BUILD_TIMEOUT_S,
			  progress, user, err);
	omr_argv_free(env);
	if (rc < 0)
		goto fail;
	say(progress, user, "validating");
	bfd = openat(b.tfd, b.tmp_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (bfd < 0) {
		rc = omr_err_set(err, OMR_E_FAIL, errno, "cannot open %s", b.tmp_path);
		goto fail;
	}
	rc = finish_build(b.tfd, bfd, b.tmp_path, name, err);
	if (rc < 0) {
		omr_err_wrap(err, "recipe %s produced an invalid template", recipe);
		goto fail;
	}
	say(progress, user, "installing");
	rc = install_build(b.tfd, b.abs_tdir, b.tmp_name, name, err);
	if (rc < 0)
		goto fail;
	tpl_build_free(&b);
	return 0;
fail:
	tpl_build_abort(&b);
	return rc;
}

int omr_template_build(const struct omr_config *c, const char *name,
		       omr_progress_fn progress, void *user, struct omr_err **err)
{
	_cleanup_free_ char *recipes = NULL, *recipe_dir = NULL, *recipe = NULL;
	int rc;

	if ((rc = tpl_check_name(name, err)) < 0)
		return rc;
	recipes = tpl_abs_path(c->recipes_dir);
	recipe_dir = omr_strdup_printf("%s/%s", recipes, name);
	recipe = omr_strdup_printf("%s/recipe", recipe_dir);
	if (access(recipe, F_OK) == 0 && tpl_recipe_is_ini(recipe))
		return omr_template_build_from(c, name, recipe, progress, user, err);
	return build_script(c, name, recipe_dir, recipe, progress, user, err);
}
