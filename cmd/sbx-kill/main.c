/* sbx-kill: tear sandboxes down. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "omnirun/base/exitcodes.h"
#include "omnirun/client/sandbox.h"

static void usage(void)
{
	printf("Usage: sbx-kill [options] ID...\n\n"
	       "Tear sandboxes down: the VM is killed, its encrypted disk and key are\n"
	       "gone, its runtime directory is removed; the record is kept as history.\n"
	       "Killing a stopped sandbox does nothing and succeeds.\n\n"
	       "Options:\n"
	       "  -h, --help     show this help\n"
	       "  -V, --version  show the version\n\n"
	       "Exit status: 0 all killed, 1 failure, 2 usage, 3 an id does not exist.\n");
	exit(OMR_EXIT_OK);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	struct omr_err *err = NULL;
	struct omr_config *c;
	int ch, rc = OMR_EXIT_OK;

	omr_cli_init(argv[0]);
	while ((ch = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
		switch (ch) {
		case 'h': usage(); break;
		case 'V': omr_cli_version(); break;
		default: omr_cli_usage_error(OMR_EXIT_USAGE, NULL);
		}
	}
	if (optind == argc)
		omr_cli_usage_error(OMR_EXIT_USAGE, "no sandbox id given");
	c = omr_cli_config();
	for (int i = optind; i < argc; i++) {
		/* Go on with the others; report the first failure's code. */
		if (omr_sandbox_kill(c, argv[i], "killed", &err) < 0) {
			int code = omr_cli_fail(&err);
			if (rc == OMR_EXIT_OK)
				rc = code;
		}
	}
	omr_config_free(c);
	return rc;
}
