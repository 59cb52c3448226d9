/* sbx-timeout: set a live sandbox's remaining lifetime. */
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>

#include "cli.h"
#include "omnirun/base/exitcodes.h"
#include "omnirun/client/sandbox.h"

static void usage(void)
{
	printf("Usage: sbx-timeout [options] ID SECONDS\n\n"
	       "Set how long a live sandbox (running or paused) still lives: it is torn\n"
	       "down SECONDS from now, with end reason \"timeout\", whether that extends\n"
	       "or shortens its lifetime.  SECONDS is 1 to the config's max_timeout\n"
	       "(default 86400).  Prints the new expiry time.\n\n"
	       "Options:\n"
	       "  -j, --json     print the sandbox as JSON instead\n"
	       "  -h, --help     show this help\n"
	       "  -V, --version  show the version\n\n"
	       "Exit status: 0 set, 1 failure, 2 usage (SECONDS out of range), 3 no such\n"
	       "live sandbox.\n");
	exit(OMR_EXIT_OK);
}

int main(int argc, char **argv)
{
	static const char *const ops[] = { "sandbox id", "SECONDS" };
	struct omr_err *err = NULL;
	struct omr_config *c;
	json_t *out = NULL;
	uint64_t secs;
	int json, rc;

	json = omr_cli_simple_opts(argc, argv, usage, ops, 2);
	c = omr_cli_config();
	secs = omr_cli_number(argv[optind + 1], 1, c->max_timeout_s, "timeout");
	rc = omr_sandbox_set_timeout(c, argv[optind], secs, &out, &err);
	omr_config_free(c);
	if (rc < 0)
		return omr_cli_fail(&err);
	if (json) {
		omr_cli_print_json(out);
	} else {
		printf("%s\n", json_string_value(json_object_get(out, "expires_at")));
		json_decref(out);
	}
	return OMR_EXIT_OK;
}
