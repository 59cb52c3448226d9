/* Clocks in milliseconds and RFC 3339 times. See omnirun/base/util.h. */
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

uint64_t omr_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t omr_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void omr_format_time(int64_t secs, char buf[32])
{
	time_t t = (time_t)secs;
	struct tm tm;

	if (secs <= 0 || !gmtime_r(&t, &tm)) {
		strcpy(buf, "-");
		return;
	}
	strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void omr_format_size(uint64_t n, char buf[16])
{
	static const char units[] = "BKMGT";
	double v = (double)n;
	int u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, 16, "%lluB", (unsigned long long)n);
	else
		snprintf(buf, 16, "%.1f%c", v, units[u]);
}
