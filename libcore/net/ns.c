/* Moving the monitor's thread between the host's namespace and the
 * sandbox's.  Sockets and netlink handles keep the namespace they were
 * made in, so the monitor stays in the host's and steps into the
 * sandbox's only to make things there. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "omnirun/base/log.h"
#include "net-internal.h"

int net_ns_enter(struct omr_net *n, struct omr_err **err)
{
	if (setns(n->sb_ns, CLONE_NEWNET) < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot enter the sandbox's network namespace");
	return 0;
}

void net_ns_leave(struct omr_net *n)
{
	if (setns(n->host_ns, CLONE_NEWNET) < 0) {
		/* Every socket made from here on would live in the
		 * sandbox's namespace: the proxy would dial from there. */
		omr_log(OMR_LOG_ERR, "cannot return to the host's network namespace: %s",
			strerror(errno));
		abort();
	}
}

int net_sysctl(const char *path, const char *val, struct omr_err **err)
{
	_cleanup_free_ char *full = omr_strdup_printf("/proc/sys/net/%s", path);
	_cleanup_close_ int fd = open(full, O_WRONLY | O_CLOEXEC);

	if (fd < 0 || omr_write_all(fd, val, strlen(val)) < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot set %s", full);
	return 0;
}

int net_sysctl_read(const char *path, char *buf, size_t n)
{
	_cleanup_free_ char *full = omr_strdup_printf("/proc/sys/net/%s", path);
	_cleanup_close_ int fd = open(full, O_RDONLY | O_CLOEXEC);
	ssize_t r;

	if (fd < 0)
		return -errno;
	r = read(fd, buf, n - 1);
	if (r < 0)
		return -errno;
	buf[r] = 0;
	buf[strcspn(buf, "\n")] = 0;
	return 0;
}
