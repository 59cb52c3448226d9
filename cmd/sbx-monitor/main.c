/* sbx-monitor: started by sbx-create, one per sandbox.  Not for people. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cli.h"
#include "omnirun/base/exitcodes.h"
#include "omnirun/base/ids.h"
#include "omnirun/base/log.h"
#include "omnirun/client/pool.h"
#include "omnirun/monitor/monitor.h"

static void usage(void)
{
	printf("Usage: sbx-monitor --ready-fd FD ID\n"
	       "       sbx-monitor --fill-pool TEMPLATE\n\n"
	       "Runs one sandbox: its QEMU child, its agent channel, monitor.sock and\n"
	       "its lifetime.  Started by sbx-create; not meant to be run by hand.\n"
	       "With --fill-pool, fills the warm pool of TEMPLATE instead (started in\n"
	       "the background after a create of it; sbx-pool fill is the operator's).\n\n"
	       "  --ready-fd FD         write the boot outcome (one JSON line) to FD\n"
	       "  --fill-pool TEMPLATE  fill the pool of TEMPLATE and exit\n"
	       "  -h, --help            show this help\n"
	       "  -V, --version         show the version\n");
	exit(OMR_EXIT_OK);
}

static void say(void *user, const char *msg)
{
	(void)user;
	omr_log(OMR_LOG_INFO, "%s", msg);
}

/* The background filler (omr_pool_refill_background): its output is
 * the pool's log; a failure is also in the pool's status. */
static int fill_pool(const char *name)
{
	struct omr_config *c;
	struct omr_err *err = NULL;
	unsigned made = 0;
	int rc;

	omr_log_init("sbx-monitor", 2, OMR_LOG_INFO);
	if (omr_config_load(&c, &err) < 0) {
		omr_log(OMR_LOG_ERR, "pool %s: %s", name, err->msg);
		omr_err_free(&err);
		return OMR_EXIT_FAILURE;
	}
	rc = omr_pool_fill(c, name, 0, say, NULL, &made, &err);
	if (rc < 0) {
		omr_log(OMR_LOG_ERR, "%s", err->msg);
		rc = omr_err_kind_info(err->kind)->exit_code;
	} else if (made) {
		omr_log(OMR_LOG_INFO, "pool %s: %u started", name, made);
	}
	omr_err_free(&err);
	omr_config_free(c);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "ready-fd", required_argument, NULL, 'r' },
		{ "fill-pool", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	struct omr_config *c;
	struct omr_err *err = NULL;
	int ready_fd = -1, ch;
	const char *pool = NULL;

	omr_cli_init(argv[0]);
	while ((ch = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
		switch (ch) {
		case 'r': ready_fd = (int)omr_cli_number(optarg, 3, 1024, "ready fd"); break;
		case 'f': pool = optarg; break;
		case 'h': usage(); break;
		case 'V': omr_cli_version(); break;
		default: omr_cli_usage_error(OMR_EXIT_USAGE, NULL);
		}
	}
	if (pool && (optind != argc || ready_fd >= 0))
		omr_cli_usage_error(OMR_EXIT_USAGE, "--fill-pool takes a template and nothing else");
	if (pool)
		return fill_pool(pool);
	if (optind + 1 != argc || ready_fd < 0)
		omr_cli_usage_error(OMR_EXIT_USAGE, "expected --ready-fd FD and one sandbox id");
	if (!omr_id_valid(argv[optind]))
		omr_cli_usage_error(OMR_EXIT_USAGE, "invalid sandbox id '%s'", argv[optind]);
	omr_log_init("sbx-monitor", 2, OMR_LOG_INFO);
	/* Every failure is reported on the ready fd: sbx-create waits on it. */
	if (omr_config_load(&c, &err) < 0) {
		omr_log(OMR_LOG_ERR, "%s", err->msg);
		omr_monitor_report_failure(ready_fd, err);
		omr_err_free(&err);
		return OMR_EXIT_FAILURE;
	}
	if (omr_monitor_run(c, argv[optind], ready_fd, &err) < 0) {
		omr_log(OMR_LOG_ERR, "%s", err ? err->msg : "boot failed");
		omr_err_free(&err);
		omr_config_free(c);
		return OMR_EXIT_BOOT;
	}
	omr_config_free(c);
	return OMR_EXIT_OK;
}
