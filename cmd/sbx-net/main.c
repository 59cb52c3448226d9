/* sbx-net: a running sandbox's network policy and counters, its
 * exposures (preview URLs) and port forwards. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "omnirun/base/exitcodes.h"
#include "omnirun/base/ids.h"
#include "omnirun/base/util.h"
#include "omnirun/client/net.h"
#include "omnirun/state/netconf.h"

static void usage(void)
{
	printf("Usage: sbx-net [options] ID policy [--internet on|off] [--allow HOST]...\n"
	       "                                  [--deny HOST]...\n"
	       "       sbx-net [options] ID stats\n"
	       "       sbx-net [options] ID expose PORT [--protected]\n"
	       "       sbx-net [options] ID unexpose EXPOSURE_ID\n"
	       "       sbx-net [options] ID exposures\n"
	       "       sbx-net [options] ID forward PORT\n\n"
	       "Show or change a running sandbox's network policy, or show its counters.\n"
	       "expose offers PORT of the guest at a preview URL\n"
	       "(http(s)://PORT-SANDBOXID.DOMAIN/, served by sbx-shim), public unless\n"
	       "--protected; forward connects stdin and stdout to PORT on the guest's\n"
	       "loopback.  Both go through the agent channel: no network route into the\n"
	       "guest is needed.\n"
	       "A change is atomic (one nft transaction); proxied connections the new\n"
	       "policy refuses are closed, forwarded ones reset.  Without a change,\n"
	       "policy shows the current one.\n\n"
	       "Policy options:\n"
	       "  -i, --internet on|off   NAT the guest out of the uplink, or stop\n"
	       "  -a, --allow HOST        add HOST (or *.domain) to the allow-list\n"
	       "  -d, --deny HOST         remove HOST from the allow-list\n\n"
	       "Expose options:\n"
	       "  -p, --protected         the URL needs a bearer token of the owner\n\n"
	       "Options:\n"
	       "  -j, --json     JSON output\n"
	       "  -h, --help     show this help\n"
	       "  -V, --version  show the version\n\n"
	       "Exit status: 0 ok, 1 failure, 2 usage (a bad host name), 3 no such\n"
	       "sandbox, uplink or exposure, 4 not running, forwarding off on the\n"
	       "uplink or the port exposed already, 5 the allow-list or the exposures\n"
	       "are full.\n");
	exit(OMR_EXIT_OK);
}

static void print_policy(json_t *p)
{
	json_t *v;
	size_t i;

	printf("mode      %s\n", json_string_value(json_object_get(p, "mode")));
	printf("internet  %s\n", json_is_true(json_object_get(p, "internet")) ? "on" : "off");
	printf("allow    ");
	json_array_foreach(json_object_get(p, "allow"), i, v)
		printf(" %s", json_string_value(v));
	printf("%s\n", json_array_size(json_object_get(p, "allow")) ? "" : " (none)");
	printf("address   %s/%lld gateway %s\n", json_string_value(json_object_get(p, "address")),
	       (long long)json_integer_value(json_object_get(p, "prefix")),
	       json_string_value(json_object_get(p, "gateway")));
}

static long long num(json_t *o, const char *a, const char *b)
{
	json_t *v = json_object_get(o, a);
	return (long long)json_integer_value(b ? json_object_get(v, b) : v);
}

static void print_stats(json_t *s)
{
	json_t *v;
	size_t i;

	printf("mode         %s\n", json_string_value(json_object_get(s, "mode")));
	printf("bytes        in %lld, out %lld (forwarded in %lld, out %lld)\n",
	       num(s, "bytes_in", NULL), num(s, "bytes_out", NULL), num(s, "forwarded", "bytes_in"),
	       num(s, "forwarded", "bytes_out"));
	printf("connections  allowed %lld, refused %lld, open %lld\n",
	       num(s, "connections", "allowed"), num(s, "connections", "refused"),
	       num(s, "connections", "open"));
	printf("dns          answered %lld, refused %lld, relayed %lld\n", num(s, "dns", "answered"),
	       num(s, "dns", "refused"), num(s, "dns", "relayed"));
	if (json_array_size(json_object_get(s, "names")))
		printf("\n%-40s %8s %8s %12s %12s  %s\n", "NAME", "ALLOWED", "REFUSED", "BYTES_IN",
		       "BYTES_OUT", "LAST REFUSAL");
	json_array_foreach(json_object_get(s, "names"), i, v) {
		const char *why = json_string_value(json_object_get(v, "last_refusal"));
		printf("%-40s %8lld %8lld %12lld %12lld  %s\n",
		       json_string_value(json_object_get(v, "name")), num(v, "allowed", NULL),
		       num(v, "refused", NULL), num(v, "bytes_in", NULL), num(v, "bytes_out", NULL),
		       why ? why : "-");
	}
}

static unsigned port_arg(const char *s)
{
	return (unsigned)omr_cli_number(s, 1, 65535, "port");
}

static void print_exposure(json_t *e)
{
	char port[8];

	/* Port 0: every port (a sandbox created through the E2B endpoint). */
	if (num(e, "port", NULL) == 0)
		snprintf(port, sizeof(port), "*");
	else
		snprintf(port, sizeof(port), "%lld", num(e, "port", NULL));
	printf("%-16s %5s  %-9s  %s\n", json_string_value(json_object_get(e, "id")), port,
	       json_is_true(json_object_get(e, "protected")) ? "protected" : "public",
	       json_string_value(json_object_get(e, "url")));
}

static void print(enum omr_net_cmd cmd, json_t *out)
{
	size_t i;
	json_t *x;

	switch (cmd) {
	case OMR_NET_POLICY: print_policy(out); break;
	case OMR_NET_STATS: print_stats(out); break;
	case OMR_NET_EXPOSE: printf("%s\n", json_string_value(json_object_get(out, "url"))); break;
	case OMR_NET_EXPOSURES: json_array_foreach(out, i, x) print_exposure(x); break;
	default: break;
	}
	json_decref(out);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "internet", required_argument, NULL, 'i' },
		{ "allow", required_argument, NULL, 'a' },
		{ "deny", required_argument, NULL, 'd' },
		{ "protected", no_argument, NULL, 'p' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	const char *allow[OMR_ALLOW_ENTRIES], *deny[OMR_ALLOW_ENTRIES], *id = NULL, *cmd = NULL,
		   *arg = NULL;
	struct omr_net_req req = { .change = { .internet = -1, .allow = allow, .deny = deny },
				   .in_fd = 0, .out_fd = 1 };
	struct omr_net_change *ch = &req.change;
	struct omr_err *err = NULL;
	struct omr_config *c;
	int json = 0, opt, rc, takes_arg = 0;
	json_t *out = NULL;

	omr_cli_init(argv[0]);
	/* Options may come before or after "ID COMMAND [ARG]". */
	while (optind < argc) {
		if ((opt = getopt_long(argc, argv, "+i:a:d:pjhV", opts, NULL)) == -1) {
			if (!id) {
				id = argv[optind++];
			} else if (!cmd) {
				cmd = argv[optind++];
				if ((rc = omr_net_cmd_parse(cmd, &takes_arg)) < 0)
					omr_cli_usage_error(OMR_EXIT_USAGE, "unknown command '%s' (policy, "
							    "stats, expose, unexpose, exposures or "
							    "forward)", cmd);
				req.cmd = (enum omr_net_cmd)rc;
			} else if (!arg && takes_arg) {
				arg = argv[optind++];
			} else {
				omr_cli_usage_error(OMR_EXIT_USAGE, "unexpected argument '%s'", argv[optind]);
			}
			continue;
		}
		switch (opt) {
		case 'i':
			if (strcmp(optarg, "on") && strcmp(optarg, "off"))
				omr_cli_usage_error(OMR_EXIT_USAGE, "--internet takes on or off, not '%s'", optarg);
			ch->internet = !strcmp(optarg, "on");
			break;
		case 'a':
		case 'd':
			if ((opt == 'a' ? ch->nallow : ch->ndeny) == OMR_ALLOW_ENTRIES)
				omr_cli_usage_error(OMR_EXIT_USAGE, "at most %d names per option", OMR_ALLOW_ENTRIES);
			if (opt == 'a')
				allow[ch->nallow++] = optarg;
			else
				deny[ch->ndeny++] = optarg;
			break;
		case 'p': req.protect = 1; break;
		case 'j': json = 1; break;
		case 'h': usage(); break;
		case 'V': omr_cli_version(); break;
		default: omr_cli_usage_error(OMR_EXIT_USAGE, NULL);
		}
	}
	if (!id || !cmd)
		omr_cli_usage_error(OMR_EXIT_USAGE, "expected a sandbox id and a command");
	if (!omr_id_valid(id))
		omr_cli_usage_error(OMR_EXIT_USAGE, "invalid sandbox id '%s'", id);
	if (takes_arg && !arg)
		omr_cli_usage_error(OMR_EXIT_USAGE, "%s needs an argument", cmd);
	if (req.protect && req.cmd != OMR_NET_EXPOSE)
		omr_cli_usage_error(OMR_EXIT_USAGE, "--protected is for expose");
	if (req.cmd != OMR_NET_POLICY && (ch->internet >= 0 || ch->nallow || ch->ndeny))
		omr_cli_usage_error(OMR_EXIT_USAGE, "%s takes no --internet, --allow or --deny", cmd);
	if (req.cmd == OMR_NET_EXPOSE || req.cmd == OMR_NET_FORWARD)
		req.port = port_arg(arg);
	req.exposure = arg;
	c = omr_cli_config();
	rc = omr_client_net(c, id, &req, &out, &err);
	omr_config_free(c);
	if (rc < 0)
		return omr_cli_fail(&err);
	if (json && out)
		omr_cli_print_json(out);
	else
		print(req.cmd, out);
	return OMR_EXIT_OK;
}
