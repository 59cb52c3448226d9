/* sbx-resume: restart a paused sandbox's CPUs and set its clock. */
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>

#include "cli.h"
#include "omnirun/base/exitcodes.h"
#include "omnirun/client/sandbox.h"

static void usage(void)
{
	printf("Usage: sbx-resume [options] ID\n\n"
	       "Resume a sandbox paused with sbx-pause (or by its idle action): its VM's\n"
	       "CPUs run again, and the guest's clock, which stood still while it was\n"
	       "paused, is set to the host's before sbx-resume returns.\n\n"
	       "A persisted sandbox (sbx-pause --persist) is started again from its\n"
	       "image: a new VMM and monitor, its memory, processes and files as they\n"
	       "were, the clock set, a new network device; its lifetime goes on from\n"
	       "where it stood.  If that fails, the image stays and it stays persisted.\n\n"
	       "Options:\n"
	       "  -j, --json     print the sandbox as JSON (state \"running\")\n"
	       "  -h, --help     show this help\n"
	       "  -V, --version  show the version\n\n"
	       "Exit status: 0 resumed, 1 failure, 2 usage, 3 no such live sandbox,\n"
	       "4 it is not paused (or being paused or resumed), or its persisted image\n"
	       "is damaged or from another host (it stays persisted), 6 its VMM did not\n"
	       "start from the image.\n");
	exit(OMR_EXIT_OK);
}

int main(int argc, char **argv)
{
	static const char *const ops[] = { "sandbox id" };
	struct omr_err *err = NULL;
	struct omr_config *c;
	json_t *out = NULL;
	const char *clock;
	int json, rc;

	json = omr_cli_simple_opts(argc, argv, usage, ops, 1);
	c = omr_cli_config();
	rc = omr_sandbox_resume(c, argv[optind], &out, &err);
	omr_config_free(c);
	if (rc < 0)
		return omr_cli_fail(&err);
	/* Resumed all the same: the clock is a warning, not a failure. */
	clock = json_string_value(json_object_get(out, "clock_error"));
	if (clock)
		fprintf(stderr, "%s: warning: the guest clock was not set: %s\n", omr_cli_prog(), clock);
	if (json)
		omr_cli_print_json(out);
	else
		json_decref(out);
	return OMR_EXIT_OK;
}
