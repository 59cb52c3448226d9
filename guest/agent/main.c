/* omnirun-agent: PID 1 of an OmniRun guest, or (for development and tests)
 * a request server on an fd or a Unix socket.
 *
 * Exit status (server modes): 0 connection closed or shutdown requested,
 * 1 failure or protocol error, 2 usage. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: omnirun-agent                  (as PID 1 in a guest)\n"
		"       omnirun-agent --serve-fd N [options]\n"
		"       omnirun-agent --socket PATH [options]\n"
		"\n"
		"Serves the OmniRun agent protocol (doc/protocol.md).\n"
		"\n"
		"  --serve-fd N      serve one connection on the open fd N, exit at its end\n"
		"  --socket PATH     listen on a Unix socket, one client at a time\n"
		"  --env-file PATH   env file for commands (default /tmp/.omnirun-env)\n"
		"  --cgroup DIR      cgroup v2 directory to run commands in\n"
		"  -h, --help        show this help\n"
		"  -V, --version     show the version\n");
}

/* Children get 0-2 by dup2 from fds we create: keep 0-2 taken so a new
 * pipe never lands there. */
static void fill_stdio(void)
{
	for (int fd = 0; fd < 3; fd++)
		if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd)
			break;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "serve-fd", required_argument, NULL, 'f' }, { "socket", required_argument, NULL, 's' },
		{ "env-file", required_argument, NULL, 'e' }, { "cgroup", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' }, { "version", no_argument, NULL, 'V' }, { 0 },
	};
	const char *sock = NULL;
	uint64_t v;
	int fd = -1, c;

	omr_log_init("omnirun-agent", 2, OMR_LOG_INFO);
	if (getpid() == 1)
		init_main(); /* the kernel's arguments are not ours to parse */
	while ((c = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			fd = omr_parse_u64(optarg, 0, 65535, &v, "fd", NULL) < 0 ? -1 : (int)v;
			if (fd < 0 || fcntl(fd, F_GETFD) < 0) {
				fprintf(stderr, "omnirun-agent: bad fd '%s'\n", optarg);
				return 2;
			}
			break;
		case 's':
			sock = optarg;
			break;
		case 'e':
			agent_cfg.env_file = optarg;
			break;
		case 'c':
			agent_cfg.cgroup = optarg;
			break;
		case 'h':
			usage(stdout);
			return fclose(stdout) == 0 ? 0 : 1;
		case 'V':
			puts(AGENT_VERSION);
			return fclose(stdout) == 0 ? 0 : 1;
		default:
			fprintf(stderr, "Try 'omnirun-agent --help'.\n");
			return 2;
		}
	}
	if (optind < argc || (fd < 0) == !sock) {
		fprintf(stderr, "omnirun-agent: give one of --serve-fd or --socket\n"
				"Try 'omnirun-agent --help'.\n");
		return 2;
	}
	fill_stdio();
	return sock ? server_run(&agent_hooks, CONN_SOCKET, -1, sock)
		    : server_run(&agent_hooks, CONN_FD, fd, NULL);
}
