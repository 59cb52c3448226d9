/* Templates: the store under $state_dir/templates (load, list, lock,
 * remove).
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/vm/template.h"
#include "template-internal.h"
#include "omnirun/base/util.h"
#include "omnirun/vm/vmm.h"
#include "omnirun/state/record.h"


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
int tpl_load_dir(int dfd, const char *abs_dir, const char *name, struct tconf *conf,
		    struct omr_template **out, struct omr_err **err)
{
	_cleanup_free_ char *text = NULL;
	struct omr_template *t;
	uint64_t size = 0;
	int rc;

	rc = omr_read_file_at(dfd, CONF_NAME, CONF_MAX, &text, NULL, err);
	if (rc < 0)
		return rc;
	if (tpl_conf_parse(text, conf, err) < 0)
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
	t->base = conf->base ? omr_xstrdup(conf->base) : NULL;
	t->packages = NULL;
	if (conf->rootfs) {
		char *pk = NULL;
		/* The recipe's package list, beside template.conf (too long for it). */
		if (omr_read_file_at(dfd, "packages", 65536, &pk, NULL, NULL) == 0) {
			pk[strcspn(pk, "\n")] = 0;
			t->packages = pk;
		}
	}
	t->built_at = (int64_t)conf->built_at;
	t->size_bytes = conf->have_size ? conf->size_bytes : size;
	*out = t;
	return 0;
}

/* Opens $state_dir/templates/NAME; *abs gets its absolute path. */
static int open_template_dir(const struct omr_config *c, const char *name, char **abs,
			     struct omr_err **err)
{
	_cleanup_free_ char *tdir = tpl_dir(c);
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

	if ((rc = tpl_check_name(name, err)) < 0)
		return rc;
	dfd = open_template_dir(c, name, &abs, err);
	if (dfd < 0)
		return dfd;
	rc = tpl_load_dir(dfd, abs, name, &conf, out, err);
	tpl_conf_clear(&conf);
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
	free(t->base);
	free(t->packages);
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
	_cleanup_free_ char *tdir = tpl_dir(c);
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
int tpl_lock(int tfd, const char *name, struct omr_err **err)
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
void tpl_remove_leftovers(int tfd, const char *name)
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
			tpl_rm_tree(tfd, de->d_name);
	closedir(d);
}

/* Sandboxes not yet stopped that run on name: how many, and the first id. */
static size_t users_of(const struct omr_config *c, const char *name, char first[64])
{
	struct omr_sandbox *v = NULL;
	struct omr_err *e = NULL;
	size_t n = 0, users = 0;

	if (omr_sandbox_list(c, &v, &n, &e) < 0) {
		omr_err_free(&e);
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		if (v[i].state == OMR_SB_STOPPED || strcmp(v[i].template_name, name))
			continue;
		if (!users++)
			omr_strlcpy(first, v[i].id, 64);
	}
	free(v);
	return users;
}

int omr_template_remove(const struct omr_config *c, const char *name, int force,
			struct omr_err **err)
{
	char first[64] = "";
	size_t users;
	_cleanup_free_ char *tdir = tpl_dir(c);
	_cleanup_free_ char *old = NULL;
	_cleanup_close_ int tfd = -1, lock = -1;
	struct stat st;
	int rc;

	if ((rc = tpl_check_name(name, err)) < 0)
		return rc;
	tfd = open(tdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (tfd < 0 && errno == ENOENT)
		goto unknown;
	if (tfd < 0)
		return omr_err_set(err, omr_err_kind_missing(errno), errno, "cannot open %s", tdir);
	if (fstatat(tfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT)
		goto unknown;
	if ((lock = tpl_lock(tfd, name, err)) < 0)
		return lock;
	/* A running sandbox keeps its open image either way; what it would
	 * lose is a restart or a clone of itself. */
	users = users_of(c, name, first);
	if (users && !force)
		return omr_err_setx(err, OMR_E_STATE, EBUSY,
				    "template '%s' is used by %zu sandbox%s (%s%s); kill %s or use --force",
				    name, users, users > 1 ? "es" : "", first, users > 1 ? ", ..." : "",
				    users > 1 ? "them" : "it");
	tpl_remove_leftovers(tfd, name);
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
