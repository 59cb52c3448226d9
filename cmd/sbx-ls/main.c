/* sbx-ls: list sandboxes. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "omnirun/base/exitcodes.h"
#include "omnirun/state/record.h"
#include "omnirun/base/util.h"
#include "omnirun/vm/vmm.h"

static void usage(void)
{
	printf("Usage: sbx-ls [options] [ID...]\n\n"
	       "List live sandboxes (or the named ones, in any state).\n\n"
	       "Options:\n"
	       "  -a, --all      include stopped sandboxes (history) and those waiting\n"
	       "                 in a warm pool (state pooled; sbx-pool)\n"
	       "  -j, --json     print a JSON array\n"
	       "  -q, --quiet    print ids only\n"
	       "  -h, --help     show this help\n"
	       "  -V, --version  show the version\n\n"
	       "Exit status: 0 ok, 1 failure, 2 usage, 3 a named sandbox does not exist.\n");
	exit(OMR_EXIT_OK);
}

static json_t *or_null(int64_t v)
{
	return v >= 0 ? json_integer(v) : json_null();
}

/* What the sandbox uses on the host now: its cgroup's CPU time and memory,
 * the blocks its disk takes (null where unknown: not root, not running). */
static json_t *usage_json(const struct omr_config *c, const struct omr_sandbox *sb)
{
	struct omr_vmm_usage u;

	omr_vmm_usage(c, sb, &u);
	return json_pack("{s:o, s:o, s:o}", "cpu_seconds",
			 u.cpu_ns >= 0 ? json_real((double)(u.cpu_ns / 1000000) / 1e3) : json_null(),
			 "memory_bytes", or_null(u.memory_bytes), "disk_bytes", or_null(u.disk_bytes));
}

static void print_row(const struct omr_config *c, const struct omr_sandbox *sb)
{
	char created[32], expires[32];

	omr_format_time(sb->created_at, created);
	omr_format_time(sb->state == OMR_SB_STOPPED ? sb->ended_at : sb->expires_at, expires);
	const char *state = omr_sandbox_shown_state(c, sb);

	/* Nobody's yet: what matters is that it waits in its pool. */
	if (omr_sandbox_pooled(sb) && !strcmp(state, "running"))
		state = "pooled";
	printf("%-14s %-10s %-9s %-20s %-20s %4u %7u %7d\n", sb->id, sb->template_name,
	       state, created, expires, sb->cpus, sb->memory_mb,
	       sb->vmm_pid > 0 ? (int)sb->vmm_pid : 0);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "all", no_argument, NULL, 'a' },
		{ "json", no_argument, NULL, 'j' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	int all = 0, json = 0, quiet = 0, ch, rc = OMR_EXIT_OK;
	struct omr_sandbox *v = NULL;
	struct omr_err *err = NULL;
	struct omr_config *c;
	size_t n = 0;
	json_t *arr;

	omr_cli_init(argv[0]);
	while ((ch = getopt_long(argc, argv, "ajqhV", opts, NULL)) != -1) {
		switch (ch) {
		case 'a': all = 1; break;
		case 'j': json = 1; break;
		case 'q': quiet = 1; break;
		case 'h': usage(); break;
		case 'V': omr_cli_version(); break;
		default: omr_cli_usage_error(OMR_EXIT_USAGE, NULL);
		}
	}
	c = omr_cli_config();
	if (optind < argc) {
		v = calloc((size_t)(argc - optind), sizeof(*v));
		for (int i = optind; v && i < argc; i++) {
			if (omr_sandbox_load(c, argv[i], &v[n], &err) == 0)
				n++;
			else if (v[n].state == OMR_SB_CORRUPT)
				n++, omr_err_free(&err); /* shown as corrupt */
			else
				rc = omr_cli_fail(&err);
		}
	} else if (omr_sandbox_list(c, &v, &n, &err) < 0) {
		omr_config_free(c);
		return omr_cli_fail(&err);
	}
	arr = json_array();
	if (!json && !quiet)
		printf("%-14s %-10s %-9s %-20s %-20s %4s %7s %7s\n", "ID", "TEMPLATE", "STATE",
		       "CREATED", "EXPIRES/ENDED", "CPUS", "MEM_MB", "PID");
	for (size_t i = 0; i < n; i++) {
		if (optind == argc && !all &&
		    (v[i].state == OMR_SB_STOPPED || omr_sandbox_pooled(&v[i])))
			continue;
		if (json) {
			json_t *o = omr_sandbox_json(&v[i]);
			json_object_set_new(o, "state", json_string(omr_sandbox_shown_state(c, &v[i])));
			if (v[i].state != OMR_SB_STOPPED)
				json_object_set_new(o, "usage", usage_json(c, &v[i]));
			json_array_append_new(arr, o);
		} else if (quiet) {
			printf("%s\n", v[i].id);
		} else {
			print_row(c, &v[i]);
		}
	}
	if (json)
		omr_cli_print_json(arr);
	else
		json_decref(arr);
	free(v);
	omr_config_free(c);
	return rc;
}
