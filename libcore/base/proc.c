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

/* realpath() of a program, or NULL. */
char *omr_program_realpath(char *path_owned)
{
	char *real = path_owned ? realpath(path_owned, NULL) : NULL;

	free(path_owned);
	return real;
}

/* What /proc/PID/exe names (" (deleted)" dropped: a rebuilt binary), or NULL. */
char *omr_proc_exe(pid_t pid)
{
	_cleanup_free_ char *link = omr_strdup_printf("/proc/%d/exe", (int)pid);
	char buf[4096];
	ssize_t n = readlink(link, buf, sizeof(buf) - 1);
	static const char del[] = " (deleted)";

	if (n <= 0 || n == (ssize_t)sizeof(buf) - 1)
		return NULL;
	buf[n] = 0;
	if ((size_t)n > strlen(del) && !strcmp(buf + n - strlen(del), del))
		buf[n - strlen(del)] = 0;
	return omr_xstrdup(buf);
}

/* The real uid of pid, or -1. */
long omr_proc_uid(pid_t pid)
{
	_cleanup_free_ char *path = omr_strdup_printf("/proc/%d/status", (int)pid);
	_cleanup_free_ char *text = NULL;
	char *u;

	if (omr_read_file_at(AT_FDCWD, path, 65536, &text, NULL, NULL) < 0 ||
	    !(u = strstr(text, "\nUid:")))
		return -1;
	return strtol(u + 5, NULL, 10);
}

int omr_proc_is(pid_t pid, const char *exe)
{
	_cleanup_free_ char *have = exe ? omr_proc_exe(pid) : NULL;
	long uid = omr_proc_uid(pid);

	return have && !strcmp(have, exe) && (uid == 0 || uid == (long)getuid());
}
