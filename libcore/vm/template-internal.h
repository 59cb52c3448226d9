/* Shared by the three parts of the template store (template-conf.c,
 * template-store.c, template-build.c); not part of the API.
 *
 * Layout under $state_dir/templates/:
 *   NAME/                  an installed template (template.conf + files)
 *   .NAME.lock             flock'ed by whoever builds or removes NAME
 *   .NAME.build.XXXXXX     a build in progress (0700, never visible as NAME)
 *   .NAME.old.XXXXXX       the previous build, being deleted
 * Names never contain '.', so ".NAME." prefixes cannot collide. */
#ifndef OMNIRUN_VM_TEMPLATE_INTERNAL_H
#define OMNIRUN_VM_TEMPLATE_INTERNAL_H

#include <stdint.h>

#include "omnirun/vm/template.h"

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

/* What template.conf says, file names still relative. */
struct tconf {
	char *name, *kernel, *initrd, *rootfs, *kernel_version, *cmdline, *base;
	uint64_t cpus, memory_mb, disk_mb, built_at, size_bytes;
	int have_size;
	unsigned seen;           /* bit per key: duplicates are errors */
	struct omr_err **err;
	int rc;
};

/* "invalid template name" (usage) unless name is valid. */
int tpl_check_name(const char *name, struct omr_err **err);
/* p made absolute against the working directory (malloc'ed). */
char *tpl_abs_path(const char *p);
/* $state_dir/templates (malloc'ed). */
char *tpl_dir(const struct omr_config *c);
void tpl_conf_clear(struct tconf *t);
/* Parses template.conf text into *t; returns 0 or < 0. */
int tpl_conf_parse(const char *text, struct tconf *t, struct omr_err **err);
/* template.conf text for t (malloc'ed). */
char *tpl_conf_format(const struct tconf *t);
/* Parses and checks template.conf in dfd (the directory at abs_dir) for a
 * template called name.  Fills *conf (relative names) and *out. */
int tpl_load_dir(int dfd, const char *abs_dir, const char *name, struct tconf *conf,
		 struct omr_template **out, struct omr_err **err);
/* flock of .NAME.lock under tfd; returns the fd or < 0. */
int tpl_lock(int tfd, const char *name, struct omr_err **err);
/* Removes tfd/name, first unmounting what a killed build left mounted
 * below it, and never crossing into another filesystem. */
void tpl_rm_tree(int tfd, const char *name);
/* Removes .NAME.build.* and .NAME.old.* under tfd. */
void tpl_remove_leftovers(int tfd, const char *name);

/* An INI recipe (guest/templates/NAME/recipe, or --from FILE):
 *   [template]  suite, packages (required); npm (NAME@VERSION), cpus,
 *               memory_mb, disk_mb, workdir (default /workspace),
 *               description.  packages and npm may span indented lines.
 *   [env]       NAME = value, for every command
 *   [files]     /path/in/image = file (relative to the recipe's directory)
 *   [services]  name = command, run as root at boot, waited for
 * Anything else is an error. */
struct recipe {
	char *description, *suite, *packages, *npm, *workdir;
	uint64_t cpus, memory_mb, disk_mb;
	char **env, **services, **files_src, **files_dst;
	size_t nenv, nservices, nfiles;
	unsigned seen;
	const char *base_dir;
	struct omr_err **err;
	int rc;
};
/* 1 unless path is a script ("#!"): the tiny template's recipe is one. */
int tpl_recipe_is_ini(const char *path);
int tpl_recipe_parse(const char *path, struct recipe *r, struct omr_err **err);
void tpl_recipe_clear(struct recipe *r);

/* A build in progress: the store locked for NAME, and a fresh build dir
 * (.NAME.build.XXXXXX) that only tpl_build_finish makes visible. */
struct tpl_build {
	int tfd, lock;
	char *abs_tdir, *tmp_path, *tmp_name;
};
int tpl_build_start(const struct omr_config *c, const char *name, struct tpl_build *b,
		    struct omr_err **err);
/* Validates the build dir, stamps template.conf and renames it into place. */
int tpl_build_finish(struct tpl_build *b, const char *name, struct omr_err **err);
/* Removes the build dir (unmounting what a killed build left below it). */
void tpl_build_abort(struct tpl_build *b);
void tpl_build_free(struct tpl_build *b);
/* Runs argv with its output captured (progress: lines to progress), in
 * its own process group, bounded by BUILD_TIMEOUT_S. */
/* A build script's environment: tpl_env_new(own) has room for `own`
 * entries of the caller and the allowed ones of the caller's environment,
 * which tpl_env_finish(env, n) adds after the n set and ends with NULL. */
char **tpl_env_new(size_t own);
char **tpl_env_finish(char **env, size_t n);

int tpl_run(char *const argv[], char *const envp[], const char *cwd, omr_progress_fn progress,
	    void *user, struct omr_err **err);

/* The filesystem type libblkid finds in the image at path ("ext4",
 * "erofs", "squashfs"), malloc'ed; anything else is refused. */
int tpl_probe_image(const char *path, char **type, struct omr_err **err);

#endif
