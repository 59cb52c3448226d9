/* Shared between monitor.c (boot, teardown) and router.c (serving). */
#ifndef OMNIRUN_MONITOR_INTERNAL_H
#define OMNIRUN_MONITOR_INTERNAL_H

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

#include "omnirun/vm/accel.h"
#include "omnirun/state/config.h"
#include "omnirun/base/proto.h"
#include "omnirun/state/record.h"
#include "omnirun/vm/template.h"

#define MON_MAX_CLIENTS 128
#define MON_MAX_STREAMS_PER_CLIENT 256
/* Memory bounds.  DATA toward a client is bounded per route by the flow
 * control window (what the client has not credited back); other frames of
 * a route (REPLY, END...) by ROUTE_CTL_MAX while queued.  A route over
 * either is cancelled, not the whole connection.  The monitor's own
 * answers to a client that does not read them drop that client.  Past
 * QUEUED_MAX in all queues the agent is not read until they drain; past
 * AGENT_OUTQ_MAX toward the agent, clients are not read. */
#define MON_ROUTE_DATA_MAX (OMR_WINDOW_INIT + OMR_FRAME_HDR + OMR_FRAME_MAX)
#define MON_ROUTE_CTL_MAX (1u << 20)
#define MON_CLIENT_OWN_MAX (1u << 20)
#define MON_QUEUED_MAX (64u << 20)
#define MON_AGENT_OUTQ_MAX (8u << 20)
/* A departed client's streams are cancelled; a route whose END has not
 * come back by then is forgotten. */
#define MON_ORPHAN_TTL_MS 10000
/* How long teardown waits for the destroy caller to take its answer. */
#define MON_DESTROY_FLUSH_MS 2000

/* What a queued frame counts against until it is written. */
enum outq_acct {
	ACCT_NONE,   /* DATA (window-bounded) and frames toward the agent */
	ACCT_ROUTE,  /* a route's control frame: its ctl_queued */
	ACCT_OWN,    /* the monitor's own answer: the client's own_queued */
};

struct outq_buf {
	struct outq_buf *next;
	size_t len, off;
	uint32_t gsid;        /* route of an ACCT_ROUTE frame */
	enum outq_acct acct;
	uint8_t data[];
};

struct outq {
	struct outq_buf *head, *tail;
	size_t bytes;
};

struct client {
	int fd;
	uid_t uid;
	struct omr_frame_reader rd;
	struct outq out;
	size_t own_queued;    /* ACCT_OWN bytes in out */
	unsigned nstreams;
};

struct route {
	uint32_t gsid;        /* id on the agent channel */
	int client;           /* index in clients[], -1 once the client left */
	uint32_t csid;        /* the client's id for it */
	json_t *hist;         /* exec record, written at END */
	uint64_t started_ms;
	uint64_t orphaned_ms; /* when its client left */
	uint64_t data_unacked;  /* DATA queued toward the client, not yet
				   credited back with WINDOW */
	size_t ctl_queued;    /* ACCT_ROUTE bytes still queued */
};

struct mon {
	const struct omr_config *c;
	struct omr_sandbox sb;
	struct omr_template *tpl;
	enum omr_accel accel;
	char *run_path, *agent_path, *qmp_path, *sock_path;
	int state_fd, console_fd, console_pipe, disk_fd, listen_fd, agent_fd;
	int sig_fd, history_fd;
	uint64_t console_written;
	pid_t vmm_pid;
	int vmm_status;
	const char *end_reason;   /* set: tear down */
	json_t *hello;            /* the agent's last HELLO */
	struct omr_frame_reader agent_rd;
	struct outq agent_out;
	struct client *clients[MON_MAX_CLIENTS];
	struct route *routes;
	size_t nroutes, routes_cap;
	uint32_t next_gsid;
	uint64_t last_activity;
	int destroy_client;       /* client that asked for destroy, or -1 */
	uint32_t destroy_csid;
};

void mon_console_drain(struct mon *m);
int mon_handle_signals(struct mon *m);
int mon_agent_readable(struct mon *m);
void mon_serve(struct mon *m);
void mon_router_close_all(struct mon *m);
void mon_outq_clear(struct outq *q);

#endif
