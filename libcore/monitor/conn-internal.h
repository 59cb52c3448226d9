/* The monitor's connections: the agent channel and the clients of
 * monitor.sock, between the event loop (which watches their fds) and the
 * router (which decides what their frames mean and what to write). */
#ifndef OMNIRUN_MONITOR_CONN_INTERNAL_H
#define OMNIRUN_MONITOR_CONN_INTERNAL_H

#include <stdint.h>
#include <sys/types.h>

#include "omnirun/base/err.h"
#include "omnirun/base/loop.h"
#include "omnirun/base/proto.h"
#include "router-internal.h"

/* A burst of clients beyond the MON_MAX_CLIENTS served waits, accepted
 * but not read, in a queue of at most MON_MAX_WAITING (each costs only
 * its fd: both together stay well under the usual limit of 1024 fds);
 * past it a client is told "too many connections" on stream 0 and
 * closed. */
#define MON_MAX_WAITING 512

struct mon_conns;

struct mon_conn {
	struct mon_conns *cs;
	int ci;                   /* the router's number for it */
	int fd;                   /* -1: slot free */
	uint32_t events;
	struct omr_frame_reader rd;
};

struct mon_waiter {
	struct mon_conns *cs;
	int fd;                   /* -1: left the queue */
	uid_t uid;
};

struct mon_conns_ops {
	/* Frames from the agent were routed (a HELLO may have come). */
	void (*agent_read)(void *user);
	/* The agent channel broke; its fd is closed already. */
	void (*agent_lost)(void *user);
};

struct mon_conns {
	struct omr_loop *loop;
	struct mon_router *rt;
	const struct mon_conns_ops *ops;
	void *user;
	uid_t owner;              /* besides root, the only uid served */
	int listen_fd;            /* -1 until serving */
	int agent_fd;
	uint32_t agent_events;
	struct omr_frame_reader agent_rd;
	struct mon_conn clients[MON_MAX_CLIENTS];
	struct mon_waiter waiting[MON_MAX_WAITING]; /* a ring */
	size_t wait_head, wait_len; /* slots in use, dead ones included */
	unsigned nwaiting;        /* live waiters */
	uint64_t accept_warned_ms; /* when running out of fds was last logged */
};

void mon_conns_init(struct mon_conns *cs, struct omr_loop *l, struct mon_router *rt,
		    uid_t owner, const struct mon_conns_ops *ops, void *user);
/* Takes fd, connected to the agent.  Returns 0 or < 0 with *err. */
int mon_conns_agent(struct mon_conns *cs, int fd, struct omr_err **err);
int mon_conns_has_agent(const struct mon_conns *cs);
/* Takes listen_fd (monitor.sock) and serves its clients.  Returns 0 or
 * < 0 with *err. */
int mon_conns_serve(struct mon_conns *cs, int listen_fd, struct omr_err **err);
/* Writes what the router queued outside of a connection's own event (a
 * request of the monitor's own) and watches the fds for what follows. */
void mon_conns_kick(struct mon_conns *cs);
/* Writes the answer to the client that asked for destroy, waiting at most
 * timeout_ms for it to take it. */
void mon_conns_answer_destroy(struct mon_conns *cs, unsigned timeout_ms);
/* Writes every client's queued answers (bounded): before the monitor
 * ends for another reason than a destroy (a persist). */
void mon_conns_flush_all(struct mon_conns *cs, unsigned timeout_ms);
/* Closes every connection (monitor.sock's listening socket too). */
void mon_conns_close_all(struct mon_conns *cs);

#endif
