/* One sandbox's monitor (monitor.c): what it holds while it boots,
 * serves and tears down. */
#ifndef OMNIRUN_MONITOR_INTERNAL_H
#define OMNIRUN_MONITOR_INTERNAL_H

#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "conn-internal.h"
#include "console-internal.h"
#include "omnirun/base/loop.h"
#include "omnirun/state/config.h"
#include "omnirun/state/record.h"
#include "omnirun/vm/accel.h"
#include "omnirun/vm/snapshot.h"
#include "omnirun/vm/template.h"
#include "omnirun/vm/vmm.h"
#include "router-internal.h"

/* How long teardown waits for the destroy caller to take its answer. */
#define MON_DESTROY_FLUSH_MS 2000
/* How often boot tries to reach the agent's socket (QEMU makes it). */
#define MON_AGENT_RETRY_MS 20
/* The lifetime and orphans are checked at least this often. */
#define MON_TICK_MS 1000
/* Bounds on QEMU's answer to stop / cont, and on the agent's to the
 * clock_set that follows a resume. */
#define MON_QMP_TIMEOUT_MS 5000
#define MON_CLOCK_TIMEOUT_MS 3000

/* The VMM's CPUs, as the monitor drives them (lifecycle.c). */
enum mon_run { MON_RUN_RUNNING = 0, MON_RUN_PAUSING, MON_RUN_PAUSED, MON_RUN_RESUMING };

struct mon {
	const struct omr_config *c;
	struct omr_sandbox sb;
	struct omr_template *tpl;
	enum omr_accel accel;
	char *run_path, *agent_path, *qmp_path, *sock_path;
	int state_fd, disk_fd, listen_fd, history_fd;
	unsigned history_dropped;   /* commands not recorded (bound, full disk) */
	struct omr_loop *loop;
	struct mon_console console;
	struct omr_vmm vmm;
	int vmm_status;
	struct mon_router *router;
	struct mon_conns conns;
	int booting;
	uint64_t boot_deadline;
	uint64_t connect_timer, tick_timer;
	const char *end_reason;   /* set: tear down */
	/* pause and resume (lifecycle.c) */
	enum mon_run run;
	struct omr_qmp_call *qmp;  /* the stop or cont in flight */
	int waiting;               /* a client waits for it: waiter */
	struct mon_ticket waiter;
	uint64_t clock_timer;      /* the clock_set after a resume */
	char *clock_error;         /* why the guest clock was not set */
	/* the network (net-hooks.c) */
	struct omr_net *net;
	int events_fd;            /* events.jsonl */
	int net_config_done;      /* the agent answered net_config: 1 ok, -1 not */
	char *net_config_error;
	/* a restore from the template's snapshot (vm/snapshot.h) */
	struct omr_snapshot *snap;  /* the one that fits, or NULL: cold boot */
	int incoming_fd;            /* its device state, until QEMU has it */
	int identity_done;          /* the agent answered identity: 1 ok, -1 not */
	char *identity_error;
	/* forks (fork.c): the root image as it was at boot (a source); the
	 * source's MAC and RAM kind (a child) */
	struct stat rootfs_st;
	int rootfs_known;
	char *fork_mac;
	int fork_ram_mem;
	/* persist (persist.c): ending because it was persisted; started
	 * from a persisted image, which stays until the sandbox runs */
	int persisted;
	int from_persist;
};

/* lifecycle.c: pause, resume, the lifetime; the router's request and
 * own_end hooks (the network's ops pass through them) */
json_t *mon_request(void *user, const char *op, json_t *req, const struct mon_ticket *t);
void mon_own_end(void *user, uint32_t gsid, const uint8_t *p, size_t len);
/* Stops / restarts the VMM's CPUs; t: the client to answer, or NULL.
 * Return what to answer now: json_null() when the answer comes later. */
json_t *mon_pause(struct mon *m, const struct mon_ticket *t);
json_t *mon_resume(struct mon *m, const struct mon_ticket *t);
void mon_lifecycle_close(struct mon *m);
/* Sends the guest the host's time (clock_set), answered by nobody: after
 * the VMM stood still (a fork's save). */
void mon_clock_sync(struct mon *m);
/* fork.c: a source's save for its forks (op fork_save); a child's
 * taking of its copy (before the VMM starts); the root image's identity
 * at boot. */
json_t *mon_fork_save(struct mon *m, json_t *req);
int mon_fork_take(struct mon *m, struct omr_err **err);
void mon_fork_note_rootfs(struct mon *m);
/* The "meta" file beside a saved VM (a fork's, a persist's): the NIC's
 * MAC and the id its RAM needs ("mem" or "anon") to load the state. */
char *mon_saved_meta(const struct mon *m);
/* persist.c: saves the sandbox into its state dir and ends the monitor
 * (op persist, idle action persist); a resume's side: is there a
 * complete image, take it (before the VMM starts), drop it once running. */
json_t *mon_persist(struct mon *m);
int mon_persist_present(struct mon *m);
int mon_persist_take(struct mon *m, struct omr_err **err);
void mon_persist_done(struct mon *m);
/* lifecycle.c: an error as the router answers it (e is freed); a
 * "key=value" line's value in text (malloc'ed), or NULL. */
json_t *mon_error_json(struct omr_err *e);
char *mon_meta_get(const char *text, const char *key);
/* monitor.c: ends the sandbox for reason (the first stands). */
void mon_end(struct mon *m, const char *reason);
/* pool.c: a pooled sandbox taken by a create (op pool_claim), for the
 * client t connected as. */
json_t *mon_pool_claim(struct mon *m, json_t *req, const struct mon_ticket *t);
/* monitor.c: checks the lifetime now and sets the next check. */
void mon_lifetime_reschedule(struct mon *m);

/* net-hooks.c: the sandbox's network */
int mon_net_open(struct mon *m, struct omr_err **err);   /* before the VMM */
int mon_net_start(struct mon *m, struct omr_err **err);  /* after HELLO */
json_t *mon_net_request(void *user, const char *op, json_t *req); /* router ops */
void mon_net_own_end(void *user, uint32_t gsid, const uint8_t *p, size_t len);
void mon_net_close(struct mon *m);

#endif
