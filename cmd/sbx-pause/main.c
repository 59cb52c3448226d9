/* sbx-pause: stop a sandbox's CPUs, keeping it in memory. */
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>

#include "cli.h"
#include "omnirun/base/exitcodes.h"
#include "omnirun/client/sandbox.h"

static void usage(void)
{
	printf("Usage: sbx-pause [options] ID\n\n"
	       "Pause a sandbox in memory: its VM's CPUs stop (it uses no CPU), its\n"
	       "memory, processes and files stay.  Commands and file transfers are\n"
	       "refused until sbx-resume.  The paused time counts against its lifetime;\n"
	       "its idle timeout does not run while it is paused.\n\n"
	       "With --persist, save it instead (memory and devices encrypted under a\n"
	       "key of its own, wrapped by the host key; its disk) into its state\n"
	       "directory and stop it: no VMM, no monitor, no memory, until sbx-resume\n"
	       "starts it again as it was, also after a reboot.  Its lifetime stands\n"
	       "still while it is persisted.\n\n"
	       "Options:\n"
	       "  -p, --persist  save it to disk and stop it (state \"persisted\")\n"
	       "  -j, --json     print the sandbox as JSON (state \"paused\")\n"
	       "  -h, --help     show this help\n"
	       "  -V, --version  show the version\n\n"
	       "Exit status: 0 paused, 1 failure, 2 usage, 3 no such live sandbox,\n"
	       "4 it is paused (persisted) already, or being paused or resumed.\n");
	exit(OMR_EXIT_OK);
}

int main(int argc, char **argv)
{
	static const char *const ops[] = { "sandbox id" };
	struct omr_err *err = NULL;
	struct omr_config *c;
	json_t *out = NULL;
	int json, rc, persist = 0;

	json = omr_cli_flag_opts(argc, argv, usage, ops, 1, "persist", 'p', &persist);
	c = omr_cli_config();
	if (persist)
		omr_cli_progress("saving %s...", argv[optind]);
	rc = (persist ? omr_sandbox_persist : omr_sandbox_pause)(c, argv[optind], &out, &err);
	omr_config_free(c);
	if (rc < 0)
		return omr_cli_fail(&err);
	if (json)
		omr_cli_print_json(out);
	else
		json_decref(out);
	return OMR_EXIT_OK;
}
