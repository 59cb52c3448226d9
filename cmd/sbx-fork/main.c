/* sbx-fork: copy a live sandbox into new ones (issue 9). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "omnirun/acct/acct.h"
#include "omnirun/base/exitcodes.h"
#include "omnirun/client/sandbox.h"
#include "omnirun/state/fork.h"

static void usage(void)
{
	printf("Usage: sbx-fork [options] ID\n\n"
	       "Copy a running (or paused) sandbox into N new ones and print their ids,\n"
	       "one a line.  Each starts with the source's memory, running processes and\n"
	       "files as they are at that moment, and a fresh identity: its own id,\n"
	       "hostname, address, clock and reseeded RNG.  It keeps the source's\n"
	       "template, limits, lifetime and network policy, and belongs to the\n"
	       "source's owner (counting against their limit).  The source stops for\n"
	       "the moment its memory and disk are copied, then goes on.  The copies\n"
	       "share the source's disk key: their disks hold the same ciphertext.\n\n"
	       "Options:\n"
	       "  -n, --count N  how many (1 to %d, default 1)\n"
	       "  -j, --json     print the new sandboxes as a JSON array\n"
	       "  -h, --help     show this help\n"
	       "  -V, --version  show the version\n\n"
	       "Exit status: 0 forked, 1 failure, 2 usage, 3 no such live sandbox,\n"
	       "4 it is being paused or resumed, or its template changed, 5 the\n"
	       "owner's limit, 6 a copy did not start (none is left running).\n",
	       OMR_FORK_MAX);
	exit(OMR_EXIT_OK);
}

static void progress(void *user, const char *msg)
{
	(void)user;
	omr_cli_progress("%s...", msg);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "count", required_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	struct omr_sandbox src, kids[OMR_FORK_MAX];
	int64_t claims[OMR_FORK_MAX];
	struct omr_err *err = NULL;
	struct omr_config *c = NULL;
	struct omr_db *db = NULL;
	struct omr_user u;
	unsigned n = 1;
	int json = 0, ch, claimed = 0;
	int64_t owner;

	omr_cli_init("sbx-fork");
	while ((ch = getopt_long(argc, argv, "n:jhV", opts, NULL)) != -1) {
		switch (ch) {
		case 'n': n = (unsigned)omr_cli_number(optarg, 1, OMR_FORK_MAX, "count"); break;
		case 'j': json = 1; break;
		case 'h': usage(); break;
		case 'V': omr_cli_version(); break;
		default: omr_cli_usage_error(OMR_EXIT_USAGE, NULL);
		}
	}
	if (optind == argc)
		omr_cli_usage_error(OMR_EXIT_USAGE, "missing sandbox id");
	if (optind + 1 < argc)
		omr_cli_usage_error(OMR_EXIT_USAGE, "unexpected argument '%s'", argv[optind + 1]);
	c = omr_cli_config();
	/* The children are the source's owner's: their places are claimed
	 * first, as a create's is. */
	if (omr_sandbox_load(c, argv[optind], &src, &err) < 0 || omr_db_open(c, NULL, &db, &err) < 0)
		goto fail;
	owner = omr_owner_of(db, src.id);
	if ((owner ? omr_user_get_id(db, owner, &u, &err)
		   : omr_user_ensure(db, c->api_operator, 1, OMR_LIMIT_NONE, &u, &err)) < 0 ||
	    omr_owner_claim_n(db, c, &u, n, claims, &err) < 0)
		goto fail;
	claimed = 1;
	if (omr_sandbox_fork(c, src.id, n, progress, NULL, kids, &err) < 0)
		goto fail;
	claimed = 0;
	for (unsigned i = 0; i < n; i++)
		if (omr_owner_bind(db, claims[i], kids[i].id, kids[i].template_name,
				   kids[i].created_at, &err) < 0 ||
		    omr_audit(db, u.id, "fork", kids[i].id, src.id, &err) < 0) {
			for (unsigned k = 0; k < n; k++)
				omr_sandbox_kill(c, kids[k].id, "killed", NULL);
			goto fail;
		}
	omr_db_close(db);
	if (json) {
		json_t *a = json_array();
		for (unsigned i = 0; i < n; i++)
			json_array_append_new(a, omr_sandbox_json(&kids[i]));
		omr_cli_print_json(a);
	} else {
		for (unsigned i = 0; i < n; i++)
			printf("%s\n", kids[i].id);
	}
	omr_config_free(c);
	return OMR_EXIT_OK;
fail:
	for (unsigned i = 0; claimed && i < n; i++)
		omr_owner_release(db, claims[i]);
	omr_db_close(db);
	omr_config_free(c);
	return omr_cli_fail(&err);
}
