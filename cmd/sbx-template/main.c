/* sbx-template: build, list and remove sandbox templates. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "omnirun/base/exitcodes.h"
#include "omnirun/vm/template.h"
#include "omnirun/base/util.h"

__attribute__((noreturn)) static void usage(void)
{
	printf("Usage:\n"
	       " %1$s build NAME [--json] [--quiet]\n"
	       " %1$s ls [--json]\n"
	       " %1$s rm NAME\n"
	       "\n"
	       "Build sandbox templates from their recipes, list and remove them.\n"
	       "\n"
	       "Options:\n"
	       " -j, --json      print the result as JSON\n"
	       " -q, --quiet     build without progress lines or summary\n"
	       " -h, --help      display this help\n"
	       " -V, --version   display version\n"
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

static json_t *template_json(const struct omr_template *t)
{
	char built[32];

	omr_format_time(t->built_at, built);
	return json_pack("{s:s, s:s, s:s, s:s, s:s?, s:s, s:s, s:I, s:I, s:I, s:I, s:s}",
			 "name", t->name, "dir", t->dir, "kernel", t->kernel,
			 "initrd", t->initrd, "rootfs", t->rootfs,
			 "kernel_version", t->kernel_version, "cmdline", t->cmdline,
			 "cpus", (json_int_t)t->cpus, "memory_mb", (json_int_t)t->memory_mb,
			 "disk_mb", (json_int_t)t->disk_mb, "size_bytes", (json_int_t)t->size_bytes,
			 "built_at", built);
}

static void on_progress(void *user, const char *what)
{
	fprintf(stderr, "%s: %s: %s...\n", omr_cli_prog(), (const char *)user, what);
}

static int cmd_build(struct omr_config *c, const char *name, int json, int quiet)
{
	struct omr_template *t = NULL;
	struct omr_err *err = NULL;
	uint64_t t0 = omr_now_ms();
	char size[16];

	if (omr_template_build(c, name, quiet ? NULL : on_progress, (void *)name, &err) < 0 ||
	    omr_template_load(c, name, &t, &err) < 0)
		return omr_cli_fail(&err);
	if (json) {
		omr_cli_print_json(template_json(t));
	} else if (!quiet) {
		human_size(t->size_bytes, size);
		printf("%s: kernel %s, %s, built in %.1f s\n", t->name, t->kernel_version, size,
		       (double)(omr_now_ms() - t0) / 1000);
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
		printf("%-16s %-24s %8s  %s\n", "NAME", "KERNEL", "SIZE", "BUILT");
		for (size_t i = 0; i < n; i++) {
			char size[16], built[32];
			human_size(v[i]->size_bytes, size);
			omr_format_time(v[i]->built_at, built);
			printf("%-16s %-24s %8s  %s\n", v[i]->name, v[i]->kernel_version, size, built);
		}
	}
	omr_template_list_free(v, n);
	return OMR_EXIT_OK;
}

static int cmd_rm(struct omr_config *c, const char *name)
{
	struct omr_err *err = NULL;

	if (omr_template_remove(c, name, &err) < 0)
		return omr_cli_fail(&err);
	return OMR_EXIT_OK;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int json = 0, quiet = 0, ch, rc;
	struct omr_config *c;
	const char *cmd;

	omr_cli_init(argv[0]);
	while ((ch = getopt_long(argc, argv, "jqhV", opts, NULL)) != -1) {
		switch (ch) {
		case 'j': json = 1; break;
		case 'q': quiet = 1; break;
		case 'h': usage();
		case 'V': omr_cli_version();
		default: omr_cli_usage_error(OMR_EXIT_USAGE, NULL);
		}
	}
	if (optind >= argc)
		omr_cli_usage_error(OMR_EXIT_USAGE, "no command given (build, ls or rm)");
	cmd = argv[optind++];
	if (!strcmp(cmd, "build") || !strcmp(cmd, "rm")) {
		if (optind != argc - 1)
			omr_cli_usage_error(OMR_EXIT_USAGE, "%s takes one template name", cmd);
		if (!strcmp(cmd, "rm") && (json || quiet))
			omr_cli_usage_error(OMR_EXIT_USAGE, "rm takes no --json or --quiet");
	} else if (!strcmp(cmd, "ls") || !strcmp(cmd, "list")) {
		if (optind != argc)
			omr_cli_usage_error(OMR_EXIT_USAGE, "ls takes no arguments");
		if (quiet)
			omr_cli_usage_error(OMR_EXIT_USAGE, "ls takes no --quiet");
	} else {
		omr_cli_usage_error(OMR_EXIT_USAGE, "unknown command '%s'", cmd);
	}

	c = omr_cli_config();
	if (!strcmp(cmd, "build"))
		rc = cmd_build(c, argv[optind], json, quiet);
	else if (!strcmp(cmd, "rm"))
		rc = cmd_rm(c, argv[optind]);
	else
		rc = cmd_ls(c, json);
	omr_config_free(c);
	return rc;
}
