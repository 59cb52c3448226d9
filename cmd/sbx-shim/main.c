/* sbx-shim: the REST API server (DESIGN.md §7, doc/openapi.yaml). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "omnirun/api/api.h"
#include "omnirun/api/sign.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/base/exitcodes.h"
#include "omnirun/base/log.h"
#include "omnirun/base/util.h"

static void usage(void)
{
	printf("Usage: sbx-shim [options]\n\n"
	       "Serve the OmniRun REST API over HTTP (HTTPS when [api] tls_cert and\n"
	       "tls_key are set) until SIGTERM or SIGINT.  One line per request goes to\n"
	       "stderr.\n\n"
	       "Options:\n"
	       "  -l, --listen ADDR:PORT  where to listen (default: [api] listen,\n"
	       "                          127.0.0.1:8080); port 0 picks a free one\n"
	       "  -p, --port-file FILE    write the port listened on to FILE once ready\n"
	       "      --e2b-listen ADDR:PORT  serve E2B's API and envd there too (default:\n"
	       "                          [e2b] listen; off when neither is set)\n"
	       "      --e2b-port-file FILE  write the E2B listener's port to FILE\n"
	       "      --sign-keys         list the keys of signed file URLs, the one\n"
	       "                          that signs first, and exit\n"
	       "      --rotate-sign-key   make a new key sign from now on (the others\n"
	       "                          still verify), print its id and exit\n"
	       "      --remove-sign-key KID  remove an old key: its URLs stop working\n"
	       "  -h, --help              show this help\n"
	       "  -V, --version           show the version\n\n"
	       "Exit status: 0 stopped by a signal, 1 failure, 2 usage, 3 no such key,\n"
	       "4 the address is in use, or the key still signs.\n");
	exit(OMR_EXIT_OK);
}

/* The route table, one "METHOD PATH" a line, for the test that holds it
 * against doc/openapi.yaml. */
static void print_routes(void)
{
	json_t *routes = omr_api_routes(), *r;
	size_t i;

	json_array_foreach(routes, i, r)
		printf("%s %s\n", json_string_value(json_object_get(r, "method")),
		       json_string_value(json_object_get(r, "path")));
	json_decref(routes);
	exit(OMR_EXIT_OK);
}

/* --sign-keys, --rotate-sign-key, --remove-sign-key. */
static int sign_keys(int what, const char *kid)
{
	struct omr_config *c = omr_cli_config();
	struct omr_err *err = NULL;
	char **kids = NULL, made[OMR_SIGN_KID_LEN + 1];
	int rc;

	if (what == 'K') {
		rc = omr_sign_keys(c, &kids, &err);
		for (size_t i = 0; rc == 0 && kids[i]; i++) {
			printf("%s%s\n", kids[i], i == 0 ? " (signs)" : "");
			free(kids[i]);
		}
		free(kids);
	} else if (what == 'O') {
		if ((rc = omr_sign_rotate(c, made, &err)) == 0)
			printf("%s\n", made);
	} else {
		rc = omr_sign_key_remove(c, kid, &err);
	}
	omr_config_free(c);
	return rc < 0 ? omr_cli_fail(&err) : OMR_EXIT_OK;
}

/* Writes port to path, whole or not at all: a test polls for it. */
static int write_port(const char *path, unsigned port, struct omr_err **err)
{
	char buf[16];
	int n = snprintf(buf, sizeof(buf), "%u\n", port);
	_cleanup_free_ char *dir = omr_xstrdup(path);
	char *slash = strrchr(dir, '/');
	const char *base = slash ? slash + 1 : path;

	if (slash)
		*slash = 0;
	_cleanup_close_ int dfd = open(slash ? (*dir ? dir : "/") : ".",
				       O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot open %s", slash ? dir : ".");
	return omr_write_file_atomic_at(dfd, base, buf, (size_t)n, 0644, err);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "port-file", required_argument, NULL, 'p' },
		{ "e2b-listen", required_argument, NULL, 'E' },
		{ "e2b-port-file", required_argument, NULL, 'P' },
		{ "print-routes", no_argument, NULL, 'R' },
		{ "sign-keys", no_argument, NULL, 'K' },
		{ "rotate-sign-key", no_argument, NULL, 'O' },
		{ "remove-sign-key", required_argument, NULL, 'X' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	const char *listen = NULL, *port_file = NULL, *e2b_listen = NULL, *e2b_port_file = NULL;
	struct omr_err *err = NULL;
	struct omr_config *c;
	struct omr_api *a = NULL, *e2b = NULL;
	sigset_t set;
	int ch, sig;

	omr_cli_init(argv[0]);
	while ((ch = getopt_long(argc, argv, "l:p:hV", opts, NULL)) != -1) {
		switch (ch) {
		case 'l': listen = optarg; break;
		case 'p': port_file = optarg; break;
		case 'E': e2b_listen = optarg; break;
		case 'P': e2b_port_file = optarg; break;
		case 'R': print_routes(); break;
		case 'K':
		case 'O': return sign_keys(ch, NULL);
		case 'X': return sign_keys(ch, optarg);
		case 'h': usage(); break;
		case 'V': omr_cli_version(); break;
		default: omr_cli_usage_error(OMR_EXIT_USAGE, NULL);
		}
	}
	if (optind != argc)
		omr_cli_usage_error(OMR_EXIT_USAGE, "unexpected argument '%s'", argv[optind]);
	omr_log_init("sbx-shim", 2, getenv("OMNIRUN_DEBUG") ? OMR_LOG_DEBUG : OMR_LOG_INFO);
	/* A client that hangs up is an error on its socket, not a signal;
	 * the others are waited for on this thread only. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	c = omr_cli_config();
	if (e2b_port_file && !e2b_listen && !c->e2b_listen) {
		omr_config_free(c);
		omr_cli_usage_error(OMR_EXIT_USAGE, "--e2b-port-file needs an E2B listener "
				    "(--e2b-listen or [e2b] listen)");
	}
	if (omr_api_start(c, listen, &a, &err) < 0) {
		omr_config_free(c);
		return omr_cli_fail(&err);
	}
	omr_log(OMR_LOG_INFO, "listening on %s (port %u)", listen ? listen : c->api_listen,
		omr_api_port(a));
	if (c->e2b_listen || e2b_listen) {
		if (omr_api_start_e2b(c, e2b_listen, &e2b, &err) < 0)
			goto fail;
		omr_log(OMR_LOG_INFO, "E2B endpoint listening on %s (port %u)",
			e2b_listen ? e2b_listen : c->e2b_listen, omr_api_port(e2b));
	}
	/* The E2B port first: whoever polls for the other finds both. */
	if ((e2b && e2b_port_file && write_port(e2b_port_file, omr_api_port(e2b), &err) < 0) ||
	    (port_file && write_port(port_file, omr_api_port(a), &err) < 0))
		goto fail;
	do
		sig = sigwaitinfo(&set, NULL);
	while (sig == SIGHUP || sig < 0);
	omr_log(OMR_LOG_INFO, "stopping on signal %d", sig);
	omr_api_stop(e2b);
	omr_api_stop(a);
	omr_config_free(c);
	return OMR_EXIT_OK;
fail:
	omr_api_stop(e2b);
	omr_api_stop(a);
	omr_config_free(c);
	return omr_cli_fail(&err);
}
