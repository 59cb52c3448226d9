/* sbx-create: create a sandbox and print its id once the agent answered. */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

#include "cli.h"
#include "omnirun/base/exitcodes.h"
#include "omnirun/base/util.h"
#include "omnirun/client/sandbox.h"
#include "omnirun/acct/acct.h"

static void usage(void)
{
	printf("Usage: sbx-create [options]\n\n"
	       "Create a sandbox (a microVM), wait until its guest agent answers and\n"
	       "print its id on stdout (and nothing else, so id=$(sbx-create) works).\n"
	       "Its network is air-gapped unless --allow or --internet says otherwise.\n\n"
	       "Options:\n"
	       "  -t, --template NAME      template to boot (default: config, tiny)\n"
	       "  -c, --cpus N             virtual CPUs\n"
	       "  -m, --memory MB          guest memory in MB\n"
	       "  -d, --disk MB            size of the encrypted writable disk (/data)\n"
	       "  -P, --processes N        processes all commands in the guest may have\n"
	       "  -T, --timeout SEC        lifetime; the sandbox is torn down after it\n"
	       "  -I, --idle-timeout SEC   after SEC without activity, do the idle action\n"
	       "                           (0: never)\n"
	       "      --idle-action ACTION kill (tear down), pause (as sbx-pause) or persist\n"
	       "                           (as sbx-pause --persist) when idle (default:\n"
	       "                           config, kill)\n"
	       "  -a, --allow HOST         let the guest reach HOST (repeatable; *.example.com\n"
	       "                           for every name below example.com) over HTTP and\n"
	       "                           HTTPS through the egress proxy; nothing else\n"
	       "  -i, --internet           NAT the guest out of the configured uplink\n"
	       "                           (private and host addresses stay unreachable)\n"
	       "  -o, --owner EMAIL        the API user the sandbox belongs to (default:\n"
	       "                           the operator account); counts against their limit\n"
	       "  -j, --json               print the sandbox as JSON instead of its id\n"
	       "  -v, --verbose            say on stderr whether it was claimed from the\n"
	       "                           template's warm pool, restored from its\n"
	       "                           snapshot or booted cold, and why\n"
	       "  -h, --help               show this help\n"
	       "  -V, --version            show the version\n\n"
	       "Exit status: 0 created, 1 failure (also an idle action not supported\n"
	       "yet), 2 usage, 3 unknown template or uplink, or owner, 4 forwarding is\n"
	       "off on the uplink, 5 limit reached (sandboxes, the owner's or the address\n"
	       "pool), 6 the VM failed to boot or its agent did not answer.\n");
	exit(OMR_EXIT_OK);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "template", required_argument, NULL, 't' },
		{ "cpus", required_argument, NULL, 'c' },
		{ "memory", required_argument, NULL, 'm' },
		{ "disk", required_argument, NULL, 'd' },
		{ "processes", required_argument, NULL, 'P' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "idle-timeout", required_argument, NULL, 'I' },
		{ "idle-action", required_argument, NULL, 'A' },
		{ "allow", required_argument, NULL, 'a' },
		{ "internet", no_argument, NULL, 'i' },
		{ "owner", required_argument, NULL, 'o' },
		{ "json", no_argument, NULL, 'j' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	struct omr_create_opts o = { 0 };
	const char *allow[OMR_ALLOW_ENTRIES];
	size_t nallow = 0;
	struct omr_sandbox sb;
	struct omr_err *err = NULL;
	struct omr_config *c;
	int json = 0, verbose = 0, ch, idle_set = 0;
	const char *owner = NULL;
	struct omr_db *db = NULL;
	struct omr_user u;
	int64_t claim;
	uint64_t idle = 0;

	omr_cli_init(argv[0]);
	while ((ch = getopt_long(argc, argv, "t:c:m:d:P:T:I:a:o:ijvhV", opts, NULL)) != -1) {
		switch (ch) {
		case 't': o.template_name = optarg; break;
		case 'c': o.cpus = (unsigned)omr_cli_number(optarg, 1, 1024, "cpu count"); break;
		case 'm': o.memory_mb = (unsigned)omr_cli_number(optarg, 1, UINT32_MAX - 1, "memory size"); break;
		case 'd': o.disk_mb = (unsigned)omr_cli_number(optarg, 1, UINT32_MAX - 1, "disk size"); break;
		case 'P': o.processes = (unsigned)omr_cli_number(optarg, 1, UINT32_MAX - 1, "process count"); break;
		case 'T': o.timeout_s = (unsigned)omr_cli_number(optarg, 1, UINT32_MAX - 1, "timeout"); break;
		case 'A': o.idle_action = optarg; break;
		case 'I': idle = omr_cli_number(optarg, 0, UINT32_MAX - 1, "idle timeout"); idle_set = 1; break;
		case 'a':
			if (nallow == OMR_ARRAY_SIZE(allow))
				omr_cli_usage_error(OMR_EXIT_USAGE, "at most %d --allow names", OMR_ALLOW_ENTRIES);
			allow[nallow++] = optarg;
			break;
		case 'i': o.internet = 1; break;
		case 'o': owner = optarg; break;
		case 'j': json = 1; break;
		case 'v': verbose = 1; break;
		case 'h': usage(); break;
		case 'V': omr_cli_version(); break;
		default: omr_cli_usage_error(OMR_EXIT_USAGE, NULL);
		}
	}
	if (optind != argc)
		omr_cli_usage_error(OMR_EXIT_USAGE, "unexpected argument '%s'", argv[optind]);
	o.allow = allow;
	o.nallow = nallow;
	if (idle_set)
		o.idle_timeout_s = idle == 0 ? UINT32_MAX : (unsigned)idle;
	c = omr_cli_config();
	/* The owner's place is claimed before the boot, as the shim does,
	 * so that their limit holds whoever creates. */
	if (omr_db_open(c, NULL, &db, &err) < 0 ||
	    (owner ? omr_user_get(db, owner, &u, &err)
		   : omr_user_ensure(db, c->api_operator, 1, OMR_LIMIT_NONE, &u, &err)) < 0 ||
	    omr_owner_claim(db, c, &u, &claim, &err) < 0)
		goto fail;
	omr_cli_progress("booting a %s sandbox...", o.template_name ? o.template_name : c->default_template);
	if (omr_sandbox_create(c, &o, &sb, &err) < 0) {
		omr_owner_release(db, claim);
		goto fail;
	}
	if (omr_owner_bind(db, claim, sb.id, sb.template_name, sb.created_at, &err) < 0 ||
	    omr_audit(db, u.id, "create", sb.id, "from the CLI", &err) < 0) {
		omr_sandbox_kill(c, sb.id, "killed", NULL);
		goto fail;
	}
	omr_db_close(db);
	if (verbose && !strcmp(sb.pool, "claimed"))
		fprintf(stderr, "%s: %s: claimed from the pool of template %s (it was %s)\n",
			omr_cli_prog(), sb.id, sb.template_name, !strcmp(sb.boot, "restore")
			? "restored from the snapshot" : "booted cold");
	else if (verbose && !strcmp(sb.boot, "restore"))
		fprintf(stderr, "%s: %s: restored from the snapshot of template %s\n",
			omr_cli_prog(), sb.id, sb.template_name);
	else if (verbose)
		fprintf(stderr, "%s: %s: cold boot: %s\n", omr_cli_prog(), sb.id,
			sb.boot_why[0] ? sb.boot_why : "no snapshot");
	if (json)
		omr_cli_print_json(omr_sandbox_json(&sb));
	else
		printf("%s\n", sb.id);
	omr_config_free(c);
	return OMR_EXIT_OK;
fail:
	omr_db_close(db);
	omr_config_free(c);
	return omr_cli_fail(&err);
}
