/* Small helpers of the agent's own: sysfs writes and path pieces.  The
 * rest (clocks, fds, files, UTF-8, base64, logging) is libcore/base. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

int file_write_str(const char *path, const char *s)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0)
		return -errno;
	/* sysfs/procfs take one write per value: no retry loop. */
	if (write(fd, s, strlen(s)) < 0)
		return -errno;
	return 0;
}

char *path_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash || slash == path)
		return omr_xstrdup("/");
	return omr_strdup_printf("%.*s", (int)(slash - path), path);
}

char *path_join(const char *dir, const char *name)
{
	size_t d = strlen(dir);

	return omr_strdup_printf("%s%s%s", dir, d && dir[d - 1] == '/' ? "" : "/", name);
}
