/* sbx-pool: show, fill and drain the warm pools ([pool] in the config). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/base/exitcodes.h"
#include "omnirun/base/util.h"
#include "omnirun/client/pool.h"

static void usage(void)
{
	printf("Usage: sbx-pool [ls] [options]\n"
	       "       sbx-pool fill [options] [TEMPLATE...]\n"
	       "       sbx-pool drain [options] [TEMPLATE...]\n\n"
	       "The warm pools: sandboxes of a template kept started and claimed by\n"
	       "nobody ([pool] TEMPLATE = N in the config), which sbx-create takes when\n"
	       "the shape it asks for is the template's.\n\n"
	       "Commands:\n"
	       "  ls     show each pool: size, ready, starting, filling, last failure\n"
	       "  fill   start what the pools lack now (default: every pool in the\n"
	       "         config), waiting for a filler at work first; say each start\n"
	       "  drain  kill the sandboxes waiting in the pools (default: all)\n\n"
	       "Options:\n"
	       "  -j, --json     ls: print a JSON array\n"
	       "  -q, --quiet    fill: say nothing but failures\n"
	       "  -h, --help     show this help\n"
	       "  -V, --version  show the version\n\n"
	       "Exit status: 0 ok, 1 failure, 2 usage, 3 no pool for that template\n"
	       "or no such template, 5 a limit reached, 6 a pooled sandbox failed to\n"
	       "boot.\n");
	exit(OMR_EXIT_OK);
}

static void say(void *user, const char *msg)
{
	if (!*(int *)user)
		printf("%s\n", msg);
}

static void print_table(json_t *arr)
{
	size_t i;
	json_t *p;

	printf("%-12s %4s %5s %8s %7s  %s\n", "TEMPLATE", "SIZE", "READY", "STARTING", "FILLING",
	       "LAST_ERROR");
	json_array_foreach(arr, i, p) {
		_cleanup_free_ char *why = NULL;
		const char *err = json_string_value(json_object_get(p, "last_error"));

		/* A boot's error carries the guest's console: one line here. */
		if (err) {
			why = omr_str_escape_ctl(err);
			why[strcspn(why, "\n")] = 0;
		}
		printf("%-12s %4lld %5lld %8lld %7s  %s\n",
		       json_string_value(json_object_get(p, "template")),
		       json_integer_value(json_object_get(p, "size")),
		       json_integer_value(json_object_get(p, "ready")),
		       json_integer_value(json_object_get(p, "starting")),
		       json_is_true(json_object_get(p, "filling")) ? "yes" : "no", why ? why : "-");
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	struct omr_err *err = NULL;
	struct omr_config *c;
	const char *cmd = "ls";
	int json = 0, quiet = 0, ch, rc = OMR_EXIT_OK;

	omr_cli_init(argv[0]);
	while ((ch = getopt_long(argc, argv, "jqhV", opts, NULL)) != -1) {
		switch (ch) {
		case 'j': json = 1; break;
		case 'q': quiet = 1; break;
		case 'h': usage(); break;
		case 'V': omr_cli_version(); break;
		default: omr_cli_usage_error(OMR_EXIT_USAGE, NULL);
		}
	}
	if (optind < argc)
		cmd = argv[optind++];
	if (strcmp(cmd, "ls") && strcmp(cmd, "fill") && strcmp(cmd, "drain"))
		omr_cli_usage_error(OMR_EXIT_USAGE, "unknown command '%s' (ls, fill or drain)", cmd);
	if (!strcmp(cmd, "ls") && optind < argc)
		omr_cli_usage_error(OMR_EXIT_USAGE, "unexpected argument '%s'", argv[optind]);
	c = omr_cli_config();
	if (!strcmp(cmd, "ls")) {
		json_t *arr = omr_pool_json(c, &err);
		if (!arr)
			rc = omr_cli_fail(&err);
		else if (json)
			omr_cli_print_json(arr);
		else
			print_table(arr), json_decref(arr);
	} else if (!strcmp(cmd, "fill")) {
		unsigned made;
		int n = optind < argc ? argc - optind : (int)c->npool;
		for (int i = 0; i < n; i++) {
			const char *name = optind < argc ? argv[optind + i] : c->pool[i].name;
			if (omr_pool_fill(c, name, 1, say, &quiet, &made, &err) < 0) {
				int code = omr_cli_fail(&err);
				rc = rc ? rc : code;
			}
		}
	} else {
		unsigned killed, total = 0;
		int i = optind;
		do {
			if (omr_pool_drain(c, i < argc ? argv[i] : NULL, &killed, &err) < 0) {
				int code = omr_cli_fail(&err);
				rc = rc ? rc : code;
			}
			total += killed;
		} while (++i < argc);
		if (!quiet)
			printf("%u pooled sandbox%s killed\n", total, total == 1 ? "" : "es");
	}
	omr_config_free(c);
	return rc;
}
