/* Timestamped one-line logging; see omnirun/log.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "omnirun/base/log.h"
#include "omnirun/base/util.h"

static const char *log_prog = "omnirun";
static int log_fd = 2;
static enum omr_log_level log_max = OMR_LOG_INFO;
static int log_kmsg;

void omr_log_init(const char *prog, int fd, enum omr_log_level max)
{
	const char *d = getenv("OMNIRUN_DEBUG");

	log_prog = prog;
	log_fd = fd;
	log_max = (d && *d == '1') ? OMR_LOG_DEBUG : max;
}

void omr_log_kmsg(int fd)
{
	log_fd = fd;
	log_kmsg = 1;
}

void omr_log(enum omr_log_level lvl, const char *fmt, ...)
{
	static const char *const names[] = { [OMR_LOG_ERR] = "error", [OMR_LOG_WARN] = "warning",
					     [OMR_LOG_INFO] = "info", [OMR_LOG_DEBUG] = "debug" };
	char line[1024], ts[32];
	va_list ap;
	int n;

	if (log_fd < 0 || lvl > log_max)
		return;
	if (log_kmsg) {
		/* The levels are syslog's, which /dev/kmsg reads. */
		n = snprintf(line, sizeof(line), "<%d>%s[%d]: ", (int)lvl, log_prog, (int)getpid());
	} else {
		omr_format_time((int64_t)(omr_wall_ms() / 1000), ts);
		n = snprintf(line, sizeof(line), "%s %s[%d] %s: ", ts, log_prog, (int)getpid(),
			     names[lvl]);
	}
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(line))
		vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	n = (int)strnlen(line, sizeof(line) - 2);
	line[n++] = '\n';
	/* One write so that lines from several processes do not interleave. */
	(void)!write(log_fd, line, (size_t)n);
}
