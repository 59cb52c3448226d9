/* sbx-template: build, list and remove sandbox templates. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/base/exitcodes.h"
#include "omnirun/vm/snapshot.h"
#include "omnirun/vm/template.h"
#include "omnirun/base/util.h"

__attribute__((noreturn)) static void usage(void)
{
	printf("Usage:\n"
	       " %1$s build NAME [--from FILE] [--no-snapshot] [--json] [--quiet]\n"
	       " %1$s import NAME DIR|IMAGE [--json] [--quiet]\n"
	       " %1$s snapshot NAME [--json] [--quiet]\n"
	       " %1$s ls [--json]\n"
	       " %1$s rm NAME [--force]\n"
	       "\n"
	       "Build sandbox templates from their recipes, import root filesystems,\n"
	       "snapshot them (a booted template that sandboxes start from in\n"
	       "milliseconds), list and remove templates.  Names: 1 to 32 of a-z, 0-9 and -.\n"
	       "\n"
	       "Options:\n"
	       " -f, --from FILE    build from this recipe instead of the shipped one\n"
	       "     --force        remove even while sandboxes use the template\n"
	       "     --no-snapshot  build without the snapshot build makes by default\n"
	       " -j, --json         print the result as JSON\n"
	       " -q, --quiet        build without progress lines or summary\n"
	       " -h, --help         display this help\n"
	       " -V, --version      display version\n"
	       "\n"
	       "See sbx-template(1).\n", omr_cli_prog());
	exit(OMR_EXIT_OK);
}

static void human_size(uint64_t n, char buf[16])
{
	static const char units[] = "BKMGT";
	double v = (double)n;
	int u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, 16, "%lluB", (unsigned long long)n);
	else
		snprintf(buf, 16, "%.1f%c", v, units[u]);
}

/* The template's snapshot as JSON: whether it has one that fits what
 * would run now, and why not. */
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

static const struct omr_config *cfg;

static json_t *template_json(const struct omr_template *t)
{
	json_t *pk = json_array();
	char built[32];
	json_t *j;

	omr_format_time(t->built_at, built);
	if (t->packages) {
		_cleanup_free_ char *copy = omr_xstrdup(t->packages);
		for (char *w = strtok(copy, " "); w; w = strtok(NULL, " "))
			json_array_append_new(pk, json_string(w));
	}
	j = json_pack("{s:s, s:s, s:s, s:s, s:s?, s:s, s:s, s:s?, s:o, s:I, s:I, s:I, s:I, s:s}",
			 "name", t->name, "dir", t->dir, "kernel", t->kernel,
			 "initrd", t->initrd, "rootfs", t->rootfs,
			 "kernel_version", t->kernel_version, "cmdline", t->cmdline,
			 "base", t->base, "packages", pk,
			 "cpus", (json_int_t)t->cpus, "memory_mb", (json_int_t)t->memory_mb,
			 "disk_mb", (json_int_t)t->disk_mb, "size_bytes", (json_int_t)t->size_bytes,
			 "built_at", built);
	json_object_set_new(j, "snapshot", snapshot_json(cfg, t));
	return j;
}

struct progress {
	const char *name;
	uint64_t t0;
};

static void on_progress(void *user, const char *what)
{
	const struct progress *p = user;

	fprintf(stderr, "%s: %s: [%6.1f s] %s\n", omr_cli_prog(), p->name,
		(double)(omr_now_ms() - p->t0) / 1000, what);
}

/* from: a recipe file (build --from), path: a directory or image (import). */
static int cmd_build(struct omr_config *c, const char *name, const char *from, const char *path,
		     int json, int quiet, int snap)
{
	struct progress p = { name, omr_now_ms() };
	struct omr_template *t = NULL;
	struct omr_err *err = NULL;
	omr_progress_fn fn = quiet ? NULL : on_progress;
	char size[16];
	int rc;

	if (path)
		rc = omr_template_import(c, name, path, fn, &p, &err);
	else if (from)
		rc = omr_template_build_from(c, name, from, fn, &p, &err);
	else
		rc = omr_template_build(c, name, fn, &p, &err);
	if (rc < 0 || omr_template_load(c, name, &t, &err) < 0)
		return omr_cli_fail(&err);
	/* A template without a snapshot still works (cold boots): a QEMU
	 * that cannot make one, or a failed boot, is said, not fatal. */
	if (snap && !t->rootfs && omr_snapshot_make(c, name, fn, &p, &err) < 0) {
		if (!quiet)
			fprintf(stderr, "%s: %s: no snapshot: %s\n", omr_cli_prog(), name, err->msg);
		omr_err_free(&err);
	}
	if (json) {
		omr_cli_print_json(template_json(t));
	} else if (!quiet) {
		human_size(t->size_bytes, size);
		printf("%s: kernel %s, %s, built in %.1f s\n", t->name, t->kernel_version, size,
		       (double)(omr_now_ms() - p.t0) / 1000);
	}
	omr_template_free(t);
	return OMR_EXIT_OK;
}

static int cmd_ls(struct omr_config *c, int json)
{
	struct omr_template **v = NULL;
	struct omr_err *err = NULL;
	size_t n = 0;

	if (omr_template_list(c, &v, &n, &err) < 0)
		return omr_cli_fail(&err);
	if (json) {
		json_t *a = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(a, template_json(v[i]));
		omr_cli_print_json(a);
	} else {
		printf("%-14s %-10s %8s  %-20s  %-8s  %s\n", "NAME", "BASE", "SIZE", "BUILT", "SNAPSHOT",
		       "PACKAGES");
		for (size_t i = 0; i < n; i++) {
			char size[16], built[32];
			const char *pk = v[i]->packages ? v[i]->packages : "-";
			json_t *s = snapshot_json(c, v[i]);
			human_size(v[i]->size_bytes, size);
			omr_format_time(v[i]->built_at, built);
			/* The list is long: a terminal line shows its start; why a
			 * snapshot does not fit is in --json. */
			printf("%-14s %-10s %8s  %-20s  %-8s  %.40s%s\n", v[i]->name,
			       v[i]->base ? v[i]->base : "initramfs", size, built,
			       json_is_true(json_object_get(s, "usable")) ? "yes" : "no", pk,
			       strlen(pk) > 40 ? "..." : "");
			json_decref(s);
		}
	}
	omr_template_list_free(v, n);
	return OMR_EXIT_OK;
}

static int cmd_snapshot(struct omr_config *c, const char *name, int json, int quiet)
{
	struct progress p = { name, omr_now_ms() };
	struct omr_template *t = NULL;
	struct omr_err *err = NULL;

	if (omr_snapshot_make(c, name, quiet ? NULL : on_progress, &p, &err) < 0 ||
	    omr_template_load(c, name, &t, &err) < 0)
		return omr_cli_fail(&err);
	if (json)
		omr_cli_print_json(template_json(t));
	else if (!quiet)
		printf("%s: snapshot made in %.1f s\n", t->name, (double)(omr_now_ms() - p.t0) / 1000);
	omr_template_free(t);
	return OMR_EXIT_OK;
}

static int cmd_rm(struct omr_config *c, const char *name, int force)
{
	struct omr_err *err = NULL;

	if (omr_template_remove(c, name, force, &err) < 0)
		return omr_cli_fail(&err);
	return OMR_EXIT_OK;
}

int main(int argc, char **argv)
{
	enum { OPT_FORCE = 256, OPT_NO_SNAPSHOT };
	static const struct option opts[] = {
		{ "from", required_argument, NULL, 'f' },
		{ "force", no_argument, NULL, OPT_FORCE },
		{ "json", no_argument, NULL, 'j' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "no-snapshot", no_argument, NULL, OPT_NO_SNAPSHOT },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int json = 0, quiet = 0, force = 0, snap = 1, ch, rc, nargs;
	const char *from = NULL;
	struct omr_config *c;
	const char *cmd;

	omr_cli_init(argv[0]);
	while ((ch = getopt_long(argc, argv, "f:jqhV", opts, NULL)) != -1) {
		switch (ch) {
		case 'f': from = optarg; break;
		case OPT_FORCE: force = 1; break;
		case 'j': json = 1; break;
		case 'q': quiet = 1; break;
		case OPT_NO_SNAPSHOT: snap = 0; break;
		case 'h': usage();
		case 'V': omr_cli_version();
		default: omr_cli_usage_error(OMR_EXIT_USAGE, NULL);
		}
	}
	if (optind >= argc)
		omr_cli_usage_error(OMR_EXIT_USAGE, "no command given (build, import, snapshot, ls or rm)");
	cmd = argv[optind++];
	nargs = argc - optind;
	if (!snap && strcmp(cmd, "build"))
		omr_cli_usage_error(OMR_EXIT_USAGE, "only build takes --no-snapshot");
	if (!strcmp(cmd, "snapshot") && (from || force))
		omr_cli_usage_error(OMR_EXIT_USAGE, "snapshot takes no --from or --force");
	if (!strcmp(cmd, "build") || !strcmp(cmd, "rm") || !strcmp(cmd, "snapshot")) {
		if (nargs != 1)
			omr_cli_usage_error(OMR_EXIT_USAGE, "%s takes one template name", cmd);
		if (!strcmp(cmd, "rm") && (json || quiet || from))
			omr_cli_usage_error(OMR_EXIT_USAGE, "rm takes no --json, --quiet or --from");
		if (!strcmp(cmd, "build") && force)
			omr_cli_usage_error(OMR_EXIT_USAGE, "build takes no --force");
	} else if (!strcmp(cmd, "import")) {
		if (nargs != 2)
			omr_cli_usage_error(OMR_EXIT_USAGE, "import takes a template name and a directory "
					    "or image");
		if (from || force)
			omr_cli_usage_error(OMR_EXIT_USAGE, "import takes no --from or --force");
	} else if (!strcmp(cmd, "ls") || !strcmp(cmd, "list")) {
		if (nargs != 0)
			omr_cli_usage_error(OMR_EXIT_USAGE, "ls takes no arguments");
		if (quiet || from || force)
			omr_cli_usage_error(OMR_EXIT_USAGE, "ls takes no --quiet, --from or --force");
	} else {
		omr_cli_usage_error(OMR_EXIT_USAGE, "unknown command '%s'", cmd);
	}

	c = omr_cli_config();
	cfg = c;
	if (!strcmp(cmd, "build"))
		rc = cmd_build(c, argv[optind], from, NULL, json, quiet, snap);
	else if (!strcmp(cmd, "import"))
		rc = cmd_build(c, argv[optind], NULL, argv[optind + 1], json, quiet, 0);
	else if (!strcmp(cmd, "snapshot"))
		rc = cmd_snapshot(c, argv[optind], json, quiet);
	else if (!strcmp(cmd, "rm"))
		rc = cmd_rm(c, argv[optind], force);
	else
		rc = cmd_ls(c, json);
	omr_config_free(c);
	return rc;
}
