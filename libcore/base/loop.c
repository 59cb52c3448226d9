/* The event loop of omnirun/base/loop.h: epoll for fds, a min-heap of
 * one-shot timers that sets epoll_wait's timeout, one signalfd for every
 * signal taken. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "omnirun/base/loop.h"
#include "omnirun/base/util.h"

/* Events taken from the kernel per epoll_wait. */
#define LOOP_BATCH 64

struct loop_fd {
	int fd;
	uint32_t events;
	omr_loop_io_fn fn;
	void *user;
	struct loop_fd *next_dead; /* removed during a batch: freed after it */
	int dead;
};

struct loop_timer {
	uint64_t due, id;
	omr_loop_timer_fn fn;
	void *user;
};

struct loop_sig {
	omr_loop_signal_fn fn;
	void *user;
};

struct omr_loop {
	int epfd;
	struct loop_fd **by_fd;   /* indexed by fd */
	size_t by_fd_cap;
	struct loop_fd *dead;
	struct loop_timer *timers; /* min-heap on (due, id) */
	size_t ntimers, timers_cap;
	uint64_t next_timer_id;
	int sig_fd;
	sigset_t sigs;
	struct loop_sig sig[_NSIG];
	int quit, status;
};

struct omr_loop *omr_loop_new(struct omr_err **err)
{
	struct omr_loop *l = omr_xcalloc(1, sizeof(*l));

	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		omr_err_set(err, OMR_E_FAIL, errno, "cannot create an epoll instance");
		free(l);
		return NULL;
	}
	l->sig_fd = -1;
	l->next_timer_id = 1;
	sigemptyset(&l->sigs);
	return l;
}

static void free_dead(struct omr_loop *l)
{
	while (l->dead) {
		struct loop_fd *e = l->dead;
		l->dead = e->next_dead;
		free(e);
	}
}

void omr_loop_free(struct omr_loop *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->by_fd_cap; i++)
		free(l->by_fd[i]);
	free_dead(l);
	free(l->by_fd);
	free(l->timers);
	if (l->sig_fd >= 0)
		close(l->sig_fd);
	close(l->epfd);
	free(l);
}

static struct loop_fd *lookup(struct omr_loop *l, int fd)
{
	return fd >= 0 && (size_t)fd < l->by_fd_cap ? l->by_fd[fd] : NULL;
}

int omr_loop_add_fd(struct omr_loop *l, int fd, uint32_t events, omr_loop_io_fn fn, void *user,
		    struct omr_err **err)
{
	struct epoll_event ev = { .events = events };
	struct loop_fd *e;

	if (fd < 0)
		return omr_err_setx(err, OMR_E_USAGE, EBADF, "cannot watch fd %d", fd);
	if (lookup(l, fd))
		return omr_err_setx(err, OMR_E_USAGE, EEXIST, "fd %d is watched already", fd);
	if ((size_t)fd >= l->by_fd_cap) {
		size_t cap = l->by_fd_cap ? l->by_fd_cap : 64;
		while (cap <= (size_t)fd)
			cap *= 2;
		l->by_fd = omr_xrealloc(l->by_fd, cap * sizeof(*l->by_fd));
		memset(l->by_fd + l->by_fd_cap, 0, (cap - l->by_fd_cap) * sizeof(*l->by_fd));
		l->by_fd_cap = cap;
	}
	e = omr_xcalloc(1, sizeof(*e));
	*e = (struct loop_fd){ .fd = fd, .events = events, .fn = fn, .user = user };
	ev.data.ptr = e;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int en = errno;
		free(e);
		return omr_err_set(err, OMR_E_FAIL, en, "cannot watch fd %d", fd);
	}
	l->by_fd[fd] = e;
	return 0;
}

int omr_loop_set_events(struct omr_loop *l, int fd, uint32_t events)
{
	struct loop_fd *e = lookup(l, fd);
	struct epoll_event ev = { .events = events };

	if (!e)
		return -ENOENT;
	if (e->events == events)
		return 0;
	ev.data.ptr = e;
	if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
		return -errno;
	e->events = events;
	return 0;
}

void omr_loop_remove_fd(struct omr_loop *l, int fd)
{
	struct loop_fd *e = lookup(l, fd);

	if (!e)
		return;
	/* Fails harmlessly if the caller closed fd already. */
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
	l->by_fd[fd] = NULL;
	/* Events of this batch may still point at e: it is freed after. */
	e->dead = 1;
	e->next_dead = l->dead;
	l->dead = e;
}

/* --- timers --- */

static int timer_before(const struct loop_timer *a, const struct loop_timer *b)
{
	return a->due < b->due || (a->due == b->due && a->id < b->id);
}

static void heap_swap(struct omr_loop *l, size_t i, size_t j)
{
	struct loop_timer t = l->timers[i];

	l->timers[i] = l->timers[j];
	l->timers[j] = t;
}

static void heap_up(struct omr_loop *l, size_t i)
{
	while (i > 0 && timer_before(&l->timers[i], &l->timers[(i - 1) / 2])) {
		heap_swap(l, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void heap_down(struct omr_loop *l, size_t i)
{
	for (;;) {
		size_t c = 2 * i + 1, m = i;

		if (c < l->ntimers && timer_before(&l->timers[c], &l->timers[m]))
			m = c;
		if (c + 1 < l->ntimers && timer_before(&l->timers[c + 1], &l->timers[m]))
			m = c + 1;
		if (m == i)
			return;
		heap_swap(l, i, m);
		i = m;
	}
}

static void heap_remove(struct omr_loop *l, size_t i)
{
	l->timers[i] = l->timers[--l->ntimers];
	if (i < l->ntimers) {
		heap_down(l, i);
		heap_up(l, i);
	}
}

uint64_t omr_loop_add_timer(struct omr_loop *l, uint64_t delay_ms, omr_loop_timer_fn fn, void *user)
{
	uint64_t now = omr_now_ms(), id = l->next_timer_id++;

	if (l->ntimers == l->timers_cap) {
		l->timers_cap = l->timers_cap ? l->timers_cap * 2 : 16;
		l->timers = omr_xrealloc(l->timers, l->timers_cap * sizeof(*l->timers));
	}
	l->timers[l->ntimers] = (struct loop_timer){
		.due = delay_ms > UINT64_MAX - now ? UINT64_MAX : now + delay_ms,
		.id = id, .fn = fn, .user = user,
	};
	heap_up(l, l->ntimers++);
	return id;
}

void omr_loop_cancel_timer(struct omr_loop *l, uint64_t id)
{
	for (size_t i = 0; i < l->ntimers; i++) {
		if (l->timers[i].id == id) {
			heap_remove(l, i);
			return;
		}
	}
}

/* Fires the timers due now, but none added meanwhile: a callback that
 * re-arms itself with delay 0 runs again at the next turn, after I/O. */
static void run_timers(struct omr_loop *l)
{
	uint64_t now = omr_now_ms(), last_id = l->next_timer_id;

	while (!l->quit && l->ntimers && l->timers[0].due <= now && l->timers[0].id < last_id) {
		struct loop_timer t = l->timers[0];

		heap_remove(l, 0);
		t.fn(t.user);
	}
}

/* epoll_wait's timeout: until the first timer, -1 without any. */
static int next_timeout(struct omr_loop *l)
{
	uint64_t now;

	if (!l->ntimers)
		return -1;
	now = omr_now_ms();
	if (l->timers[0].due <= now)
		return 0;
	return l->timers[0].due - now > INT_MAX ? INT_MAX : (int)(l->timers[0].due - now);
}

/* --- signals --- */

static void on_signalfd(void *user, int fd, uint32_t events)
{
	struct omr_loop *l = user;
	struct signalfd_siginfo si;

	(void)events;
	while (!l->quit && read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		struct loop_sig *s = si.ssi_signo < _NSIG ? &l->sig[si.ssi_signo] : NULL;
		if (s && s->fn)
			s->fn(s->user, &si);
	}
}

int omr_loop_add_signal(struct omr_loop *l, int signo, omr_loop_signal_fn fn, void *user,
			struct omr_err **err)
{
	sigset_t one;
	int fd;

	if (signo <= 0 || signo >= _NSIG || signo == SIGKILL || signo == SIGSTOP)
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "cannot take signal %d", signo);
	if (l->sig[signo].fn)
		return omr_err_setx(err, OMR_E_USAGE, EEXIST, "signal %d is taken already", signo);
	/* Blocked first: one arriving meanwhile waits for the signalfd
	 * instead of taking its default action. */
	sigemptyset(&one);
	sigaddset(&one, signo);
	sigprocmask(SIG_BLOCK, &one, NULL);
	signal(signo, SIG_DFL);
	sigaddset(&l->sigs, signo);
	/* The first call makes the signalfd; later ones change its set. */
	fd = signalfd(l->sig_fd, &l->sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	if (fd < 0) {
		sigdelset(&l->sigs, signo);
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot create a signalfd");
	}
	if (l->sig_fd < 0) {
		l->sig_fd = fd;
		if (omr_loop_add_fd(l, fd, EPOLLIN, on_signalfd, l, err) < 0)
			return -1;
	}
	l->sig[signo] = (struct loop_sig){ .fn = fn, .user = user };
	return 0;
}

/* --- running --- */

int omr_loop_run(struct omr_loop *l)
{
	struct epoll_event ev[LOOP_BATCH];

	while (!l->quit) {
		int n = epoll_wait(l->epfd, ev, LOOP_BATCH, next_timeout(l));

		if (n < 0 && errno != EINTR)
			return -errno;
		for (int i = 0; i < n && !l->quit; i++) {
			struct loop_fd *e = ev[i].data.ptr;
			if (!e->dead)
				e->fn(e->user, e->fd, ev[i].events);
		}
		free_dead(l);
		run_timers(l);
		free_dead(l);
	}
	l->quit = 0;
	return l->status;
}

void omr_loop_quit(struct omr_loop *l, int status)
{
	l->quit = 1;
	l->status = status;
}
