/* The agent's configuration: defaults, changed by main() from its
 * options or by PID 1 from what it set up, and the omnirun.KEY=VALUE
 * parameters of the kernel's command line. */
#include <fcntl.h>
#include <string.h>

#include "agent.h"

#define MAX_PARAMS 32

struct agent_cfg agent_cfg = {
	.env_file = "/tmp/.omnirun-env",
	.disk_state = "none",
	.data_dir = "/data",
};

static char *cmdline;
static struct {
	const char *key, *val;
} params[MAX_PARAMS];
static int nparams;

const char *kernel_param(const char *key)
{
	for (int i = 0; i < nparams; i++)
		if (!strcmp(params[i].key, key))
			return params[i].val;
	return NULL;
}

void cfg_read_kernel_params(void)
{
	if (omr_read_file_at(AT_FDCWD, "/proc/cmdline", 65536, &cmdline, NULL, NULL) < 0)
		return;
	for (char *w = strtok(cmdline, " \t\n"); w && nparams < MAX_PARAMS;
	     w = strtok(NULL, " \t\n")) {
		char *eq = strchr(w, '=');
		if (strncmp(w, "omnirun.", 8) || !eq)
			continue;
		*eq = 0;
		params[nparams].key = w + 8;
		params[nparams++].val = eq + 1;
	}
}
