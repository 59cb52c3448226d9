/* Unit tests for the event loop (libcore/base/loop.c).  TAP. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "omnirun/base/loop.h"
#include "omnirun/base/util.h"

#include "tap.h"

static struct omr_loop *L;

/* --- fds --- */

struct io {
	int fd, calls;
	uint32_t events;
	int remove_fd;  /* removed (and closed) by this callback, or -1 */
	int quit;
};

static void on_io(void *user, int fd, uint32_t events)
{
	struct io *io = user;
	char buf[64];

	io->calls++;
	io->events |= events;
	if (events & EPOLLIN)
		(void)!read(fd, buf, sizeof(buf));
	if (io->remove_fd >= 0) {
		omr_loop_remove_fd(L, io->remove_fd);
		close(io->remove_fd);
		io->remove_fd = -1;
	}
	if (io->quit)
		omr_loop_quit(L, io->quit);
}

static void quit_timer(void *user)
{
	omr_loop_quit(L, (int)(intptr_t)user);
}

static void test_fds(void)
{
	int a[2], b[2];
	struct io ia = { .remove_fd = -1 }, ib = { .remove_fd = -1 };
	struct omr_err *err = NULL;
	uint64_t id;
	int rc;

	ok(pipe2(a, O_CLOEXEC | O_NONBLOCK) == 0 && pipe2(b, O_CLOEXEC | O_NONBLOCK) == 0, "pipes");
	ok(omr_loop_add_fd(L, a[0], EPOLLIN, on_io, &ia, &err) == 0 &&
		   omr_loop_add_fd(L, b[0], EPOLLIN, on_io, &ib, &err) == 0,
	   "fds: added");
	ok(omr_loop_add_fd(L, a[0], EPOLLIN, on_io, &ia, &err) < 0 && err && strstr(err->msg, "already"),
	   "fds: one registration per fd");
	omr_err_free(&err);
	/* Both ready in the same batch; whichever runs first removes and
	 * closes the other, whose event must not be delivered. */
	(void)!write(a[1], "x", 1);
	(void)!write(b[1], "y", 1);
	ia.remove_fd = b[0];
	ib.remove_fd = a[0];
	omr_loop_add_timer(L, 50, quit_timer, (void *)(intptr_t)7);
	is_int(omr_loop_run(L), 7, "run: returns the quit status");
	is_int(ia.calls + ib.calls, 1, "remove_fd from a callback: the removed fd's event is not delivered");
	/* The survivor goes too. */
	omr_loop_remove_fd(L, ia.calls ? a[0] : b[0]);
	close(ia.calls ? a[0] : b[0]);
	close(a[1]);
	close(b[1]);
	/* A hangup comes even when nothing else is watched. */
	ok(pipe2(a, O_CLOEXEC | O_NONBLOCK) == 0, "pipe");
	ia = (struct io){ .remove_fd = -1, .quit = 1 };
	omr_loop_add_fd(L, a[0], 0, on_io, &ia, NULL);
	close(a[1]);
	id = omr_loop_add_timer(L, 2000, quit_timer, (void *)(intptr_t)2);
	ok(omr_loop_run(L) == 1 && (ia.events & EPOLLHUP), "events 0: a hangup still comes");
	omr_loop_cancel_timer(L, id);
	omr_loop_remove_fd(L, a[0]);
	close(a[0]);
	/* set_events */
	ok(pipe2(a, O_CLOEXEC | O_NONBLOCK) == 0, "pipe");
	ia = (struct io){ .remove_fd = -1, .quit = 3 };
	omr_loop_add_fd(L, a[1], 0, on_io, &ia, NULL);
	rc = omr_loop_set_events(L, a[1], EPOLLOUT);
	ok(rc == 0 && omr_loop_run(L) == 3 && (ia.events & EPOLLOUT),
	   "set_events: EPOLLOUT on a pipe's write end (%d, %#x)", rc, ia.events);
	is_int(omr_loop_set_events(L, 999, EPOLLIN), -ENOENT, "set_events: an unknown fd is -ENOENT");
	omr_loop_remove_fd(L, a[1]);
	omr_loop_remove_fd(L, a[1]); /* twice: nothing */
	close(a[0]);
	close(a[1]);
}

/* --- timers --- */

static char order[32];
static size_t norder;
static uint64_t cancel_me;

static void mark(void *user)
{
	char c = (char)(intptr_t)user;

	if (norder + 1 < sizeof(order))
		order[norder++] = c;
	if (c == 'b')
		omr_loop_cancel_timer(L, cancel_me);
	if (c == 'z')
		omr_loop_quit(L, 0);
}

static int rearms;

static void rearm0(void *user)
{
	(void)user;
	if (++rearms < 1000)
		omr_loop_add_timer(L, 0, rearm0, NULL);
}

static void test_timers(void)
{
	uint64_t t0 = omr_now_ms(), id1, id2;
	struct io io = { .remove_fd = -1 };
	int p[2];

	norder = 0;
	omr_loop_add_timer(L, 30, mark, (void *)'c');
	omr_loop_add_timer(L, 10, mark, (void *)'a');
	omr_loop_add_timer(L, 20, mark, (void *)'b');
	cancel_me = omr_loop_add_timer(L, 25, mark, (void *)'X');
	omr_loop_add_timer(L, 40, mark, (void *)'z');
	omr_loop_run(L);
	order[norder] = 0;
	is_str(order, "abcz", "timers: fire in order, a cancelled one never");
	ok(omr_now_ms() - t0 >= 40, "timers: not before their time");
	id1 = omr_loop_add_timer(L, 5, mark, (void *)'q');
	id2 = omr_loop_add_timer(L, 5, mark, (void *)'r');
	ok(id1 > 0 && id2 > id1, "timers: ids are positive and new");
	omr_loop_cancel_timer(L, id1);
	omr_loop_cancel_timer(L, id1); /* gone: ignored */
	omr_loop_cancel_timer(L, id2);
	/* A timer that re-arms itself with 0 does not starve I/O. */
	ok(pipe(p) == 0, "pipe");
	io.quit = 5;
	omr_loop_add_fd(L, p[0], EPOLLIN, on_io, &io, NULL);
	rearms = 0;
	omr_loop_add_timer(L, 0, rearm0, NULL);
	(void)!write(p[1], "x", 1);
	ok(omr_loop_run(L) == 5 && rearms < 1000, "timers: delay 0 runs after pending I/O (%d)", rearms);
	omr_loop_remove_fd(L, p[0]);
	close(p[0]);
	close(p[1]);
	omr_loop_add_timer(L, 0, quit_timer, (void *)(intptr_t)0);
	omr_loop_run(L); /* lets rearm0 finish */
	while (rearms < 1000) {
		omr_loop_add_timer(L, 1, quit_timer, (void *)(intptr_t)0);
		omr_loop_run(L);
	}
}

/* --- signals --- */

static int got_signo;

static void on_sig(void *user, const struct signalfd_siginfo *si)
{
	(void)user;
	got_signo = (int)si->ssi_signo;
	omr_loop_quit(L, 9);
}

static void test_signals(void)
{
	struct omr_err *err = NULL;
	sigset_t now;

	/* Ignored by whoever started us: still delivered. */
	signal(SIGUSR2, SIG_IGN);
	ok(omr_loop_add_signal(L, SIGUSR2, on_sig, NULL, &err) == 0, "signals: SIGUSR2 taken");
	ok(omr_loop_add_signal(L, SIGUSR1, on_sig, NULL, &err) == 0, "signals: SIGUSR1 taken");
	ok(omr_loop_add_signal(L, SIGUSR1, on_sig, NULL, &err) < 0, "signals: one handler per signal");
	omr_err_free(&err);
	ok(omr_loop_add_signal(L, SIGKILL, on_sig, NULL, &err) < 0, "signals: not SIGKILL");
	omr_err_free(&err);
	sigprocmask(SIG_BLOCK, NULL, &now);
	ok(sigismember(&now, SIGUSR1) && sigismember(&now, SIGUSR2), "signals: blocked");
	raise(SIGUSR2);
	ok(omr_loop_run(L) == 9 && got_signo == SIGUSR2, "signals: an ignored SIGUSR2 arrives");
	kill(getpid(), SIGUSR1);
	ok(omr_loop_run(L) == 9 && got_signo == SIGUSR1, "signals: SIGUSR1 arrives");
}

int main(void)
{
	struct omr_err *err = NULL;

	L = omr_loop_new(&err);
	ok(L != NULL, "loop: new");
	if (!L)
		return 1;
	test_fds();
	test_timers();
	test_signals();
	omr_loop_free(L);
	return done_testing();
}
