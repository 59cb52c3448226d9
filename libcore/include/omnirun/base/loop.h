/* One event loop that owns the process (epoll): file descriptors,
 * one-shot timers and signals, each a source that registers a callback.
 * The monitor serves its sandbox on it; the network helpers and the shim
 * will too.  Level-triggered; callbacks run one at a time, in the thread
 * that calls omr_loop_run, and may add or remove any source (their own
 * included) while they run. */
#ifndef OMNIRUN_BASE_LOOP_H
#define OMNIRUN_BASE_LOOP_H

#include <stdint.h>
#include <sys/signalfd.h>

#include "omnirun/base/err.h"

struct omr_loop;

/* events: the EPOLLIN/EPOLLOUT/EPOLLHUP/EPOLLERR bits that are ready. */
typedef void (*omr_loop_io_fn)(void *user, int fd, uint32_t events);
typedef void (*omr_loop_timer_fn)(void *user);
typedef void (*omr_loop_signal_fn)(void *user, const struct signalfd_siginfo *si);

/* A new loop, or NULL with *err. */
struct omr_loop *omr_loop_new(struct omr_err **err);

/* Frees the loop and its sources.  The fds it watched stay open (they
 * are the callers'); signals it took stay blocked, so that one arriving
 * after the loop is gone does not kill the process. */
void omr_loop_free(struct omr_loop *l);

/* Watches fd for events (EPOLLIN, EPOLLOUT; EPOLLHUP and EPOLLERR always
 * come).  One registration per fd.  Returns 0 or < 0 with *err. */
int omr_loop_add_fd(struct omr_loop *l, int fd, uint32_t events, omr_loop_io_fn fn, void *user,
		    struct omr_err **err);

/* Changes what fd is watched for (0: only hangups and errors).  Returns 0,
 * -ENOENT if fd is not watched, or another -errno. */
int omr_loop_set_events(struct omr_loop *l, int fd, uint32_t events);

/* Stops watching fd (it is not closed).  Safe from inside a callback: an
 * event already fetched for fd is not delivered.  Call it before closing
 * fd.  Does nothing if fd is not watched. */
void omr_loop_remove_fd(struct omr_loop *l, int fd);

/* Calls fn once, delay_ms from now (0: at the next turn of the loop, after
 * the pending I/O).  Returns the timer's id (> 0). */
uint64_t omr_loop_add_timer(struct omr_loop *l, uint64_t delay_ms, omr_loop_timer_fn fn, void *user);

/* Cancels a timer that has not fired; an unknown or fired id is ignored. */
void omr_loop_cancel_timer(struct omr_loop *l, uint64_t id);

/* Delivers signo to fn through a signalfd.  The signal is blocked and its
 * disposition reset to the default (a signal ignored by whoever started
 * us is discarded by the kernel, even when blocked).  Signals coalesce:
 * a SIGCHLD handler must reap every child that is ready.  One handler per
 * signal.  Returns 0 or < 0 with *err. */
int omr_loop_add_signal(struct omr_loop *l, int signo, omr_loop_signal_fn fn, void *user,
			struct omr_err **err);

/* Runs callbacks until omr_loop_quit is called; returns the status given
 * to it (or -errno if epoll_wait fails).  It may be run again after. */
int omr_loop_run(struct omr_loop *l);

/* Makes omr_loop_run return status once the current callback returns. */
void omr_loop_quit(struct omr_loop *l, int status);

#endif
