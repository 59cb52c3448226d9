/* Sandboxes: the record on disk, create, list, kill (DESIGN.md §3-4).
 *
 *   $state_dir/sandboxes/ID/  sandbox.conf (the record), lock, console.log,
 *                             monitor.log, commands.jsonl
 *   $run_dir/sandboxes/ID/    monitor.sock, qmp.sock, agent.sock, pid
 *
 * The record is rewritten atomically (tmp + fsync + rename) under the
 * sandbox's lock (flock on `lock`). */
#ifndef OMNIRUN_STATE_RECORD_H
#define OMNIRUN_STATE_RECORD_H

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

#include "omnirun/state/config.h"
#include "omnirun/base/err.h"
#include "omnirun/base/ids.h"
#include "omnirun/state/netconf.h"

enum omr_sb_state {
	OMR_SB_STARTING = 0,
	OMR_SB_RUNNING,
	OMR_SB_STOPPING,
	OMR_SB_STOPPED,
	OMR_SB_PAUSED,     /* the VMM's CPUs are stopped (sbx-pause); its
			      monitor still serves it */
	OMR_SB_PERSISTED,  /* saved to the state dir (sbx-pause --persist):
			      no VMM, no monitor; sbx-resume restarts it */
	OMR_SB_CORRUPT,    /* the record cannot be read: state unknown
			      (stays last: states below it are parsed) */
};

struct omr_sandbox {
	char id[OMR_ID_MAX];
	char template_name[64];
	enum omr_sb_state state;
	int64_t created_at, expires_at, ended_at;  /* seconds since the epoch */
	char end_reason[32];     /* killed, timeout, idle, vmm_exited, boot_failed, gc */
	int64_t paused_at;       /* while paused or persisted: since when
				    (seconds), else 0 */
	unsigned cpus, memory_mb, disk_mb;
	unsigned processes;      /* in the guest, all commands together */
	unsigned timeout_s, idle_timeout_s;
	char idle_action[8];     /* what idleness does: kill | pause | persist
				    ("": kill) */
	pid_t monitor_pid, vmm_pid;
	char accel[8];           /* tcg | kvm */
	/* How it started: "cold" (booted its kernel), "restore" (a clone
	 * of its template's snapshot) or "fork" (a copy of another
	 * sandbox), and why not restored ("" if it was). */
	char boot[8];
	char boot_why[128];
	/* The warm pool (client/pool.c): "ready" while the sandbox waits in
	 * its template's pool (nobody's yet, hidden from sbx-ls but with
	 * --all), "claimed" once a create took it (created_at is then the
	 * claim's time), "" for a sandbox that never was in a pool. */
	char pool[8];
	/* A fork (client/fork.c): the sandbox it copies, and where the
	 * copy waits for it ("KEY.INDEX": omnirun/state/fork.h). */
	char forked_from[OMR_ID_MAX];
	char fork[48];
	uid_t owner;
	/* Network (DESIGN.md §6): the guest's address in its /30 (gateway
	 * .1, guest .2), "" for none; the policy, changed at run time by
	 * sbx-net: internet on or off, and the allow-list, comma-separated
	 * normalized names (omnirun/state/netconf.h). */
	char net_addr[OMR_ADDR4_MAX];
	int net_internet;
	char net_allow[OMR_ALLOW_MAX];
};

const char *omr_sb_state_name(enum omr_sb_state s);

/* Is s an idle action a sandbox can have: kill, pause ("" reads as
 * kill)?  1 or 0. */
int omr_idle_action_valid(const char *s);
/* Checks an idle action asked for (--idle-action, idleAction, the
 * config): kill, pause and persist pass, anything else is bad input
 * (usage).  Returns 0 or < 0 with *err. */
int omr_idle_action_check(const char *s, struct omr_err **err);

/* A persisted sandbox's image, in its state dir (vm/persist.h). */
#define OMR_PERSIST_DIR "persist"
/* Is the sandbox waiting in a pool (pool "ready")?  1 or 0. */
int omr_sandbox_pooled(const struct omr_sandbox *sb);

/* --- the record --- */

/* Opens $run_dir/sandboxes, making it (and run_dir) 0700 when missing;
 * either must be ours and writable by nobody else.  Returns a dirfd. */
int omr_state_run_dir(const struct omr_config *c, struct omr_err **err);
/* Opens (creating when asked) $state_dir/sandboxes and returns a dirfd;
 * it and state_dir must be ours and writable by nobody else (denied). */
int omr_state_sandboxes_dir(const struct omr_config *c, int create, struct omr_err **err);
/* Reads sandboxes/ID/sandbox.conf.  -ENOENT: "no such sandbox 'ID'".  A
 * record that cannot be read or parsed (truncated, garbled, an unknown
 * state) fails with kind state, and *out then holds the id and state
 * OMR_SB_CORRUPT, so that callers can still tear the sandbox down. */
int omr_sandbox_load(const struct omr_config *c, const char *id,
		     struct omr_sandbox *out, struct omr_err **err);
/* Writes the record atomically; the caller holds the lock. */
int omr_sandbox_save(const struct omr_config *c, const struct omr_sandbox *sb,
		     struct omr_err **err);
/* Takes the sandbox's lock (flock LOCK_EX, waits at most timeout_ms).
 * Returns the lock fd (close it to unlock) or < 0. */
int omr_sandbox_lock(const struct omr_config *c, const char *id, int timeout_ms,
		     struct omr_err **err);
/* Takes the host-wide lock around counting sandboxes and claiming a new
 * one ($state_dir/sandboxes/.create.lock), so that max_sandboxes holds
 * under concurrent creates.  Returns the lock fd or < 0. */
int omr_sandbox_create_lock(const struct omr_config *c, int timeout_ms, struct omr_err **err);
/* Path helpers (malloc'ed). */
char *omr_sandbox_state_path(const struct omr_config *c, const char *id, const char *file);
char *omr_sandbox_run_path(const struct omr_config *c, const char *id, const char *file);

/* All records (any state, corrupt ones included), sorted by creation time. */
int omr_sandbox_list(const struct omr_config *c, struct omr_sandbox **out, size_t *n,
		     struct omr_err **err);

/* The record as the JSON object the CLI and the API return (new ref). */
json_t *omr_sandbox_json(const struct omr_sandbox *sb);
/* Its "network" member: {address, gateway, prefix, internet, allow[],
 * mode: "air-gapped" | "allow-list" | "internet"} (new ref). */
json_t *omr_sandbox_network_json(const struct omr_sandbox *sb);

/* The last max bytes of a file in the sandbox's state directory
 * (console.log, monitor.log), from a line start, NULs shown as spaces:
 * malloc'ed, "" if there is none.  The console log is capped: console.log
 * is rotated to console.log.1 at config console_log_max bytes. */
char *omr_sandbox_file_tail(const struct omr_config *c, const char *id, const char *file,
			    size_t max);

/* Is the monitor of this record alive (pid exists, runs the sbx-monitor
 * executable as root or as us, and serves this id)? */
int omr_sandbox_monitor_alive(const struct omr_config *c, const struct omr_sandbox *sb);

/* Removes what a dead sandbox left (run dir, processes) and marks its record
 * stopped.  Used by kill and sbx-gc; the caller holds the lock. */
int omr_sandbox_reap(const struct omr_config *c, struct omr_sandbox *sb,
		     const char *reason, struct omr_err **err);

/* SIGKILLs the monitor of sandbox id, through a pidfd, once /proc shows it
 * runs the sbx-monitor executable as root or as us and names id, and waits
 * for it and its QEMU to exit. */
void omr_sandbox_kill_monitor(const struct omr_config *c, pid_t pid, const char *id);

/* The pid of sandbox id's monitor found from its run dir: the peer of
 * monitor.sock (SO_PEERCRED), verified as omr_sandbox_kill_monitor does.
 * Returns the pid, or 0 when none is alive.  For records that cannot be
 * trusted. */
pid_t omr_sandbox_find_monitor(const struct omr_config *c, const char *id);

/* The creator of sandbox id holds a shared lock on its directory for as
 * long as the create runs, so that anyone can tell at once whether a
 * record in "starting" still has someone behind it.  hold returns the fd
 * (close it to let go) or < 0; alive returns 1 while a creator holds it. */
int omr_sandbox_creator_hold(const struct omr_config *c, const char *id, struct omr_err **err);
int omr_sandbox_creator_alive(const struct omr_config *c, const char *id);

/* The state to show: the record's, or "lost" for one that says live while
 * nothing serves it (no monitor, and no creator for one starting). */
const char *omr_sandbox_shown_state(const struct omr_config *c, const struct omr_sandbox *sb);

/* Space kept in reserve in each live sandbox's directory, so that the
 * record of its teardown can be written on a full filesystem. */
int omr_sandbox_reserve(const struct omr_config *c, const char *id, struct omr_err **err);

#endif
