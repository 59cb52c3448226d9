/* Templates as sbx-template shows them (ls --json and the text table both
 * read this), and a build with its snapshot as sbx-template build makes
 * it. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/base/util.h"
#include "omnirun/vm/accel.h"
#include "omnirun/vm/snapshot.h"
#include "omnirun/vm/template.h"

/* Whether the template has a snapshot that fits what would run now, and
 * why not. */
static json_t *snapshot_json(const struct omr_config *c, const struct omr_template *t)
{
	struct omr_snapshot *s = NULL;
	enum omr_accel accel = OMR_ACCEL_TCG;
	const char *why_accel = NULL;
	_cleanup_free_ char *why = NULL;
	struct omr_err *err = NULL;
	json_t *j;

	if (omr_accel_resolve(c, &accel, &why_accel, &err) < 0)
		omr_err_free(&err);
	if (omr_snapshot_find(c, t, accel == OMR_ACCEL_KVM ? "kvm" : "tcg", 0, 0, 0, &s, &why) <= 0)
		return json_pack("{s:b, s:s}", "usable", 0, "why", why ? why : "?");
	j = json_pack("{s:b, s:s, s:s, s:i, s:i, s:i, s:I}", "usable", 1, "dir", s->dir,
		      "qemu_version", s->qemu_version ? s->qemu_version : "", "cpus", s->cpus,
		      "memory_mb", s->memory_mb, "disk_mb", s->disk_mb, "save_ms",
		      (json_int_t)s->made_ms);
	omr_snapshot_free(s);
	return j;
}

json_t *omr_template_json(const struct omr_config *c, const struct omr_template *t)
{
	json_t *pk = json_array();
	char built[32];
	json_t *j;

	omr_format_time(t->built_at, built);
	if (t->packages) {
		_cleanup_free_ char *copy = omr_xstrdup(t->packages);
		char *save = NULL;
		for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save))
			json_array_append_new(pk, json_string(w));
	}
	j = json_pack("{s:s, s:s, s:s, s:s, s:s?, s:s, s:s, s:s?, s:o, s:I, s:I, s:I, s:I, s:s}",
		      "name", t->name, "dir", t->dir, "kernel", t->kernel, "initrd", t->initrd,
		      "rootfs", t->rootfs, "kernel_version", t->kernel_version, "cmdline",
		      t->cmdline, "base", t->base, "packages", pk, "cpus", (json_int_t)t->cpus,
		      "memory_mb", (json_int_t)t->memory_mb, "disk_mb", (json_int_t)t->disk_mb,
		      "size_bytes", (json_int_t)t->size_bytes, "built_at", built);
	json_object_set_new(j, "snapshot", snapshot_json(c, t));
	return j;
}

json_t *omr_template_list_json(const struct omr_config *c, struct omr_err **err)
{
	struct omr_template **v = NULL;
	size_t n = 0;
	json_t *a;

	if (omr_template_list(c, &v, &n, err) < 0)
		return NULL;
	a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, omr_template_json(c, v[i]));
	omr_template_list_free(v, n);
	return a;
}

int omr_template_make(const struct omr_config *c, const char *name,
		      const struct omr_template_src *src, omr_progress_fn progress, void *user,
		      struct omr_template **out, char **snap_why, struct omr_err **err)
{
	struct omr_err *e = NULL;
	int rc;

	*out = NULL;
	*snap_why = NULL;
	if (src->import)
		rc = omr_template_import(c, name, src->import, progress, user, err);
	else if (src->recipe)
		rc = omr_template_build_from(c, name, src->recipe, progress, user, err);
	else
		rc = omr_template_build(c, name, progress, user, err);
	if (rc < 0)
		return -1;
	if (omr_template_load(c, name, out, err) < 0)
		return -1;
	/* A template without a snapshot still works (cold boots): a QEMU
	 * that cannot make one, or a failed boot, is said, not fatal.  A
	 * template with a root image has none (doc/snapshots.md). */
	if (src->snapshot && !(*out)->rootfs && omr_snapshot_make(c, name, progress, user, &e) < 0) {
		*snap_why = omr_xstrdup(e->msg);
		omr_err_free(&e);
	}
	return 0;
}
