/* Templates: loading, listing, building from recipes, removing.
 * See omnirun/template.h and DESIGN.md §5.
 *
 * Layout under $state_dir/templates/:
 *   NAME/                  an installed template (template.conf + files)
 *   .NAME.lock             flock'ed by whoever builds or removes NAME
 *   .NAME.build.XXXXXX     a build in progress (0700, never visible as NAME)
 *   .NAME.old.XXXXXX       the previous build, being deleted
 * Names never contain '.', so ".NAME." prefixes cannot collide. */
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/vm/template.h"
#include "omnirun/base/util.h"
#include "omnirun/vm/vmm.h"

#define CONF_NAME        "template.conf"
#define CONF_MAX         (64 * 1024)
#define CONF_LINE_MAX    198   /* libinih's INI_MAX_LINE is 200 with "\n\0" */
#define CMDLINE_MAX      180
#define FILE_NAME_MAX    128
#define BUILD_TIMEOUT_S  (15 * 60)
#define TAIL_LINES       10
#define TAIL_LINE_MAX    240
#define SIZE_WALK_DEPTH  8
#define CLEAN_PATH       "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

int omr_template_name_valid(const char *name)
{
	size_t n;

	if (!name || !((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= '0' && name[0] <= '9')))
		return 0;
	for (n = 1; name[n]; n++) {
		char ch = name[n];
		if (n > 31)
			return 0;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
			return 0;
	}
	return 1;
}

/* A file named by template.conf: one plain name inside the template dir. */
static int file_name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > FILE_NAME_MAX || s[0] == '.')
		return 0;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return 0;
	}
	return 1;
}

static int printable(const char *s, size_t max)
{
	size_t n = 0;

	for (; s[n]; n++)
		if (n >= max || s[n] < 0x20 || s[n] > 0x7e)
			return 0;
	return 1;
}


static int check_name(const char *name, struct omr_err **err)
{
	if (omr_template_name_valid(name))
		return 0;
	return omr_err_setx(err, OMR_E_USAGE, EINVAL,
			   "invalid template name '%s' (want [a-z0-9][a-z0-9_-]{0,31})",
			   name ? name : "");
}

static char *abs_path(const char *p)
{
	_cleanup_free_ char *cwd = NULL;

	if (p[0] == '/')
		return omr_xstrdup(p);
	cwd = getcwd(NULL, 0);
	if (!cwd)
		return omr_xstrdup(p);
	return omr_strdup_printf("%s/%s", cwd, p);
}

static char *templates_dir(const struct omr_config *c)
{
	return omr_strdup_printf("%s/templates", c->state_dir);
}

/* ---- template.conf ---------------------------------------------------- */

/* What template.conf says, file names still relative. */
struct tconf {
	char *name, *kernel, *initrd, *rootfs, *kernel_version, *cmdline;
	uint64_t cpus, memory_mb, disk_mb, built_at, size_bytes;
	int have_size;
	unsigned seen;           /* bit per key: duplicates are errors */
	struct omr_err **err;
	int rc;
};

static void tconf_clear(struct tconf *t)
{
	free(t->name);
	free(t->kernel);
	free(t->initrd);
	free(t->rootfs);
	free(t->kernel_version);
	free(t->cmdline);
	memset(t, 0, sizeof(*t));
}

enum { K_NAME, K_KERNEL, K_INITRD, K_ROOTFS, K_KVER, K_CMDLINE, K_CPUS, K_MEM,
       K_DISK, K_BUILT, K_SIZE };

static const struct {
	const char *key;
	uint64_t min, max;   /* numbers only */
} tkeys[] = {
	[K_NAME] = { "name", 0, 0 },
	[K_KERNEL] = { "kernel", 0, 0 },
	[K_INITRD] = { "initrd", 0, 0 },
	[K_ROOTFS] = { "rootfs", 0, 0 },
	[K_KVER] = { "kernel_version", 0, 0 },
	[K_CMDLINE] = { "cmdline", 0, 0 },
	[K_CPUS] = { "cpus", 0, 64 },
	[K_MEM] = { "memory_mb", 0, 1048576 },
	[K_DISK] = { "disk_mb", 0, 16777216 },
	[K_BUILT] = { "built_at", 0, 1ull << 40 },
	[K_SIZE] = { "size_bytes", 0, 1ull << 50 },
};

static int tconf_key(void *user, const char *section, const char *name, const char *value)
{
	struct tconf *t = user;
	size_t k;

	if (t->rc < 0)
		return 0;
	if (*section) {
		t->rc = omr_err_setx(t->err, OMR_E_USAGE, EINVAL, "unexpected section [%s]: keys take no section",
				    section);
		return 0;
	}
	for (k = 0; k < OMR_ARRAY_SIZE(tkeys); k++)
		if (!strcmp(name, tkeys[k].key))
			break;
	if (k == OMR_ARRAY_SIZE(tkeys)) {
		t->rc = omr_err_setx(t->err, OMR_E_USAGE, EINVAL, "unknown key '%s'", name);
		return 0;
	}
	if (t->seen & (1u << k)) {
		t->rc = omr_err_setx(t->err, OMR_E_USAGE, EINVAL, "key '%s' given twice", name);
		return 0;
	}
	t->seen |= 1u << k;

	switch (k) {
	case K_NAME:
		if (!omr_template_name_valid(value))
			goto bad;
		t->name = omr_xstrdup(value);
		return 1;
	case K_KERNEL: case K_INITRD: case K_ROOTFS: {
		char **dst = k == K_KERNEL ? &t->kernel : k == K_INITRD ? &t->initrd : &t->rootfs;
		if (k == K_ROOTFS && !*value)
			return 1;  /* "rootfs=" means none */
		if (!file_name_valid(value)) {
			t->rc = omr_err_setx(t->err, OMR_E_USAGE, EINVAL,
					    "%s '%s' must be a plain file name in the template directory",
					    name, value);
			return 0;
		}
		*dst = omr_xstrdup(value);
		return 1;
	}
	case K_KVER:
		if (!*value || !printable(value, 64) || strchr(value, ' '))
			goto bad;
		t->kernel_version = omr_xstrdup(value);
		return 1;
	case K_CMDLINE:
		if (!printable(value, CMDLINE_MAX))
			goto bad;
		t->cmdline = omr_xstrdup(value);
		return 1;
	default: {
		uint64_t *dst = k == K_CPUS ? &t->cpus : k == K_MEM ? &t->memory_mb :
				k == K_DISK ? &t->disk_mb : k == K_BUILT ? &t->built_at : &t->size_bytes;
		t->rc = omr_parse_u64(value, tkeys[k].min, tkeys[k].max, dst, name, t->err);
		if (k == K_SIZE)
			t->have_size = 1;
		return t->rc == 0;
	}
	}
bad:
	t->rc = omr_err_setx(t->err, OMR_E_USAGE, EINVAL, "invalid %s '%s'", name, value);
	return 0;
}

static int tconf_parse(const char *text, struct tconf *t, struct omr_err **err)
{
	unsigned line = 1;
	int rc;

	/* libinih silently splits lines longer than its buffer: refuse them. */
	for (const char *p = text; *p; line++) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		if (len > CONF_LINE_MAX)
			return omr_err_setx(err, OMR_E_USAGE, EINVAL, "line %u longer than %d characters",
					   line, CONF_LINE_MAX);
		p += len + (nl ? 1 : 0);
	}
	t->err = err;
	rc = ini_parse_string(text, tconf_key, t);
	if (t->rc < 0)
		return t->rc;
	if (rc != 0)
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "line %d: syntax error", rc);
	if (t->memory_mb && t->memory_mb < 64)
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "memory_mb must be 0 or at least 64");
	if (!t->kernel)
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "no kernel= given");
	if (!t->initrd)
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "no initrd= given");
	return 0;
}

static char *tconf_format(const struct tconf *t)
{
	char *s = omr_strdup_printf("name=%s\nkernel=%s\ninitrd=%s\n", t->name, t->kernel,
				    t->initrd);
	char *n;

	if (t->rootfs) {
		n = omr_strdup_printf("%srootfs=%s\n", s, t->rootfs);
		free(s);
		s = n;
	}
	n = omr_strdup_printf("%skernel_version=%s\ncmdline=%s\ncpus=%llu\nmemory_mb=%llu\n"
			      "disk_mb=%llu\nbuilt_at=%llu\nsize_bytes=%llu\n",
			      s, t->kernel_version ? t->kernel_version : "unknown",
			      t->cmdline ? t->cmdline : "", (unsigned long long)t->cpus,
			      (unsigned long long)t->memory_mb, (unsigned long long)t->disk_mb,
			      (unsigned long long)t->built_at, (unsigned long long)t->size_bytes);
	free(s);
	return n;
}

/* ---- loading ---------------------------------------------------------- */

/* The named file must be a regular file directly in dfd (no symlink). */
static int check_file(int dfd, const char *what, const char *file, uint64_t *size,
		      struct omr_err **err)
{
	struct stat st;

	if (fstatat(dfd, file, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return omr_err_set(err, omr_err_kind_missing(errno), errno, "%s %s", what, file);
	if (!S_ISREG(st.st_mode))
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "%s %s is not a regular file", what, file);
	if (st.st_size == 0)
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "%s %s is empty", what, file);
	*size += (uint64_t)st.st_size;
	return 0;
}

/* Parses and checks template.conf in dfd (the directory at abs_dir) for a
 * template called name.  Fills *conf (relative names) and *out. */
static int load_dir(int dfd, const char *abs_dir, const char *name, struct tconf *conf,
		    struct omr_template **out, struct omr_err **err)
{
	_cleanup_free_ char *text = NULL;
	struct omr_template *t;
	uint64_t size = 0;
	int rc;

	rc = omr_read_file_at(dfd, CONF_NAME, CONF_MAX, &text, NULL, err);
	if (rc < 0)
		return rc;
	if (tconf_parse(text, conf, err) < 0)
		return omr_err_wrap(err, CONF_NAME);
	if (conf->name && strcmp(conf->name, name))
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, CONF_NAME ": name '%s' does not match directory '%s'",
				   conf->name, name);
	if ((rc = check_file(dfd, "kernel", conf->kernel, &size, err)) < 0 ||
	    (rc = check_file(dfd, "initrd", conf->initrd, &size, err)) < 0 ||
	    (conf->rootfs && (rc = check_file(dfd, "rootfs", conf->rootfs, &size, err)) < 0))
		return rc;

	t = omr_xcalloc(1, sizeof(*t));
	t->name = omr_xstrdup(name);
	t->dir = omr_xstrdup(abs_dir);
	t->kernel = omr_strdup_printf("%s/%s", abs_dir, conf->kernel);
	t->initrd = omr_strdup_printf("%s/%s", abs_dir, conf->initrd);
	t->rootfs = conf->rootfs ? omr_strdup_printf("%s/%s", abs_dir, conf->rootfs) : NULL;
	t->kernel_version = omr_xstrdup(conf->kernel_version ? conf->kernel_version : "unknown");
	t->cmdline = omr_xstrdup(conf->cmdline ? conf->cmdline : "");
	t->cpus = (unsigned)conf->cpus;
	t->memory_mb = (unsigned)conf->memory_mb;
	t->disk_mb = (unsigned)conf->disk_mb;
	t->built_at = (int64_t)conf->built_at;
	t->size_bytes = conf->have_size ? conf->size_bytes : size;
	*out = t;
	return 0;
}

/* Opens $state_dir/templates/NAME; *abs gets its absolute path. */
static int open_template_dir(const struct omr_config *c, const char *name, char **abs,
			     struct omr_err **err)
{
	_cleanup_free_ char *tdir = templates_dir(c);
	_cleanup_free_ char *real = NULL;
	_cleanup_close_ int tfd = -1;
	int dfd;

	tfd = open(tdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (tfd < 0 && errno == ENOENT)
		return omr_err_setx(err, OMR_E_NOT_FOUND, ENOENT, "unknown template '%s'", name);
	if (tfd < 0)
		return omr_err_set(err, omr_err_kind_missing(errno), errno, "cannot open %s", tdir);
	dfd = openat(tfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0 && errno == ENOENT)
		return omr_err_setx(err, OMR_E_NOT_FOUND, ENOENT, "unknown template '%s'", name);
	if (dfd < 0)
		return omr_err_set(err, omr_err_kind_missing(errno), errno == ELOOP ? ENOTDIR : errno, "%s/%s", tdir, name);
	real = realpath(tdir, NULL);
	*abs = omr_strdup_printf("%s/%s", real ? real : tdir, name);
	return dfd;
}

int omr_template_load(const struct omr_config *c, const char *name,
		      struct omr_template **out, struct omr_err **err)
{
	_cleanup_free_ char *abs = NULL;
	_cleanup_close_ int dfd = -1;
	struct tconf conf = { 0 };
	int rc;

	if ((rc = check_name(name, err)) < 0)
		return rc;
	dfd = open_template_dir(c, name, &abs, err);
	if (dfd < 0)
		return dfd;
	rc = load_dir(dfd, abs, name, &conf, out, err);
	tconf_clear(&conf);
	if (rc < 0)
		return omr_err_wrap(err, "template '%s'", name);
	return 0;
}

void omr_template_free(struct omr_template *t)
{
	if (!t)
		return;
	free(t->name);
	free(t->dir);
	free(t->kernel);
	free(t->initrd);
	free(t->rootfs);
	free(t->kernel_version);
	free(t->cmdline);
	free(t);
}

static int cmp_template(const void *a, const void *b)
{
	const struct omr_template *const *x = a, *const *y = b;
	return strcmp((*x)->name, (*y)->name);
}

int omr_template_list(const struct omr_config *c, struct omr_template ***out,
		      size_t *n, struct omr_err **err)
{
	_cleanup_free_ char *tdir = templates_dir(c);
	struct omr_template **v = NULL;
	size_t len = 0;
	struct dirent *de;
	DIR *d;

	*out = NULL;
	*n = 0;
	d = opendir(tdir);
	if (!d && errno == ENOENT)
		return 0;  /* nothing built yet */
	if (!d)
		return omr_err_set(err, omr_err_kind_missing(errno), errno, "cannot open %s", tdir);
	while ((errno = 0, de = readdir(d))) {
		struct omr_template *t = NULL;
		struct omr_err *e = NULL;

		/* Dot entries are locks and builds in progress; a template that
		 * does not load is not offered (sbx-template rm still removes it). */
		if (!omr_template_name_valid(de->d_name))
			continue;
		if (omr_template_load(c, de->d_name, &t, &e) < 0) {
			omr_err_free(&e);
			continue;
		}
		v = omr_xrealloc(v, (len + 1) * sizeof(*v));
		v[len++] = t;
	}
	if (errno) {
		int saved = errno;
		closedir(d);
		omr_template_list_free(v, len);
		return omr_err_set(err, OMR_E_FAIL, saved, "cannot read %s", tdir);
	}
	closedir(d);
	if (len)
		qsort(v, len, sizeof(*v), cmp_template);
	*out = v;
	*n = len;
	return 0;
}

void omr_template_list_free(struct omr_template **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		omr_template_free(v[i]);
	free(v);
}

/* ---- locking and leftovers -------------------------------------------- */

/* Takes .NAME.lock in tfd (non-blocking); returns the lock fd. */
static int lock_template(int tfd, const char *name, struct omr_err **err)
{
	_cleanup_free_ char *lock = omr_strdup_printf(".%s.lock", name);
	int fd = openat(tfd, lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

	if (fd < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot open lock %s", lock);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		close(fd);
		if (e == EWOULDBLOCK)
			return omr_err_setx(err, OMR_E_STATE, EBUSY, "template '%s' is being built or removed", name);
		return omr_err_set(err, OMR_E_FAIL, e, "cannot lock %s", lock);
	}
	return fd;
}

/* Under the lock, removes what an interrupted build or removal left. */
static void remove_leftovers(int tfd, const char *name)
{
	_cleanup_free_ char *p1 = omr_strdup_printf(".%s.build.", name);
	_cleanup_free_ char *p2 = omr_strdup_printf(".%s.old.", name);
	int fd = fcntl(tfd, F_DUPFD_CLOEXEC, 3);
	struct dirent *de;
	DIR *d;

	if (fd < 0)
		return;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	while ((de = readdir(d)))
		if (!strncmp(de->d_name, p1, strlen(p1)) || !strncmp(de->d_name, p2, strlen(p2)))
			omr_rm_rf_at(tfd, de->d_name);
	closedir(d);
}

int omr_template_remove(const struct omr_config *c, const char *name, struct omr_err **err)
{
	_cleanup_free_ char *tdir = templates_dir(c);
	_cleanup_free_ char *old = NULL;
	_cleanup_close_ int tfd = -1, lock = -1;
	struct stat st;
	int rc;

	if ((rc = check_name(name, err)) < 0)
		return rc;
	tfd = open(tdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (tfd < 0 && errno == ENOENT)
		goto unknown;
	if (tfd < 0)
		return omr_err_set(err, omr_err_kind_missing(errno), errno, "cannot open %s", tdir);
	if (fstatat(tfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT)
		goto unknown;
	if ((lock = lock_template(tfd, name, err)) < 0)
		return lock;
	remove_leftovers(tfd, name);
	/* Out of sight first, so nobody loads a half-deleted template. */
	old = omr_strdup_printf(".%s.old.%llu", name, (unsigned long long)getpid());
	if (renameat(tfd, name, tfd, old) < 0) {
		if (errno == ENOENT)
			goto unknown;
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot rename %s/%s", tdir, name);
	}
	fsync(tfd);
	rc = omr_rm_rf_at(tfd, old);
	if (rc < 0)
		return omr_err_set(err, OMR_E_FAIL, -rc, "cannot remove %s/%s", tdir, old);
	return 0;
unknown:
	return omr_err_setx(err, OMR_E_NOT_FOUND, ENOENT, "unknown template '%s'", name);
}

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

/* Sum of the regular files' sizes under dfd/name, a few levels deep. */
static uint64_t tree_size(int dfd, const char *name, int depth)
{
	struct stat st;
	uint64_t sum = 0;
	struct dirent *de;
	DIR *d;
	int fd;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return 0;
	if (S_ISREG(st.st_mode))
		return (uint64_t)st.st_size;
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

	rc = load_dir(bfd, abs_build, name, &conf, &t, err);
	omr_template_free(t);
	if (rc < 0)
		goto out;
	free(conf.name);
	conf.name = omr_xstrdup(name);
	conf.built_at = (uint64_t)time(NULL);
	/* Size of what the template will occupy: every file the recipe left. */
	conf.size_bytes = tree_size(tfd, strrchr(abs_build, '/') + 1, 0);
	text = tconf_format(&conf);
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
	tconf_clear(&conf);
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

static char **build_env(const char *out, const char *agent, const char *cache,
			const char *recipe_dir, const char *name)
{
	static const char *const pass[] = {
		"TMPDIR", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY",
		"HTTPS_PROXY", "NO_PROXY", "SOURCE_DATE_EPOCH",
	};
	char **env = omr_xcalloc(OMR_ARRAY_SIZE(pass) + 10, sizeof(char *));
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
	for (size_t i = 0; i < OMR_ARRAY_SIZE(pass); i++) {
		const char *v = getenv(pass[i]);
		if (v)
			env[n++] = omr_strdup_printf("%s=%s", pass[i], v);
	}
	env[n] = NULL;
	return env;
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

int omr_template_build(const struct omr_config *c, const char *name,
		       omr_progress_fn progress, void *user, struct omr_err **err)
{
	_cleanup_free_ char *tdir = templates_dir(c);
	_cleanup_free_ char *abs_tdir = NULL, *recipes = NULL, *recipe_dir = NULL, *recipe = NULL;
	_cleanup_free_ char *libexec = NULL;
	_cleanup_free_ char *agent = NULL, *cache = NULL, *tmpl = NULL, *tmp_name = NULL;
	_cleanup_close_ int tfd = -1, bfd = -1, lock = -1;
	char **env = NULL;
	int rc;

	if ((rc = check_name(name, err)) < 0)
		return rc;
	recipes = abs_path(c->recipes_dir);
	recipe_dir = omr_strdup_printf("%s/%s", recipes, name);
	recipe = omr_strdup_printf("%s/recipe", recipe_dir);
	if ((rc = check_recipe(recipe, name, err)) < 0)
		return rc;

	/* The templates live in the state dir: both ours alone. */
	if ((rc = omr_dir_private(c->state_dir, 1, err)) < 0 ||
	    (close(rc), rc = omr_dir_private(tdir, 1, err)) < 0)
		return rc;
	close(rc);
	abs_tdir = realpath(tdir, NULL);
	if (!abs_tdir)
		return omr_err_set(err, OMR_E_FAIL, errno, "%s", tdir);
	tfd = open(abs_tdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (tfd < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot open %s", abs_tdir);
	if ((lock = lock_template(tfd, name, err)) < 0)
		return lock;
	remove_leftovers(tfd, name);

	cache = abs_path(c->cache_dir);
	if ((rc = omr_mkdir_p(cache, 0755, err)) < 0)
		return rc;
	libexec = abs_path(c->libexec_dir);
	agent = omr_strdup_printf("%s/omnirun-agent", libexec);

	tmpl = omr_strdup_printf("%s/.%s.build.XXXXXX", abs_tdir, name);
	if (!mkdtemp(tmpl))
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot create %s", tmpl);
	tmp_name = omr_xstrdup(strrchr(tmpl, '/') + 1);

	say(progress, user, "running recipe");
	env = build_env(tmpl, agent, cache, recipe_dir, name);
	rc = run_captured((char *[]){ recipe, NULL }, env, tmpl, BUILD_TIMEOUT_S, progress,
			  user, err);
	omr_argv_free(env);
	if (rc < 0)
		goto fail;

	say(progress, user, "validating");
	bfd = openat(tfd, tmp_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (bfd < 0) {
		rc = omr_err_set(err, OMR_E_FAIL, errno, "cannot open %s", tmpl);
		goto fail;
	}
	rc = finish_build(tfd, bfd, tmpl, name, err);
	if (rc < 0) {
		omr_err_wrap(err, "recipe %s produced an invalid template", recipe);
		goto fail;
	}
	say(progress, user, "installing");
	rc = install_build(tfd, abs_tdir, tmp_name, name, err);
	if (rc < 0)
		goto fail;
	return 0;
fail:
	omr_rm_rf_at(tfd, tmp_name);
	return rc;
}
