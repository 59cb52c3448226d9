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
	       "  -h, --help              show this help\n"
	       "  -V, --version           show the version\n\n"
	       "Exit status: 0 stopped by a signal, 1 failure, 2 usage, 4 the address is\n"
	       "in use.\n");
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

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "port-file", required_argument, NULL, 'p' },
		{ "print-routes", no_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	const char *listen = NULL, *port_file = NULL;
	struct omr_err *err = NULL;
	struct omr_config *c;
	struct omr_api *a = NULL;
	sigset_t set;
	int ch, sig;

	omr_cli_init(argv[0]);
	while ((ch = getopt_long(argc, argv, "l:p:hV", opts, NULL)) != -1) {
		switch (ch) {
		case 'l': listen = optarg; break;
		case 'p': port_file = optarg; break;
		case 'R': print_routes(); break;
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
	if (omr_api_start(c, listen, &a, &err) < 0) {
		omr_config_free(c);
		return omr_cli_fail(&err);
	}
	omr_log(OMR_LOG_INFO, "listening on %s (port %u)", listen ? listen : c->api_listen,
		omr_api_port(a));
	if (port_file) {
		char buf[16];
		int n = snprintf(buf, sizeof(buf), "%u\n", omr_api_port(a));
		/* Written whole or not at all: a test polls for it. */
		_cleanup_free_ char *dir = omr_xstrdup(port_file);
		char *slash = strrchr(dir, '/');
		const char *base = slash ? slash + 1 : port_file;
		if (slash)
			*slash = 0;
		_cleanup_close_ int dfd = open(slash ? (*dir ? dir : "/") : ".",
					       O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0 ||
		    omr_write_file_atomic_at(dfd, base, buf, (size_t)n, 0644, &err) < 0) {
			if (!err)
				omr_err_set(&err, OMR_E_FAIL, errno, "cannot open %s", dir);
			omr_api_stop(a);
			omr_config_free(c);
			return omr_cli_fail(&err);
		}
	}
	do
		sig = sigwaitinfo(&set, NULL);
	while (sig == SIGHUP || sig < 0);
	omr_log(OMR_LOG_INFO, "stopping on signal %d", sig);
	omr_api_stop(a);
	omr_config_free(c);
	return OMR_EXIT_OK;
}
