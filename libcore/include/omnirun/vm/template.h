/* Templates (DESIGN.md §5): $state_dir/templates/NAME/ holds template.conf,
 * a kernel, an initramfs and optionally a rootfs image. */
#ifndef OMNIRUN_TEMPLATE_H
#define OMNIRUN_TEMPLATE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "omnirun/state/config.h"
#include "omnirun/base/err.h"

struct omr_template {
	char *name;
	char *dir;          /* absolute path of the template directory */
	char *kernel;       /* absolute paths of its files */
	char *initrd;
	char *rootfs;       /* NULL when the template is initramfs only */
	char *kernel_version;
	char *cmdline;      /* extra kernel arguments (may be "") */
	char *base;         /* what the rootfs came from: a Debian suite,
			       "import", or NULL (initramfs only) */
	char *packages;     /* the recipe's packages, space-separated, or NULL */
	unsigned cpus, memory_mb, disk_mb;  /* defaults (0: use the config's) */
	int64_t built_at;   /* seconds since the epoch */
	uint64_t size_bytes;
};

/* Template names: [a-z0-9-]{1,32}.  Returns 1 if valid. */
int omr_template_name_valid(const char *name);

/* Loads and validates NAME (template.conf parsed, files present and
 * regular).  -ENOENT with "unknown template 'NAME'" when it does not exist. */
int omr_template_load(const struct omr_config *c, const char *name,
		      struct omr_template **out, struct omr_err **err);
void omr_template_free(struct omr_template *t);

/* Lists installed templates, sorted by name. */
int omr_template_list(const struct omr_config *c, struct omr_template ***out,
		      size_t *n, struct omr_err **err);
void omr_template_list_free(struct omr_template **v, size_t n);

/* Progress callback for long work: one short line of what is happening. */
typedef void (*omr_progress_fn)(void *user, const char *what);

/* Builds NAME from its recipe in recipes_dir into a temporary directory
 * next to the final one, validates it and renames it into place
 * (replacing an older build only when the new one is whole). */
int omr_template_build(const struct omr_config *c, const char *name,
		       omr_progress_fn progress, void *user, struct omr_err **err);

/* The same from the INI recipe at recipe_path (sbx-template build --from). */
int omr_template_build_from(const struct omr_config *c, const char *name,
			    const char *recipe_path, omr_progress_fn progress, void *user,
			    struct omr_err **err);

/* Makes NAME from a root filesystem made elsewhere: a directory (made
 * into an ext4 image) or an ext4, erofs or squashfs image (libblkid
 * decides; anything else is OMR_E_UNSUPPORTED).  Kernel and initramfs
 * are tiny's. */
int omr_template_import(const struct omr_config *c, const char *name, const char *path,
			omr_progress_fn progress, void *user, struct omr_err **err);

/* Removes an installed template; OMR_E_STATE while a sandbox uses it,
 * unless force. */
int omr_template_remove(const struct omr_config *c, const char *name, int force,
			struct omr_err **err);

/* A template as JSON (what sbx-template ls --json shows): its files,
 * kernel, base, packages, shape, size, build date, and "snapshot":
 * {usable, why} or {usable, dir, qemu_version, cpus, memory_mb, disk_mb,
 * save_ms} for the accelerator this host would use. */
json_t *omr_template_json(const struct omr_config *c, const struct omr_template *t);
/* Every installed template so, sorted by name; NULL and *err. */
json_t *omr_template_list_json(const struct omr_config *c, struct omr_err **err);

/* Where a template comes from: its own recipe (both NULL), a user's
 * recipe file, or a root filesystem made elsewhere (import). */
struct omr_template_src {
	const char *recipe;
	const char *import;
	int snapshot;           /* then snapshot it (none for a root image) */
};

/* Builds or imports NAME and, when asked, snapshots it.  *out gets the
 * template.  A snapshot that could not be made does not fail the build:
 * *snap_why says why (malloc'ed), and sandboxes boot cold.  Returns 0 or
 * < 0. */
int omr_template_make(const struct omr_config *c, const char *name,
		      const struct omr_template_src *src, omr_progress_fn progress, void *user,
		      struct omr_template **out, char **snap_why, struct omr_err **err);

#endif
