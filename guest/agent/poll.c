/* The poll set of one round of the server's loop: who registered which
 * fd, and the earliest wake-up asked for. */
#include <errno.h>
#include <stdlib.h>

#include "agent.h"

void poll_add(struct pollctx *pc, int fd, short events, poll_fn fn, void *obj, int tag)
{
	if (pc->n == pc->cap) {
		size_t cap = pc->cap ? pc->cap * 2 : 64;
		pc->fds = omr_xrealloc(pc->fds, cap * sizeof(*pc->fds));
		pc->ents = omr_xrealloc(pc->ents, cap * sizeof(*pc->ents));
		pc->cap = cap;
	}
	pc->fds[pc->n] = (struct pollfd){ .fd = fd, .events = events };
	pc->ents[pc->n] = (struct pollent){ .fn = fn, .obj = obj, .tag = tag };
	pc->n++;
}

void poll_wake_at(struct pollctx *pc, uint64_t when)
{
	if (when == 0)
		when = 1;
	if (!pc->wake || when < pc->wake)
		pc->wake = when;
}

void poll_reset(struct pollctx *pc)
{
	pc->n = 0;
	pc->wake = 0;
}

int poll_wait(struct pollctx *pc)
{
	uint64_t now = omr_now_ms();
	int timeout = -1;

	if (pc->wake)
		timeout = pc->wake <= now ? 0 : (int)(pc->wake - now);
	if (poll(pc->fds, pc->n, timeout) < 0)
		return -errno;
	for (size_t i = 0; i < pc->n; i++)
		if (pc->fds[i].revents)
			pc->ents[i].fn(pc->ents[i].obj, pc->ents[i].tag, pc->fds[i].revents);
	return 0;
}

void poll_free(struct pollctx *pc)
{
	free(pc->fds);
	free(pc->ents);
	*pc = (struct pollctx){ 0 };
}
