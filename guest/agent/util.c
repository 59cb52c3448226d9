/* Small helpers of the agent's own: sysfs writes and path pieces.  The
 * rest (clocks, fds, files, UTF-8, base64, logging) is libcore/base. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* One pass over /sys/block: the virtio disk whose serial is serial. */
static char *block_scan(const char *serial)
{
	DIR *d = opendir("/sys/block");
	struct dirent *de;
	char *found = NULL;

	if (!d)
		return NULL;
	while (!found && (de = readdir(d))) {
		_cleanup_free_ char *p = NULL, *val = NULL;
		struct stat st;

		if (de->d_name[0] == '.')
			continue;
		p = omr_strdup_printf("/sys/block/%s/serial", de->d_name);
		if (omr_read_file_at(AT_FDCWD, p, 256, &val, NULL, NULL) < 0)
			continue;
		val[strcspn(val, "\n")] = 0;
		if (strcmp(val, serial))
			continue;
		free(p);
		p = omr_strdup_printf("/dev/%s", de->d_name);
		if (stat(p, &st) == 0 && S_ISBLK(st.st_mode))
			found = omr_steal_ptr(p);
	}
	closedir(d);
	return found;
}

char *block_by_serial(const char *serial, unsigned wait_ms)
{
	uint64_t end = omr_now_ms() + wait_ms;
	char *dev;

	/* Module loading probes devices asynchronously. */
	while (!(dev = block_scan(serial)) && omr_now_ms() < end)
		usleep(20 * 1000);
	return dev;
}
