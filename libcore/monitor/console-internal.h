/* The guest's console: QEMU's stdout, copied to console.log (capped,
 * rotated once) at a bounded rate. */
#ifndef OMNIRUN_MONITOR_CONSOLE_INTERNAL_H
#define OMNIRUN_MONITOR_CONSOLE_INTERNAL_H

#include <stdint.h>

#include "omnirun/base/err.h"
#include "omnirun/base/loop.h"

/* A guest may print as fast as it likes: the monitor reads its console
 * at most every CONSOLE_BATCH_MS, keeps at most CONSOLE_RATE bytes a
 * second on average (bursts up to CONSOLE_BURST, so a whole boot log is
 * always kept) and drops the rest, counting it in monitor.log at most
 * every CONSOLE_DROP_LOG_MS.  A flood then costs the host a few reads a
 * second instead of one wakeup per byte QEMU writes. */
#define CONSOLE_BATCH_MS 100
#define CONSOLE_RATE (256u << 10)
#define CONSOLE_BURST (1u << 20)
#define CONSOLE_PIPE_SIZE (256u << 10)
#define CONSOLE_DROP_LOG_MS 10000

struct mon_console {
	struct omr_loop *loop;
	int dir_fd;           /* the sandbox's state dir (borrowed) */
	int log_fd;           /* console.log */
	int pipe_fd;          /* QEMU's stdout and stderr; -1 after EOF */
	uint64_t log_max;     /* rotate past this */
	uint64_t written;     /* bytes in console.log */
	uint64_t tokens;      /* bytes that may be kept now */
	uint64_t refilled_ms; /* when tokens were last topped up */
	uint64_t dropped;     /* not yet reported */
	uint64_t dropped_all;
	uint64_t reported_ms; /* when drops were last logged (0: never) */
	uint64_t timer;       /* re-arms reading, 0 if none */
};

/* Opens console.log under dir_fd (appending).  Returns 0 or < 0 with *err. */
int mon_console_open(struct mon_console *con, int dir_fd, uint64_t log_max,
		     struct omr_err **err);
/* Takes pipe_fd (the read end of QEMU's stdout) and copies it on loop l.
 * Returns 0 or < 0 with *err (pipe_fd is closed then). */
int mon_console_start(struct mon_console *con, struct omr_loop *l, int pipe_fd,
		      struct omr_err **err);
/* Once the VMM is gone: copies what is left in the pipe (within the same
 * rate), logs the drop count, closes the pipe. */
void mon_console_finish(struct mon_console *con);
/* Closes everything. */
void mon_console_close(struct mon_console *con);

#endif
