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

enum omr_sb_state {
	OMR_SB_STARTING = 0,
	OMR_SB_RUNNING,
	OMR_SB_STOPPING,
	OMR_SB_STOPPED,
};

struct omr_sandbox {
	char id[OMR_ID_MAX];
	char template_name[64];
	enum omr_sb_state state;
	int64_t created_at, expires_at, ended_at;  /* seconds since the epoch */
	char end_reason[32];     /* killed, timeout, idle, vmm_exited, boot_failed, gc */
	unsigned cpus, memory_mb, disk_mb;
	unsigned timeout_s, idle_timeout_s;
	pid_t monitor_pid, vmm_pid;
	char accel[8];           /* tcg | kvm */
	uid_t owner;
};

const char *omr_sb_state_name(enum omr_sb_state s);

/* --- the record --- */

/* Opens (creating when asked) $state_dir/sandboxes and returns a dirfd. */
int omr_state_sandboxes_dir(const struct omr_config *c, int create, struct omr_err **err);
/* Reads sandboxes/ID/sandbox.conf.  -ENOENT: "no such sandbox 'ID'". */
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

/* All records (any state), sorted by creation time. */
int omr_sandbox_list(const struct omr_config *c, struct omr_sandbox **out, size_t *n,
		     struct omr_err **err);

/* The record as the JSON object the CLI and the API return (new ref). */
json_t *omr_sandbox_json(const struct omr_sandbox *sb);

/* The last max bytes of a file in the sandbox's state directory
 * (console.log, monitor.log), from a line start, NULs shown as spaces:
 * malloc'ed, "" if there is none.  The console log is capped: console.log
 * is rotated to console.log.1 at config console_log_max bytes. */
char *omr_sandbox_file_tail(const struct omr_config *c, const char *id, const char *file,
			    size_t max);

/* Is the monitor of this record alive (pid exists and is an sbx-monitor
 * for this id)? */
int omr_sandbox_monitor_alive(const struct omr_sandbox *sb);

/* Removes what a dead sandbox left (run dir, processes) and marks its record
 * stopped.  Used by kill and sbx-gc; the caller holds the lock. */
int omr_sandbox_reap(const struct omr_config *c, struct omr_sandbox *sb,
		     const char *reason, struct omr_err **err);

/* SIGKILLs the monitor of sandbox id (checked through a pidfd and its
 * command line) and waits for it and its QEMU to exit. */
void omr_sandbox_kill_monitor(pid_t pid, const char *id);

#endif
