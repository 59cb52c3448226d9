/* The guest's console; see console-internal.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "console-internal.h"
#include "omnirun/base/io.h"
#include "omnirun/base/log.h"
#include "omnirun/base/util.h"

/* Read buffer; one wakeup reads at most CONSOLE_PIPE_SIZE. */
#define CONSOLE_CHUNK 65536

static int log_open(struct mon_console *con)
{
	con->log_fd = openat(con->dir_fd, "console.log",
			     O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (con->log_fd < 0)
		return -errno;
	con->written = (uint64_t)lseek(con->log_fd, 0, SEEK_END);
	return 0;
}

int mon_console_open(struct mon_console *con, int dir_fd, uint64_t log_max, struct omr_err **err)
{
	*con = (struct mon_console){ .dir_fd = dir_fd, .log_fd = -1, .pipe_fd = -1,
				     .log_max = log_max, .tokens = CONSOLE_BURST };
	if (log_open(con) < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot open the console log");
	return 0;
}

/* Keeps buf in the log: each file is filled to the cap, then rotated,
 * so the host keeps at most two capped files and the older one is whole
 * (a large read is split across the rotation). */
static void log_write(struct mon_console *con, const char *buf, size_t n)
{
	while (n) {
		size_t room = con->log_max > con->written ? con->log_max - con->written : 0;
		size_t k = n < room ? n : room;

		if (k == 0) {
			if (con->log_fd >= 0)
				close(con->log_fd);
			renameat(con->dir_fd, "console.log", con->dir_fd, "console.log.1");
			con->written = 0;
			if (log_open(con) < 0)
				return;
			continue;
		}
		if (con->log_fd < 0 || omr_write_all(con->log_fd, buf, k) < 0)
			return;
		con->written += k;
		buf += k;
		n -= k;
	}
}

static void refill(struct mon_console *con, uint64_t now)
{
	uint64_t add = (now - con->refilled_ms) * CONSOLE_RATE / 1000;

	if (!add)
		return;
	con->tokens = con->tokens + add > CONSOLE_BURST ? CONSOLE_BURST : con->tokens + add;
	con->refilled_ms = now;
}

static void report_drops(struct mon_console *con, uint64_t now, int final)
{
	if (final && con->dropped_all) {
		omr_log(OMR_LOG_WARN, "console: dropped %llu bytes in all over the rate limit "
			"of %u KiB/s", (unsigned long long)con->dropped_all, CONSOLE_RATE >> 10);
	} else if (con->dropped && (!con->reported_ms || now - con->reported_ms >= CONSOLE_DROP_LOG_MS)) {
		omr_log(OMR_LOG_WARN, "console: dropped %llu bytes over the rate limit of %u KiB/s "
			"(%llu so far)", (unsigned long long)con->dropped, CONSOLE_RATE >> 10,
			(unsigned long long)con->dropped_all);
		con->reported_ms = now;
	} else {
		return;
	}
	con->dropped = 0;
}

/* Reads what the pipe holds (at most CONSOLE_PIPE_SIZE), keeping what the
 * rate allows.  Returns 0 once the pipe is empty, 1 if more may be there,
 * -1 at EOF or on an error. */
static int drain(struct mon_console *con)
{
	char buf[CONSOLE_CHUNK];
	uint64_t now = omr_now_ms();
	size_t total = 0;

	refill(con, now);
	while (total < CONSOLE_PIPE_SIZE) {
		ssize_t n = read(con->pipe_fd, buf, sizeof(buf));
		size_t keep;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			report_drops(con, now, 0);
			return 0;
		}
		if (n <= 0)
			return -1;
		total += (size_t)n;
		keep = (uint64_t)n < con->tokens ? (size_t)n : (size_t)con->tokens;
		if (keep)
			log_write(con, buf, keep);
		con->tokens -= keep;
		con->dropped += (size_t)n - keep;
		con->dropped_all += (size_t)n - keep;
	}
	report_drops(con, now, 0);
	return 1;
}

static void stop(struct mon_console *con)
{
	if (con->timer)
		omr_loop_cancel_timer(con->loop, con->timer);
	con->timer = 0;
	if (con->pipe_fd >= 0) {
		omr_loop_remove_fd(con->loop, con->pipe_fd);
		close(con->pipe_fd);
		con->pipe_fd = -1;
	}
}

static void rearm(void *user)
{
	struct mon_console *con = user;

	con->timer = 0;
	omr_loop_set_events(con->loop, con->pipe_fd, EPOLLIN);
}

static void on_readable(void *user, int fd, uint32_t events)
{
	struct mon_console *con = user;

	(void)fd;
	(void)events;
	if (drain(con) < 0) {
		stop(con);
		return;
	}
	/* Not read again for a while: a flood costs a few wakeups a second.
	 * A hangup still comes (epoll always reports it). */
	omr_loop_set_events(con->loop, con->pipe_fd, 0);
	if (!con->timer)
		con->timer = omr_loop_add_timer(con->loop, CONSOLE_BATCH_MS, rearm, con);
}

int mon_console_start(struct mon_console *con, struct omr_loop *l, int pipe_fd,
		      struct omr_err **err)
{
	con->loop = l;
	con->pipe_fd = pipe_fd;
	con->refilled_ms = omr_now_ms();
	omr_fd_set_nonblock(pipe_fd, 1);
	/* Room for a whole batch, so QEMU seldom finds the pipe full (then
	 * it stalls the guest's serial port, not itself).  Best effort. */
	(void)fcntl(pipe_fd, F_SETPIPE_SZ, (int)CONSOLE_PIPE_SIZE);
	if (omr_loop_add_fd(l, pipe_fd, EPOLLIN, on_readable, con, err) < 0) {
		close(pipe_fd);
		con->pipe_fd = -1;
		return -1;
	}
	return 0;
}

void mon_console_finish(struct mon_console *con)
{
	/* The VMM is reaped: the pipe ends at what it holds.  EAGAIN means
	 * another process still holds its write end: no waiting for it. */
	if (con->pipe_fd >= 0) {
		while (drain(con) > 0)
			;
		stop(con);
	}
	report_drops(con, omr_now_ms(), 1);
}

void mon_console_close(struct mon_console *con)
{
	if (con->loop)
		stop(con);
	else if (con->pipe_fd >= 0)
		close(con->pipe_fd);
	con->pipe_fd = -1;
	if (con->log_fd >= 0)
		close(con->log_fd);
	con->log_fd = -1;
}
