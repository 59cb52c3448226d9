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

static int cmd_build(struct omr_config *c, const char *name, const struct omr_template_src *src,
		     int json, int quiet)
{
	struct progress p = { name, omr_now_ms() };
	struct omr_template *t = NULL;
	struct omr_err *err = NULL;
	_cleanup_free_ char *why = NULL;
	char size[16];

	if (omr_template_make(c, name, src, quiet ? NULL : on_progress, &p, &t, &why, &err) < 0)
		return omr_cli_fail(&err);
	if (why && !quiet)
		fprintf(stderr, "%s: %s: no snapshot: %s\n", omr_cli_prog(), name, why);
	if (json) {
		omr_cli_print_json(omr_template_json(c, t));
	} else if (!quiet) {
		omr_format_size(t->size_bytes, size);
		printf("%s: kernel %s, %s, built in %.1f s\n", t->name, t->kernel_version, size,
		       (double)(omr_now_ms() - p.t0) / 1000);
	}
	omr_template_free(t);
	return OMR_EXIT_OK;
}

/* The package list's first 40 characters, for a terminal line (the whole
 * is in --json): "-" when there is none, "..." after a cut. */
static const char *packages_start(json_t *pk, char buf[48])
{
	size_t i, len = 0;
	json_t *w;

	buf[0] = '\0';
	json_array_foreach(pk, i, w) {
		int n = snprintf(buf + len, 48 - len, "%s%s", i ? " " : "", json_string_value(w));
		if (n < 0)
			break;
		if (len + (size_t)n > 40) {
			strcpy(buf + 40, "..."); /* what came before was 40 long at least */
			return buf;
		}
		len += (size_t)n;
	}
	return len ? buf : "-";
}

/* The table reads the same JSON as --json. */
static int cmd_ls(struct omr_config *c, int json)
{
	struct omr_err *err = NULL;
	json_t *a = omr_template_list_json(c, &err), *t;
	size_t i;

	if (!a)
		return omr_cli_fail(&err);
	if (json) {
		omr_cli_print_json(a);
		return OMR_EXIT_OK;
	}
	printf("%-14s %-10s %8s  %-20s  %-8s  %s\n", "NAME", "BASE", "SIZE", "BUILT", "SNAPSHOT",
	       "PACKAGES");
	json_array_foreach(a, i, t) {
		const char *base = json_string_value(json_object_get(t, "base"));
		json_t *snap = json_object_get(t, "snapshot");
		char size[16], pk[48];

		omr_format_size((uint64_t)json_integer_value(json_object_get(t, "size_bytes")), size);
		printf("%-14s %-10s %8s  %-20s  %-8s  %s\n",
		       json_string_value(json_object_get(t, "name")), base ? base : "initramfs", size,
		       json_string_value(json_object_get(t, "built_at")),
		       json_is_true(json_object_get(snap, "usable")) ? "yes" : "no",
		       packages_start(json_object_get(t, "packages"), pk));
	}
	json_decref(a);
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
		omr_cli_print_json(omr_template_json(c, t));
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

/* Each command: its operands, and the options it takes (any other given
 * is a usage error naming the ones it refuses). */
enum { O_FROM = 1, O_FORCE = 2, O_JSON = 4, O_QUIET = 8, O_NOSNAP = 16 };
static const struct command {
	const char *name;
	int nargs;
	const char *args;
	int opts;
	const char *refused;
} commands[] = {
	{ "build", 1, "one template name", O_FROM | O_JSON | O_QUIET | O_NOSNAP,
	  "--force" },
	{ "import", 2, "a template name and a directory or image", O_JSON | O_QUIET,
	  "--from, --force or --no-snapshot" },
	{ "snapshot", 1, "one template name", O_JSON | O_QUIET,
	  "--from, --force or --no-snapshot" },
	{ "rm", 1, "one template name", O_FORCE, "--json, --quiet, --from or --no-snapshot" },
	{ "ls", 0, "no arguments", O_JSON, "--quiet, --from, --force or --no-snapshot" },
	{ "list", 0, "no arguments", O_JSON, "--quiet, --from, --force or --no-snapshot" },
};

static const struct command *command(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	omr_cli_usage_error(OMR_EXIT_USAGE, "unknown command '%s'", name);
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
	struct omr_template_src src = { 0 };
	int json = 0, quiet = 0, force = 0, snap = 1, ch, rc;
	const char *from = NULL;
	const struct command *cmd;
	struct omr_config *c;

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
	cmd = command(argv[optind++]);
	if (argc - optind != cmd->nargs)
		omr_cli_usage_error(OMR_EXIT_USAGE, "%s takes %s", cmd->name, cmd->args);
	if ((from && !(cmd->opts & O_FROM)) || (force && !(cmd->opts & O_FORCE)) ||
	    (json && !(cmd->opts & O_JSON)) || (quiet && !(cmd->opts & O_QUIET)) ||
	    (!snap && !(cmd->opts & O_NOSNAP)))
		omr_cli_usage_error(OMR_EXIT_USAGE, "%s takes no %s", cmd->name, cmd->refused);

	c = omr_cli_config();
	src.snapshot = snap;
	if (!strcmp(cmd->name, "build")) {
		src.recipe = from;
		rc = cmd_build(c, argv[optind], &src, json, quiet);
	} else if (!strcmp(cmd->name, "import")) {
		src.import = argv[optind + 1];
		src.snapshot = 0;
		rc = cmd_build(c, argv[optind], &src, json, quiet);
	} else if (!strcmp(cmd->name, "snapshot")) {
		rc = cmd_snapshot(c, argv[optind], json, quiet);
	} else if (!strcmp(cmd->name, "rm")) {
		rc = cmd_rm(c, argv[optind], force);
	} else {
		rc = cmd_ls(c, json);
	}
	omr_config_free(c);
	return rc;
}
