/* Processes: /proc cmdline and PATH lookups. See omnirun/base/util.h. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/base/util.h"

char *omr_proc_cmdline(pid_t pid)
{
	_cleanup_free_ char *path = omr_strdup_printf("/proc/%d/cmdline", (int)pid);
	char *cmd = NULL;
	size_t len;

	if (pid <= 0 || omr_read_file_at(AT_FDCWD, path, 65536, &cmd, &len, NULL) < 0)
		return NULL;
	for (size_t i = 0; i < len; i++)
		if (!cmd[i])
			cmd[i] = ' ';
	return cmd;
}

static int is_executable(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0;
}

char *omr_find_program(const char *name, const char *extra_dirs)
{
	const char *path = getenv("PATH");
	_cleanup_free_ char *dirs = NULL;
	char *save = NULL;

	if (strchr(name, '/'))
		return is_executable(name) ? omr_xstrdup(name) : NULL;
	dirs = omr_strdup_printf("%s%s%s", path && *path ? path : "/usr/local/bin:/usr/bin:/bin",
				 extra_dirs ? ":" : "", extra_dirs ? extra_dirs : "");
	for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		if (*d != '/')
			continue;
		_cleanup_free_ char *cand = omr_strdup_printf("%s/%s", d, name);
		if (is_executable(cand))
			return omr_steal_ptr(cand);
	}
	return NULL;
}
