/* The router: many client streams multiplexed onto the one agent
 * channel, as a state machine over frames.  It owns no fd and reads no
 * clock: the monitor hands it each frame that arrived, with the time, and
 * asks it what to write (flush).  Stream ids are rewritten (client id <->
 * channel id); DATA and WINDOW pass through unchanged, so flow control
 * stays end to end. */
#ifndef OMNIRUN_MONITOR_ROUTER_INTERNAL_H
#define OMNIRUN_MONITOR_ROUTER_INTERNAL_H

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

#include "omnirun/base/proto.h"
#include "queue-internal.h"

/* Clients served at once; more wait in the monitor's queue (see
 * monitor-internal.h).  Each served client costs a frame buffer. */
#define MON_MAX_CLIENTS 128
#define MON_MAX_STREAMS_PER_CLIENT 256
/* Memory bounds.  DATA toward a client is bounded per route by the flow
 * control window (what the client has not credited back) and by what its
 * frames cost queued (MON_ROUTE_DATA_MEM_MAX: many small frames are not
 * free); other frames of a route (REPLY, END...) by MON_ROUTE_CTL_MAX
 * while queued.  A route over any is cancelled, not the whole connection.
 * The monitor's own answers to a client that does not read them drop that
 * client.  Past MON_QUEUED_MAX in all queues the agent is not read until
 * they drain; past MON_AGENT_OUTQ_MAX toward the agent, clients are not
 * read. */
#define MON_ROUTE_DATA_MAX (OMR_WINDOW_INIT + OMR_FRAME_HDR + OMR_FRAME_MAX)
#define MON_ROUTE_DATA_MEM_MAX (8u << 20)
#define MON_ROUTE_CTL_MAX (1u << 20)
#define MON_CLIENT_OWN_MAX (1u << 20)
#define MON_QUEUED_MAX (64u << 20)
#define MON_AGENT_OUTQ_MAX (8u << 20)
/* A departed client's streams are cancelled; a route whose END has not
 * come back by then is forgotten. */
#define MON_ORPHAN_TTL_MS 10000
/* The HELLO goes into every status answer: a guest must not make those
 * large. */
#define MON_HELLO_MAX 4096

struct mon_router;

/* Who asked: a client's request the monitor answers later.  The serial
 * tells a client from the next one given the same number. */
struct mon_ticket {
	int ci;
	uint32_t csid;
	uint64_t serial;
};

/* Stream ids on the agent channel from here up are the monitor's own
 * requests (mon_router_own_request); client routes never get them. */
#define MON_OWN_GSID_MIN 0x7fff0000u

/* What the router needs from the monitor that runs it. */
struct mon_router_ops {
	/* The sandbox's part of a "status" answer (a new object). */
	json_t *(*status)(void *user);
	/* A client asked for the sandbox to be destroyed. */
	void (*destroy)(void *user);
	/* One line of the command history (no newline). */
	void (*history)(void *user, const char *line, size_t len);
	/* An op the monitor answers itself (the network's, pause...): its
	 * END (a new object); json_null() when it answers later, through
	 * mon_router_answer(t) (t is valid during the call only: copy it);
	 * or NULL when it is not one (it goes to the agent).  May be NULL. */
	json_t *(*request)(void *user, const char *op, json_t *req, const struct mon_ticket *t);
	/* The END of one of the monitor's own requests (gsid >=
	 * MON_OWN_GSID_MIN).  May be NULL. */
	void (*own_end)(void *user, uint32_t gsid, const uint8_t *p, size_t len);
};

/* A router; now is the monotonic time in ms (the start of idleness). */
struct mon_router *mon_router_new(const struct mon_router_ops *ops, void *user, uint64_t now);
void mon_router_free(struct mon_router *rt);

/* A new client with this uid: its number (>= 0), or -1 when
 * MON_MAX_CLIENTS are served already. */
int mon_router_accept(struct mon_router *rt, uid_t uid);
/* The uid client ci connected with (SO_PEERCRED). */
uid_t mon_router_client_uid(const struct mon_router *rt, int ci);
/* How many clients are served. */
unsigned mon_router_nclients(const struct mon_router *rt);
/* Client ci is gone: its streams are cancelled (the agent is told) and
 * kept as orphans until their END comes or MON_ORPHAN_TTL_MS pass. */
void mon_router_client_gone(struct mon_router *rt, int ci, uint64_t now);

/* A frame from client ci / from the agent.  Never fails: a bad frame is
 * answered on its stream. */
void mon_router_on_client_frame(struct mon_router *rt, int ci, const struct omr_frame_hdr *h,
				const uint8_t *p, uint64_t now);
void mon_router_on_agent_frame(struct mon_router *rt, const struct omr_frame_hdr *h,
			       const uint8_t *p, uint64_t now);

/* Writes what client ci / the agent has queued, through w.  Returns 0, or
 * < 0 when the client must be dropped (w failed, or it does not read the
 * monitor's own answers) / the agent channel is broken. */
int mon_router_flush_client(struct mon_router *rt, int ci, mon_write_fn w, void *ctx);
int mon_router_flush_agent(struct mon_router *rt, mon_write_fn w, void *ctx);
/* Bytes waiting to be written to client ci / to the agent. */
size_t mon_router_client_pending(const struct mon_router *rt, int ci);
size_t mon_router_agent_pending(const struct mon_router *rt);
/* Back pressure: 0 while clients (resp. the agent) must not be read. */
int mon_router_read_clients(const struct mon_router *rt);
int mon_router_read_agent(const struct mon_router *rt);

/* Forgets orphans older than MON_ORPHAN_TTL_MS.  Returns the ms until the
 * next one expires, 0 if there is none. */
uint64_t mon_router_expire(struct mon_router *rt, uint64_t now);
/* When the sandbox was last active: now while a client's stream is open
 * (a running foreground command is activity); else the last request,
 * input or end of a stream. */
uint64_t mon_router_last_activity(const struct mon_router *rt, uint64_t now);
/* Counts as activity (the sandbox starts serving). */
void mon_router_touch(struct mon_router *rt, uint64_t now);
/* The agent's last HELLO (borrowed), NULL before the first. */
const json_t *mon_router_hello(const struct mon_router *rt);

/* Queues a request of the monitor's own to the agent on gsid (>=
 * MON_OWN_GSID_MIN); its END goes to ops->own_end. */
void mon_router_own_request(struct mon_router *rt, uint32_t gsid, const void *p, size_t len);

/* Queues the END j (released) for the request of ticket t, unless its
 * client has left.  Returns 0, or -1 when nobody waits for it. */
int mon_router_answer(struct mon_router *rt, const struct mon_ticket *t, json_t *j);

/* Queues the answer to the client that asked for destroy.  Returns that
 * client's number, or -1 if none is waiting (or it left). */
int mon_router_answer_destroy(struct mon_router *rt);

/* Forwards (op "forward"): once the agent's REPLY is queued, client ci's
 * connection carries the guest connection's bytes, not frames.  The
 * connection reads at most mon_router_raw_room() bytes at a time (the
 * agent's credit) and hands them, or 0 for its EOF, to
 * mon_router_on_client_raw(); what the router queues for it is written
 * as is (the headers of DATA are skipped), and each written DATA returns
 * its credit to the agent.  mon_router_raw() says, in MON_RAW_* bits,
 * what the connection should do now: read; shutdown(SHUT_WR) (the guest
 * side's EOF came and everything is written; then mon_router_raw_shut);
 * close (the stream ended and everything is written). */
#define MON_RAW_ON 1u
#define MON_RAW_READ 2u
#define MON_RAW_SHUT 4u
#define MON_RAW_CLOSE 8u
#define MON_RAW_CREDIT_MAX (64u << 20)
unsigned mon_router_raw(const struct mon_router *rt, int ci);
size_t mon_router_raw_room(const struct mon_router *rt, int ci);
void mon_router_on_client_raw(struct mon_router *rt, int ci, const uint8_t *p, size_t len,
			      uint64_t now);
void mon_router_raw_shut(struct mon_router *rt, int ci);

/* For tests and status: open routes (orphans included) and orphans. */
size_t mon_router_nroutes(const struct mon_router *rt);
size_t mon_router_norphans(const struct mon_router *rt);

#endif
