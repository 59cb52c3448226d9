/* Templates with a root filesystem image (DESIGN.md §5): built from an
 * INI recipe (mmdebstrap into a directory, then mkfs.ext4 -d, both in
 * guest/templates/build-rootfs.sh) or imported; checked with libblkid;
 * kernel and initramfs are the tiny template's, hard-linked.  The guest
 * mounts the image read-only under an overlay on its encrypted disk
 * (guest/agent/root.c). */
#include <blkid/blkid.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/base/spawn.h"
#include "omnirun/base/util.h"
#include "omnirun/vm/template.h"
#include "template-internal.h"

#define BASE_TEMPLATE "tiny"
#define ROOT_SERIAL "omnirun-root"
#define IMAGE_NAME "rootfs.img"

int tpl_probe_image(const char *path, char **type, struct omr_err **err)
{
	static const char *const ok[] = { "ext4", "erofs", "squashfs" };
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	blkid_probe pr;
	const char *val = NULL;
	int rc;

	if (fd < 0)
		return omr_err_set(err, omr_err_kind_missing(errno), errno, "cannot open %s", path);
	pr = blkid_new_probe();
	if (!pr || blkid_probe_set_device(pr, fd, 0, 0) < 0) {
		if (pr)
			blkid_free_probe(pr);
		return omr_err_setx(err, OMR_E_FAIL, EIO, "libblkid cannot probe %s", path);
	}
	blkid_probe_enable_superblocks(pr, 1);
	blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE);
	rc = blkid_do_safeprobe(pr);
	if (rc == 0 && blkid_probe_lookup_value(pr, "TYPE", &val, NULL) == 0 && val) {
		for (size_t i = 0; i < OMR_ARRAY_SIZE(ok); i++)
			if (!strcmp(val, ok[i])) {
				*type = omr_xstrdup(val);
				blkid_free_probe(pr);
				return 0;
			}
		rc = omr_err_setx(err, OMR_E_UNSUPPORTED, ENOTSUP,
				  "%s holds a %s filesystem: want ext4, erofs or squashfs", path, val);
	} else {
		rc = omr_err_setx(err, OMR_E_UNSUPPORTED, ENOTSUP,
				  "%s holds no filesystem libblkid knows%s: want ext4, erofs or squashfs",
				  path, rc == -2 ? " (ambiguous)" : "");
	}
	blkid_free_probe(pr);
	return rc;
}

/* Hard links (or, across filesystems, copies) tiny's kernel and
 * initramfs into the build; *kver gets its kernel version. */
static int share_kernel(const struct omr_config *c, const struct omr_template *tiny, int bfd,
			struct omr_err **err)
{
	static const char *const names[] = { "vmlinuz", "initrd.img" };
	const char *src[] = { tiny->kernel, tiny->initrd };

	(void)c;
	for (size_t i = 0; i < 2; i++) {
		if (linkat(AT_FDCWD, src[i], bfd, names[i], 0) == 0)
			continue;
		if (errno != EXDEV && errno != EPERM)
			return omr_err_set(err, OMR_E_FAIL, errno, "cannot link %s", src[i]);
		_cleanup_close_ int in = open(src[i], O_RDONLY | O_CLOEXEC);
		_cleanup_close_ int out = openat(bfd, names[i], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
						 0644);
		struct stat st;
		if (in < 0 || out < 0 || fstat(in, &st) < 0)
			return omr_err_set(err, OMR_E_FAIL, errno, "cannot copy %s", src[i]);
		for (off_t left = st.st_size; left > 0;) {
			ssize_t n = copy_file_range(in, NULL, out, NULL, (size_t)left, 0);
			if (n <= 0)
				return omr_err_set(err, OMR_E_FAIL, n < 0 ? errno : EIO, "cannot copy %s",
						   src[i]);
			left -= n;
		}
	}
	return 0;
}

/* tiny, built first if it is not there yet: it has the kernel. */
static int load_base(const struct omr_config *c, omr_progress_fn progress, void *user,
		     struct omr_template **tiny, struct omr_err **err)
{
	if (omr_template_load(c, BASE_TEMPLATE, tiny, NULL) == 0)
		return 0;
	if (progress)
		progress(user, "building the tiny template first (its kernel and initramfs are shared)");
	if (omr_template_build(c, BASE_TEMPLATE, progress, user, err) < 0)
		return omr_err_wrap(err, "template '%s'", BASE_TEMPLATE);
	return omr_template_load(c, BASE_TEMPLATE, tiny, err);
}

/* Kernel, initramfs, template.conf around the image the build dir holds. */
static int complete(const struct omr_config *c, struct tpl_build *b, const char *name,
		    const struct omr_template *tiny, const char *base, const struct recipe *r,
		    struct omr_err **err)
{
	_cleanup_free_ char *img = omr_strdup_printf("%s/" IMAGE_NAME, b->tmp_path);
	_cleanup_free_ char *type = NULL, *text = NULL;
	_cleanup_close_ int bfd = -1;
	struct tconf t = { 0 };
	int rc;

	if ((rc = tpl_probe_image(img, &type, err)) < 0)
		return omr_err_wrap(err, "the built image");
	bfd = openat(b->tfd, b->tmp_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (bfd < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot open %s", b->tmp_path);
	if ((rc = share_kernel(c, tiny, bfd, err)) < 0)
		return rc;
	if (r && r->packages &&
	    (rc = omr_write_file_atomic_at(bfd, "packages", r->packages, strlen(r->packages), 0644,
					   err)) < 0)
		return rc;
	t.name = omr_xstrdup(name);
	t.kernel = omr_xstrdup("vmlinuz");
	t.initrd = omr_xstrdup("initrd.img");
	t.rootfs = omr_xstrdup(IMAGE_NAME);
	t.kernel_version = omr_xstrdup(tiny->kernel_version);
	t.cmdline = omr_strdup_printf("omnirun.root=" ROOT_SERIAL " omnirun.rootfstype=%s", type);
	t.base = omr_xstrdup(base);
	t.cpus = r && r->cpus ? r->cpus : tiny->cpus;
	t.memory_mb = r && r->memory_mb ? r->memory_mb : 1024;
	t.disk_mb = r && r->disk_mb ? r->disk_mb : 2048;
	text = tpl_conf_format(&t);
	tpl_conf_clear(&t);
	rc = omr_write_file_atomic_at(bfd, CONF_NAME, text, strlen(text), 0644, err);
	if (rc < 0)
		return rc;
	return tpl_build_finish(b, name, err);
}

static char *write_temp(const char *dir, const char *name, const char *text)
{
	char *p = omr_strdup_printf("%s/%s", dir, name);
	_cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dfd < 0 || omr_write_file_atomic_at(dfd, name, text, strlen(text), 0600, NULL) < 0) {
		free(p);
		return NULL;
	}
	return p;
}

/* guest.conf for the agent: user, env, services (guest/agent/root.c). */
static char *guest_conf(const struct recipe *r)
{
	char *s = omr_xstrdup("user=user\n"), *n;

	for (size_t i = 0; i < r->nenv; i++, free(s), s = n)
		n = omr_strdup_printf("%senv=%s\n", s, r->env[i]);
	for (size_t i = 0; i < r->nservices; i++, free(s), s = n)
		n = omr_strdup_printf("%sservice=%s\n", s, r->services[i]);
	return s;
}

static char *files_list(const struct recipe *r)
{
	char *s = omr_xstrdup(""), *n;

	for (size_t i = 0; i < r->nfiles; i++, free(s), s = n)
		n = omr_strdup_printf("%s%s\t%s\n", s, r->files_src[i], r->files_dst[i]);
	return s;
}

static char **rootfs_env(const struct omr_config *c, const struct recipe *r, const char *out,
			 const char *gconf, const char *files)
{
	_cleanup_free_ char *cache = tpl_abs_path(c->cache_dir);
	char **env = tpl_env_new(15);
	size_t n = 0;

	env[n++] = omr_strdup_printf("PATH=%s", CLEAN_PATH);
	env[n++] = omr_xstrdup("HOME=/root");
	env[n++] = omr_xstrdup("LC_ALL=C");
	env[n++] = omr_strdup_printf("OUT=%s", out);
	env[n++] = omr_strdup_printf("CACHE=%s", cache);
	env[n++] = omr_strdup_printf("SUITE=%s", r->suite);
	env[n++] = omr_strdup_printf("PACKAGES=%s", r->packages);
	env[n++] = omr_strdup_printf("NPM=%s", r->npm ? r->npm : "");
	env[n++] = omr_strdup_printf("WORKDIR=%s", r->workdir);
	env[n++] = omr_strdup_printf("GUEST_CONF=%s", gconf);
	env[n++] = omr_strdup_printf("FILES=%s", files);
	return tpl_env_finish(env, n);
}

int omr_template_build_from(const struct omr_config *c, const char *name,
			    const char *recipe_path, omr_progress_fn progress, void *user,
			    struct omr_err **err)
{
	_cleanup_free_ char *recipe = NULL, *script = NULL, *gtext = NULL, *ftext = NULL;
	_cleanup_free_ char *gconf = NULL, *files = NULL, *cache = NULL, *recipes = NULL;
	struct omr_template *tiny = NULL;
	struct recipe r;
	struct tpl_build b = { .tfd = -1, .lock = -1 };
	char **env = NULL;
	int rc, started = 0;

	if ((rc = tpl_check_name(name, err)) < 0)
		return rc;
	if (!strcmp(name, BASE_TEMPLATE))
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "'%s' is built from its own recipe",
				    BASE_TEMPLATE);
	recipe = realpath(recipe_path, NULL);
	if (!recipe)
		return omr_err_set(err, omr_err_kind_missing(errno), errno, "recipe %s", recipe_path);
	if ((rc = tpl_recipe_parse(recipe, &r, err)) < 0)
		return rc;
	recipes = tpl_abs_path(c->recipes_dir);
	script = omr_strdup_printf("%s/build-rootfs.sh", recipes);
	if (access(script, X_OK) < 0) {
		rc = omr_err_set(err, OMR_E_FAIL, errno, "%s", script);
		goto out;
	}
	cache = tpl_abs_path(c->cache_dir);
	if ((rc = omr_mkdir_p(cache, 0755, err)) < 0 ||
	    (rc = load_base(c, progress, user, &tiny, err)) < 0 ||
	    (rc = tpl_build_start(c, name, &b, err)) < 0)
		goto out;
	started = 1;
	gtext = guest_conf(&r);
	ftext = files_list(&r);
	gconf = write_temp(b.tmp_path, ".guest.conf", gtext);
	files = write_temp(b.tmp_path, ".files", ftext);
	if (!gconf || !files) {
		rc = omr_err_set(err, OMR_E_FAIL, errno, "cannot write in %s", b.tmp_path);
		goto out;
	}
	env = rootfs_env(c, &r, b.tmp_path, gconf, files);
	rc = tpl_run((char *[]){ script, NULL }, env, b.tmp_path, progress, user, err);
	omr_argv_free(env);
	if (rc < 0)
		goto out;
	unlink(gconf);
	unlink(files);
	if (progress)
		progress(user, "checking the image and installing the template");
	rc = complete(c, &b, name, tiny, r.suite, &r, err);
out:
	if (rc < 0 && started)
		tpl_build_abort(&b);
	else
		tpl_build_free(&b);
	omr_template_free(tiny);
	tpl_recipe_clear(&r);
	return rc;
}

int omr_template_import(const struct omr_config *c, const char *name, const char *path,
			omr_progress_fn progress, void *user, struct omr_err **err)
{
	_cleanup_free_ char *src = NULL, *img = NULL, *type = NULL;
	struct omr_template *tiny = NULL;
	struct tpl_build b = { .tfd = -1, .lock = -1 };
	struct stat st;
	int rc, started = 0;

	if ((rc = tpl_check_name(name, err)) < 0)
		return rc;
	if (!strcmp(name, BASE_TEMPLATE))
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "'%s' cannot be replaced by an import",
				    BASE_TEMPLATE);
	src = realpath(path, NULL);
	if (!src || stat(src, &st) < 0)
		return omr_err_set(err, omr_err_kind_missing(errno), errno, "%s", path);
	if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "%s is neither a directory nor an image",
				    path);
	/* An image is checked before anything is made. */
	if (S_ISREG(st.st_mode) && (rc = tpl_probe_image(src, &type, err)) < 0)
		return rc;
	if ((rc = load_base(c, progress, user, &tiny, err)) < 0 ||
	    (rc = tpl_build_start(c, name, &b, err)) < 0)
		goto out;
	started = 1;
	img = omr_strdup_printf("%s/" IMAGE_NAME, b.tmp_path);
	if (S_ISDIR(st.st_mode)) {
		/* Sized like build-rootfs.sh does: the files plus a fifth. */
		_cleanup_free_ char *cmd = omr_strdup_printf(
			"set -e; used=$(du -sxm \"$SRC\" | cut -f1); n=$(find \"$SRC\" -xdev | wc -l); "
			"truncate -s $((used + used / 5 + 64))M \"$IMG\"; "
			"mkfs.ext4 -q -F -O ^has_journal -m 0 -N $((n + n / 5 + 1024)) -L omnirun-root "
			"-d \"$SRC\" \"$IMG\"");
		_cleanup_free_ char *e1 = omr_strdup_printf("SRC=%s", src);
		_cleanup_free_ char *e2 = omr_strdup_printf("IMG=%s", img);
		_cleanup_free_ char *e3 = omr_strdup_printf("PATH=%s", CLEAN_PATH);
		if (progress)
			progress(user, "making an ext4 image of the directory");
		rc = tpl_run((char *[]){ "/bin/sh", "-c", cmd, NULL },
			     (char *[]){ e1, e2, e3, "LC_ALL=C", NULL }, b.tmp_path, progress, user, err);
	} else {
		_cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC);
		_cleanup_close_ int out = open(img, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (progress)
			progress(user, "copying the image");
		rc = in < 0 || out < 0 ? omr_err_set(err, OMR_E_FAIL, errno, "cannot copy %s", src) : 0;
		for (off_t left = st.st_size; rc == 0 && left > 0;) {
			ssize_t n = copy_file_range(in, NULL, out, NULL, (size_t)left, 0);
			if (n <= 0)
				rc = omr_err_set(err, OMR_E_FAIL, n < 0 ? errno : EIO, "cannot copy %s", src);
			else
				left -= n;
		}
	}
	if (rc < 0)
		goto out;
	if (progress)
		progress(user, "checking the image and installing the template");
	rc = complete(c, &b, name, tiny, "import", NULL, err);
out:
	if (rc < 0 && started)
		tpl_build_abort(&b);
	else
		tpl_build_free(&b);
	omr_template_free(tiny);
	return rc;
}
