/* sbx-gc: reconcile sandbox records with what runs; prove nothing leaks. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "omnirun/base/exitcodes.h"
#include "omnirun/state/gc.h"
#include "omnirun/vm/cgroup.h"

static void usage(void)
{
	printf("Usage: sbx-gc [options]\n\n"
	       "Find what sandboxes left behind (records of dead sandboxes, runtime\n"
	       "directories, QEMU or monitor processes, half-made sandboxes, cgroups)\n"
	       "and clean it up.  With --check, only report.\n\n"
	       "Options:\n"
	       "  -n, --check            report only; exit 1 if anything was found\n"
	       "  -p, --prune-days DAYS  also remove stopped records older than DAYS\n"
	       "  -b, --boot             the host just started (omnirun-boot.service):\n"
	       "                         sandboxes that were live died with it (end reason\n"
	       "                         host_reboot); persisted ones stay resumable\n"
	       "  -j, --json             print findings as a JSON array\n"
	       "  -h, --help             show this help\n"
	       "  -V, --version          show the version\n\n"
	       "Exit status: 0 nothing left (or all cleaned), 1 leftovers found with\n"
	       "--check, leftovers that could not be cleaned, or a failure; 2 usage.\n");
	exit(OMR_EXIT_OK);
}

struct out {
	int json, check;
	json_t *arr;
	int unfixed;
};

static void found(void *user, const char *kind, const char *id, const char *what, int fixed)
{
	struct out *o = user;

	o->unfixed += !fixed;
	if (o->json)
		json_array_append_new(o->arr, json_pack("{s:s, s:s, s:s, s:b}", "kind", kind,
							"sandbox_id", id, "what", what,
							"fixed", fixed));
	else
		printf("%s %s: %s%s\n", kind, id, what,
		       o->check || fixed ? "" : " (NOT fixed)");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "check", no_argument, NULL, 'n' },
		{ "prune-days", required_argument, NULL, 'p' },
		{ "boot", no_argument, NULL, 'b' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	struct omr_gc_opts o = { 0 };
	struct out out = { 0, 0, NULL, 0 };
	struct omr_err *err = NULL;
	struct omr_config *c;
	int ch, n;

	omr_cli_init(argv[0]);
	while ((ch = getopt_long(argc, argv, "np:bjhV", opts, NULL)) != -1) {
		switch (ch) {
		case 'n': o.check_only = 1; break;
		case 'p': o.prune_days = (unsigned)omr_cli_number(optarg, 1, 36500, "days"); break;
		case 'b': o.boot = 1; break;
		case 'j': out.json = 1; break;
		case 'h': usage(); break;
		case 'V': omr_cli_version(); break;
		default: omr_cli_usage_error(OMR_EXIT_USAGE, NULL);
		}
	}
	if (optind != argc)
		omr_cli_usage_error(OMR_EXIT_USAGE, "unexpected argument '%s'", argv[optind]);
	c = omr_cli_config();
	out.check = o.check_only;
	out.arr = json_array();
	n = omr_gc_run(c, &o, found, &out, &err);
	/* After the processes: a cgroup empties once they are gone. */
	if (n >= 0)
		n += omr_cgroup_gc(c, o.check_only, found, &out);
	omr_config_free(c);
	if (out.json)
		omr_cli_print_json(out.arr);
	else
		json_decref(out.arr);
	if (n < 0)
		return omr_cli_fail(&err);
	/* Found with --check, or found and not fixed: both need someone. */
	return out.unfixed ? OMR_EXIT_FAILURE : OMR_EXIT_OK;
}
